//! One contract for every `AiStore` adapter: each case below runs once on SQLite and once
//! on PostgreSQL (`sqlite::*`, `postgres::*`), each time on a fresh database. PostgreSQL
//! must be running (see `testkit`); its cases fail, never skip, when it is unreachable.

use std::sync::Arc;

use ai::store::{AiStore, Listened, StoredTrack};
use chrono::{DateTime, TimeDelta, Utc};
use kernel::api::{AlbumRef, ArtistRef, TrackSummary};
use uuid::Uuid;

macro_rules! store_contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            store_contract!(@engine sqlite; $($case),*);
        }

        mod postgres {
            store_contract!(@engine postgres; $($case),*);
        }
    };
    (@engine $engine:ident; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = super::StoreFixture::$engine().await;
                super::$case(&*fixture.store).await;
                fixture.finish().await;
            }
        )*
    };
}

store_contract!(
    published_tracks_are_kept_once_and_replaced_only_by_newer_metadata,
    embeddings_come_back_as_they_were_stored_and_late_ones_are_filled_in,
    plays_add_up_and_the_latest_like_or_unlike_wins,
    a_deleted_track_or_account_takes_its_listening_along,
    active_listeners_come_most_recent_first,
);

/// A store on a database of its own, removed again by [`StoreFixture::finish`].
struct StoreFixture {
    store: Arc<dyn AiStore>,
    database: testkit::TestDatabase,
}

impl StoreFixture {
    async fn sqlite() -> Self {
        Self::open(testkit::TestDatabase::sqlite().await).await
    }

    async fn postgres() -> Self {
        Self::open(testkit::TestDatabase::postgres().await).await
    }

    async fn open(database: testkit::TestDatabase) -> Self {
        let store = ai::store::open(database.pool().clone())
            .await
            .unwrap_or_else(|error| panic!("cannot migrate the test database: {error}"));
        Self { store, database }
    }

    async fn finish(self) {
        drop(self.store);
        self.database.finish().await;
    }
}

const CONSUMER: &str = "ai.test";

/// Now at millisecond precision, as events carry it.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn track(title: &str, genre: Option<&str>, at: DateTime<Utc>) -> StoredTrack {
    StoredTrack {
        summary: TrackSummary {
            id: Uuid::now_v7(),
            title: title.to_owned(),
            artist: ArtistRef { id: Uuid::now_v7(), name: "Miles Davis".to_owned() },
            album: AlbumRef { id: Uuid::now_v7(), title: "Kind of Blue".to_owned() },
            duration_ms: 337_000,
        },
        genre: genre.map(str::to_owned),
        embedding: None,
        published_at: at,
    }
}

fn unit(seed: f32) -> Vec<f32> {
    let v: Vec<f32> = (0..384).map(|i| ((i as f32 + 1.0) * seed).sin()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn played(user_id: Uuid, track_id: Uuid, completion: f64, at: DateTime<Utc>) -> (Uuid, Listened) {
    (Uuid::now_v7(), Listened::Played { user_id, track_id, completion, at })
}

fn liked(user_id: Uuid, track_id: Uuid, liked: bool, at: DateTime<Utc>) -> (Uuid, Listened) {
    (Uuid::now_v7(), Listened::Liked { user_id, track_id, liked, at })
}

async fn published_tracks_are_kept_once_and_replaced_only_by_newer_metadata(store: &dyn AiStore) {
    let at = now();
    let so_what = track("So What", Some("Jazz"), at);
    let event = Uuid::now_v7();
    store.apply_published(CONSUMER, event, &so_what).await.unwrap();
    assert_eq!(store.track(so_what.summary.id).await.unwrap(), Some(so_what.clone()));

    // The same event again changes nothing, even carrying other content.
    let mut redelivered = so_what.clone();
    redelivered.summary.title = "So What (redelivered)".to_owned();
    store.apply_published(CONSUMER, event, &redelivered).await.unwrap();
    assert_eq!(store.track(so_what.summary.id).await.unwrap(), Some(so_what.clone()));

    // An edit, published later, replaces it; an older one arriving after does not.
    let mut edited = so_what.clone();
    edited.summary.title = "So What (Live)".to_owned();
    edited.genre = Some("Modal Jazz".to_owned());
    edited.published_at = at + TimeDelta::seconds(10);
    store.apply_published(CONSUMER, Uuid::now_v7(), &edited).await.unwrap();
    let mut stale = so_what.clone();
    stale.published_at = at + TimeDelta::seconds(5);
    store.apply_published(CONSUMER, Uuid::now_v7(), &stale).await.unwrap();
    assert_eq!(store.track(so_what.summary.id).await.unwrap(), Some(edited.clone()));

    let blue = track("Blue in Green", None, at + TimeDelta::seconds(1));
    store.apply_published(CONSUMER, Uuid::now_v7(), &blue).await.unwrap();
    let all = store.tracks().await.unwrap();
    assert_eq!(all, vec![blue, edited], "oldest published first");
    assert_eq!(store.track(Uuid::now_v7()).await.unwrap(), None);
}

async fn embeddings_come_back_as_they_were_stored_and_late_ones_are_filled_in(store: &dyn AiStore) {
    let at = now();
    let mut embedded = track("Freddie Freeloader", Some("Jazz"), at);
    embedded.embedding = Some(unit(0.37));
    let waiting = track("All Blues", Some("Jazz"), at);
    for track in [&embedded, &waiting] {
        store.apply_published(CONSUMER, Uuid::now_v7(), track).await.unwrap();
    }
    let stored = store.track(embedded.summary.id).await.unwrap().unwrap();
    assert_eq!(stored.embedding, embedded.embedding, "bit for bit");

    let missing = store.unembedded(10).await.unwrap();
    assert_eq!(missing, vec![waiting.clone()]);
    let late = unit(0.91);
    store
        .set_embeddings(&[(waiting.summary.id, late.clone()), (Uuid::now_v7(), unit(0.5))])
        .await
        .unwrap();
    assert!(store.unembedded(10).await.unwrap().is_empty());
    assert_eq!(store.track(waiting.summary.id).await.unwrap().unwrap().embedding, Some(late));
}

async fn plays_add_up_and_the_latest_like_or_unlike_wins(store: &dyn AiStore) {
    let (ada, track_id, at) = (Uuid::now_v7(), Uuid::now_v7(), now());
    assert_eq!(store.revision_of(ada).await.unwrap(), 0, "someone new");
    let version = store.listening_version().await.unwrap();

    let first = played(ada, track_id, 0.5, at);
    let events = [first, played(ada, track_id, 1.0, at + TimeDelta::seconds(60))];
    assert_eq!(store.apply_listening(CONSUMER, &events).await.unwrap(), 2);
    // A redelivered play is not counted again.
    assert_eq!(store.apply_listening(CONSUMER, &[first]).await.unwrap(), 0);
    let rows = store.listening_of(ada).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].plays, rows[0].play_weight), (2, 1.5));
    assert_eq!(rows[0].last_played_at, Some(at + TimeDelta::seconds(60)));
    assert!(!rows[0].liked);
    assert_eq!(store.revision_of(ada).await.unwrap(), 2);
    assert_ne!(store.listening_version().await.unwrap(), version);

    // Liked, then unliked; the like's event arrives last and changes nothing.
    let like = liked(ada, track_id, true, at + TimeDelta::seconds(70));
    let unlike = liked(ada, track_id, false, at + TimeDelta::seconds(80));
    store.apply_listening(CONSUMER, &[unlike]).await.unwrap();
    store.apply_listening(CONSUMER, &[like]).await.unwrap();
    let rows = store.listening_of(ada).await.unwrap();
    assert!(!rows[0].liked, "the later unlike wins");
    assert_eq!(rows[0].plays, 2, "plays are kept");
    let relike = liked(ada, track_id, true, at + TimeDelta::seconds(90));
    store.apply_listening(CONSUMER, &[relike]).await.unwrap();
    assert!(store.listening_of(ada).await.unwrap()[0].liked);

    // A like with no play makes a row of its own; others' listening is apart.
    let other = Uuid::now_v7();
    store.apply_listening(CONSUMER, &[liked(ada, other, true, at)]).await.unwrap();
    let bob = Uuid::now_v7();
    store.apply_listening(CONSUMER, &[played(bob, other, 0.25, at)]).await.unwrap();
    assert_eq!(store.listening_of(ada).await.unwrap().len(), 2);
    assert_eq!(store.listening_of(bob).await.unwrap().len(), 1);
    assert_eq!(store.listening().await.unwrap().len(), 3);
}

async fn a_deleted_track_or_account_takes_its_listening_along(store: &dyn AiStore) {
    let at = now();
    let gone = track("Flamenco Sketches", None, at);
    let kept = track("Blue in Green", None, at);
    for track in [&gone, &kept] {
        store.apply_published(CONSUMER, Uuid::now_v7(), track).await.unwrap();
    }
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let events = [
        played(ada, gone.summary.id, 1.0, at),
        played(ada, kept.summary.id, 1.0, at),
        played(bob, kept.summary.id, 1.0, at),
    ];
    store.apply_listening(CONSUMER, &events).await.unwrap();

    let deletion = Uuid::now_v7();
    store.apply_track_deleted(CONSUMER, deletion, gone.summary.id).await.unwrap();
    assert_eq!(store.track(gone.summary.id).await.unwrap(), None);
    let left = store.listening_of(ada).await.unwrap();
    assert_eq!(left.iter().map(|row| row.track_id).collect::<Vec<_>>(), vec![kept.summary.id]);
    // Redelivered: nothing more happens, and nothing fails.
    store.apply_track_deleted(CONSUMER, deletion, gone.summary.id).await.unwrap();

    store.forget_user(CONSUMER, Uuid::now_v7(), ada).await.unwrap();
    assert!(store.listening_of(ada).await.unwrap().is_empty());
    assert_eq!(store.revision_of(ada).await.unwrap(), 0);
    assert_eq!(store.listening_of(bob).await.unwrap().len(), 1, "others' is kept");
}

async fn active_listeners_come_most_recent_first(store: &dyn AiStore) {
    let at = now();
    let (old, recent, latest) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let track_id = Uuid::now_v7();
    let events = [
        played(old, track_id, 1.0, at - TimeDelta::days(30)),
        played(recent, track_id, 1.0, at - TimeDelta::hours(2)),
        liked(latest, track_id, true, at - TimeDelta::minutes(1)),
        // An old event arriving late does not make its listener look less active.
        played(recent, track_id, 1.0, at - TimeDelta::days(40)),
    ];
    store.apply_listening(CONSUMER, &events).await.unwrap();
    let active = store.active_listeners(at - TimeDelta::days(7), 10).await.unwrap();
    assert_eq!(active, vec![latest, recent]);
    assert_eq!(store.active_listeners(at - TimeDelta::days(7), 1).await.unwrap(), vec![latest]);
}
