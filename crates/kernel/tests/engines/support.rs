use std::sync::Arc;

use kernel::{cache::Cache, engine::EngineUrl};
use uuid::Uuid;

pub use testkit::{
    database_exists, drop_database, fresh_database_name, postgres_database_url, postgres_url,
    redis_url,
};

/// A cache key no other test uses.
pub fn unique_key(label: &str) -> String {
    format!("kernel-test:{label}:{}", Uuid::new_v4().simple())
}

pub async fn memory_cache() -> Arc<dyn Cache> {
    connect_cache("memory://").await
}

pub async fn redis_cache() -> Arc<dyn Cache> {
    connect_cache(&redis_url()).await
}

async fn connect_cache(url: &str) -> Arc<dyn Cache> {
    match kernel::cache::connect("test", &EngineUrl::new(url)).await {
        Ok(cache) => cache,
        Err(error) => panic!("cannot open the cache at {url}: {error}"),
    }
}
