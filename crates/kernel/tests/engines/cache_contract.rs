//! One contract for every cache adapter: each case below runs once on `memory://` and once
//! on Redis (`cache_contract::memory::*`, `cache_contract::redis::*`).

use std::{sync::Arc, time::Duration};

use kernel::cache::Cache;

use crate::support::unique_key;

/// Short enough to keep the suite fast, long enough to be observed before it ends.
const SHORT: Duration = Duration::from_millis(300);
/// Comfortably past `SHORT`.
const PAST_SHORT: Duration = Duration::from_millis(450);
const LONG: Duration = Duration::from_secs(60);

macro_rules! cache_contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(crate::support::memory_cache().await).await;
                }
            )*
        }

        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(crate::support::redis_cache().await).await;
                }
            )*
        }
    };
}

cache_contract!(
    round_trip,
    set_replaces_value_and_ttl,
    ttl_expires,
    delete_takes_many_keys,
    hit_counts_in_a_window,
    window_restarts_after_it_expires,
    peek_does_not_count,
    unhit_takes_back_a_hit_in_the_open_window,
    peek_unknown_is_none,
    delete_resets_a_window,
    ping,
);

async fn round_trip(cache: Arc<dyn Cache>) {
    let key = unique_key("round-trip");
    assert_eq!(cache.get(&key).await.unwrap(), None, "unknown keys read as None");
    cache.set(&key, "first", LONG).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some("first"));
    cache.set(&key, "second", LONG).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some("second"));
    cache.delete(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(cache.get(&key).await.unwrap(), None, "deleted keys read as None");
    cache.delete(std::slice::from_ref(&key)).await.unwrap();
    cache.delete(&[]).await.unwrap();
}

async fn set_replaces_value_and_ttl(cache: Arc<dyn Cache>) {
    // A longer TTL on the second write outlives the first one's...
    let lengthened = unique_key("lengthened");
    cache.set(&lengthened, "short-lived", SHORT).await.unwrap();
    cache.set(&lengthened, "long-lived", LONG).await.unwrap();
    // ...and a shorter one cuts the first one's short.
    let shortened = unique_key("shortened");
    cache.set(&shortened, "long-lived", LONG).await.unwrap();
    cache.set(&shortened, "short-lived", SHORT).await.unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        cache.get(&lengthened).await.unwrap().as_deref(),
        Some("long-lived"),
        "the second set's TTL applies, not the first's"
    );
    assert_eq!(cache.get(&shortened).await.unwrap(), None, "the second set's TTL applies");
}

async fn ttl_expires(cache: Arc<dyn Cache>) {
    let short = unique_key("short");
    let long = unique_key("long");
    cache.set(&short, "soon gone", SHORT).await.unwrap();
    cache.set(&long, "still here", LONG).await.unwrap();
    assert_eq!(cache.get(&short).await.unwrap().as_deref(), Some("soon gone"));
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(cache.get(&short).await.unwrap(), None, "expired after its TTL");
    assert_eq!(cache.get(&long).await.unwrap().as_deref(), Some("still here"));
}

async fn delete_takes_many_keys(cache: Arc<dyn Cache>) {
    let keys: Vec<String> = (0..3).map(|i| unique_key(&format!("many-{i}"))).collect();
    let survivor = unique_key("survivor");
    for key in keys.iter().chain([&survivor]) {
        cache.set(key, "value", LONG).await.unwrap();
    }
    cache.delete(&keys).await.unwrap();
    for key in &keys {
        assert_eq!(cache.get(key).await.unwrap(), None, "{key} was deleted");
    }
    assert_eq!(cache.get(&survivor).await.unwrap().as_deref(), Some("value"));
}

async fn hit_counts_in_a_window(cache: Arc<dyn Cache>) {
    let key = unique_key("hits");
    let other = unique_key("other-hits");
    let first = cache.hit(&key, LONG).await.unwrap();
    assert_eq!(first.count, 1);
    assert!(first.resets_in <= LONG, "{:?} is within the window", first.resets_in);
    assert!(first.resets_in > LONG - Duration::from_secs(5), "{:?}", first.resets_in);
    let second = cache.hit(&key, LONG).await.unwrap();
    assert_eq!(second.count, 2);
    assert!(second.resets_in <= first.resets_in, "a hit does not extend its window");
    assert_eq!(cache.hit(&key, LONG).await.unwrap().count, 3);
    assert_eq!(cache.hit(&other, LONG).await.unwrap().count, 1, "keys count apart");
}

async fn window_restarts_after_it_expires(cache: Arc<dyn Cache>) {
    let key = unique_key("window");
    assert_eq!(cache.hit(&key, SHORT).await.unwrap().count, 1);
    let second = cache.hit(&key, SHORT).await.unwrap();
    assert_eq!(second.count, 2);
    assert!(second.resets_in <= SHORT, "{:?} is within the window", second.resets_in);
    tokio::time::sleep(PAST_SHORT).await;
    let restarted = cache.hit(&key, SHORT).await.unwrap();
    assert_eq!(restarted.count, 1, "a new window starts at 1");
    assert!(restarted.resets_in <= SHORT);
    assert!(restarted.resets_in > Duration::from_millis(100), "{:?}", restarted.resets_in);
}

async fn peek_does_not_count(cache: Arc<dyn Cache>) {
    let key = unique_key("peek");
    cache.hit(&key, LONG).await.unwrap();
    let hit = cache.hit(&key, LONG).await.unwrap();
    let peeked = cache.peek(&key).await.unwrap().expect("a window is open");
    assert_eq!(peeked.count, 2);
    assert!(peeked.resets_in <= hit.resets_in, "{peeked:?} vs {hit:?}");
    assert!(peeked.resets_in > LONG - Duration::from_secs(5), "{peeked:?}");
    assert_eq!(cache.peek(&key).await.unwrap().map(|w| w.count), Some(2), "peeks never count");
    assert_eq!(cache.hit(&key, LONG).await.unwrap().count, 3);
}

async fn unhit_takes_back_a_hit_in_the_open_window(cache: Arc<dyn Cache>) {
    let key = unique_key("unhit");
    cache.unhit(&key).await.unwrap();
    assert_eq!(cache.peek(&key).await.unwrap(), None, "nothing to take back opens no window");
    let first = cache.hit(&key, LONG).await.unwrap();
    cache.hit(&key, LONG).await.unwrap();
    cache.unhit(&key).await.unwrap();
    let window = cache.peek(&key).await.unwrap().expect("the window stays open");
    assert_eq!(window.count, 1);
    assert!(window.resets_in <= first.resets_in, "taking back does not extend the window");
    assert!(window.resets_in > LONG - Duration::from_secs(5), "nor shorten it: {window:?}");
    cache.unhit(&key).await.unwrap();
    cache.unhit(&key).await.unwrap();
    assert_eq!(cache.peek(&key).await.unwrap().map(|w| w.count), Some(0), "never below zero");
    assert_eq!(cache.hit(&key, LONG).await.unwrap().count, 1);

    let short = unique_key("unhit-expired");
    cache.hit(&short, SHORT).await.unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    cache.unhit(&short).await.unwrap();
    assert_eq!(cache.peek(&short).await.unwrap(), None, "a closed window stays closed");
}

async fn peek_unknown_is_none(cache: Arc<dyn Cache>) {
    assert_eq!(cache.peek(&unique_key("never-hit")).await.unwrap(), None);
    let key = unique_key("expiring-window");
    cache.hit(&key, SHORT).await.unwrap();
    assert!(cache.peek(&key).await.unwrap().is_some());
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(cache.peek(&key).await.unwrap(), None, "a closed window is gone");
}

async fn delete_resets_a_window(cache: Arc<dyn Cache>) {
    let key = unique_key("reset");
    cache.hit(&key, LONG).await.unwrap();
    cache.hit(&key, LONG).await.unwrap();
    cache.delete(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(cache.peek(&key).await.unwrap(), None);
    assert_eq!(cache.hit(&key, LONG).await.unwrap().count, 1);
}

async fn ping(cache: Arc<dyn Cache>) {
    cache.ping().await.expect("a reachable cache answers a ping");
}
