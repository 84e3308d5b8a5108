//! Choosing a cache adapter by URL, and failing fast when it cannot be opened.

use std::time::Duration;

use kernel::{
    cache::connect,
    engine::{EngineError, EngineUrl},
};

use crate::support::{memory_cache, redis_cache};

#[tokio::test]
async fn schemes_pick_their_engines() {
    assert_eq!(memory_cache().await.engine(), "memory");
    assert_eq!(redis_cache().await.engine(), "redis");
}

#[tokio::test]
async fn unsupported_schemes_are_refused() {
    match connect("test", &EngineUrl::new("mongodb://x")).await {
        Err(EngineError::UnsupportedScheme { scheme, url, supported }) => {
            assert_eq!(scheme, "mongodb");
            assert_eq!(url, "mongodb://x");
            assert!(supported.contains("redis://"), "{supported}");
        }
        Err(other) => panic!("expected UnsupportedScheme, got {other}"),
        Ok(cache) => panic!("mongodb:// opened a {} cache", cache.engine()),
    }
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast() {
    let outcome = tokio::time::timeout(
        Duration::from_secs(15),
        connect("test", &EngineUrl::new("redis://127.0.0.1:1")),
    )
    .await
    .expect("connect gives up on its own instead of hanging");
    match outcome {
        Err(EngineError::Unreachable { engine, url, reason }) => {
            assert_eq!(engine, "redis");
            assert_eq!(url, "redis://127.0.0.1:1");
            assert!(reason.to_lowercase().contains("refused"), "says why: {reason}");
        }
        Err(other) => panic!("expected Unreachable, got {other}"),
        Ok(_) => panic!("nothing listens on port 1, yet connect succeeded"),
    }
}
