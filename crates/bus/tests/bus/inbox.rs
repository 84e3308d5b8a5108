//! The processed-events record on both SQL engines.

use bus::inbox;
use chrono::{TimeDelta, Utc};
use kernel::{db::SqlPool, engine::EngineUrl};
use uuid::Uuid;

async fn sqlite() -> (SqlPool, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().unwrap();
    let url = EngineUrl::new(format!("sqlite://{}", dir.path().join("inbox.db").display()));
    (SqlPool::connect(&url, "unused").await.unwrap(), dir)
}

#[tokio::test]
async fn a_redelivered_event_is_recognised_on_sqlite() {
    let (pool, _dir) = sqlite().await;
    let SqlPool::Sqlite(pool) = pool else { unreachable!() };
    sqlx::raw_sql(inbox::SQLITE_SCHEMA).execute(&pool).await.unwrap();
    let id = Uuid::now_v7();
    let mut tx = pool.begin().await.unwrap();
    assert!(inbox::first_delivery(&mut *tx, "plays", id).await.unwrap());
    tx.commit().await.unwrap();
    assert!(!inbox::first_delivery(&pool, "plays", id).await.unwrap(), "seen before");
    assert!(inbox::first_delivery(&pool, "charts", id).await.unwrap(), "per consumer");

    // A rolled-back effect rolls back its record too: the event will be handled again.
    let other = Uuid::now_v7();
    let mut tx = pool.begin().await.unwrap();
    assert!(inbox::first_delivery(&mut *tx, "plays", other).await.unwrap());
    tx.rollback().await.unwrap();
    assert!(inbox::first_delivery(&pool, "plays", other).await.unwrap());

    assert_eq!(inbox::prune(&pool, Utc::now() + TimeDelta::seconds(1)).await.unwrap(), 3);
}

#[tokio::test]
async fn a_redelivered_event_is_recognised_on_postgres() {
    let database = testkit::fresh_database_name();
    let url = EngineUrl::new(testkit::postgres_database_url(&database));
    let SqlPool::Postgres(pool) = SqlPool::connect(&url, "unused").await.unwrap() else {
        unreachable!()
    };
    sqlx::raw_sql(inbox::POSTGRES_SCHEMA).execute(&pool).await.unwrap();
    let id = Uuid::now_v7();
    let mut tx = pool.begin().await.unwrap();
    assert!(inbox::first_delivery(&mut *tx, "plays", id).await.unwrap());
    tx.commit().await.unwrap();
    assert!(!inbox::first_delivery(&pool, "plays", id).await.unwrap());
    assert_eq!(inbox::prune(&pool, Utc::now() - TimeDelta::hours(1)).await.unwrap(), 0);
    assert_eq!(inbox::prune(&pool, Utc::now() + TimeDelta::seconds(1)).await.unwrap(), 1);
    pool.close().await;
    testkit::drop_database(&database).await;
}
