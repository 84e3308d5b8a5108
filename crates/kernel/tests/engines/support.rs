use std::sync::Arc;

use kernel::{cache::Cache, engine::EngineUrl};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

pub fn postgres_url() -> String {
    std::env::var("TONEARM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("TONEARM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A database name no other test uses.
pub fn fresh_database_name() -> String {
    format!("tonearm_test_{}", Uuid::new_v4().simple())
}

/// The PostgreSQL URL of `database` on the test server.
pub fn postgres_database_url(database: &str) -> String {
    format!("{}/{database}", postgres_url().trim_end_matches('/'))
}

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
    match kernel::cache::connect(&EngineUrl::new(url)).await {
        Ok(cache) => cache,
        Err(error) => panic!("cannot open the cache at {url}: {error}"),
    }
}

/// A connection to the server's `postgres` maintenance database.
pub async fn maintenance_connection() -> PgConnection {
    let url = postgres_database_url("postgres");
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("cannot reach PostgreSQL at {url}: {error}"))
}

pub async fn database_exists(database: &str) -> bool {
    let mut connection = maintenance_connection().await;
    let exists = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(database)
        .fetch_one(&mut connection)
        .await
        .expect("query pg_database");
    connection
        .close()
        .await
        .expect("close the maintenance connection");
    exists
}

/// Drops a database a test created, with whatever connections remain to it.
pub async fn drop_database(database: &str) {
    let mut connection = maintenance_connection().await;
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ))
    .execute(&mut connection)
    .await
    .expect("drop the test database");
    connection
        .close()
        .await
        .expect("close the maintenance connection");
}
