//! Opening SQL pools by URL: SQLite files and PostgreSQL databases are created on demand.

use std::time::{Duration, Instant};

use kernel::{
    db::SqlPool,
    engine::{EngineError, EngineUrl},
};

use crate::support::{
    database_exists, drop_database, fresh_database_name, postgres_database_url, postgres_url,
};

#[tokio::test]
async fn sqlite_files_and_their_folders_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("deeper").join("tonearm.db");
    let url = EngineUrl::new(format!("sqlite://{}", path.display()));
    let pool = SqlPool::connect(&url, "unused").await.expect("open sqlite");
    assert_eq!(pool.engine(), "sqlite");
    assert!(path.is_file(), "{} was created", path.display());
    let SqlPool::Sqlite(sqlite) = &pool else { panic!("sqlite:// opened {}", pool.engine()) };
    let answer: i64 = sqlx::query_scalar("SELECT 41 + 1").fetch_one(sqlite).await.unwrap();
    assert_eq!(answer, 42);
    let foreign_keys: i64 =
        sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(sqlite).await.unwrap();
    assert_eq!(foreign_keys, 1, "foreign keys are enforced");
    let journal: String =
        sqlx::query_scalar("PRAGMA journal_mode").fetch_one(sqlite).await.unwrap();
    assert_eq!(journal, "wal");
    sqlite.close().await;

    // Opening it again keeps what is there.
    let again = SqlPool::connect(&url, "unused").await.expect("reopen sqlite");
    let SqlPool::Sqlite(again) = again else { panic!("sqlite:// opened another engine") };
    sqlx::query("CREATE TABLE kept (id INTEGER)").execute(&again).await.unwrap();
    again.close().await;
    let third = SqlPool::connect(&url, "unused").await.expect("reopen sqlite");
    let SqlPool::Sqlite(third) = third else { panic!("sqlite:// opened another engine") };
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'kept'",
    )
    .fetch_one(&third)
    .await
    .unwrap();
    assert_eq!(tables, 1);
    third.close().await;
}

#[tokio::test]
async fn a_missing_postgres_database_is_created() {
    let database = fresh_database_name();
    assert!(!database_exists(&database).await);
    let url = EngineUrl::new(postgres_database_url(&database));
    let pool = SqlPool::connect(&url, "tonearm_unused").await.expect("open postgres");
    assert_eq!(pool.engine(), "postgres");
    assert!(database_exists(&database).await, "{database} exists now");
    let SqlPool::Postgres(postgres) = &pool else { panic!("postgres:// opened {}", pool.engine()) };
    let current: String =
        sqlx::query_scalar("SELECT current_database()").fetch_one(postgres).await.unwrap();
    assert_eq!(current, database, "the pool talks to the database the URL names");
    postgres.close().await;

    // An existing database is opened as it is.
    let again = SqlPool::connect(&url, "tonearm_unused").await.expect("reopen postgres");
    let SqlPool::Postgres(again) = again else { panic!("postgres:// opened another engine") };
    again.close().await;
    assert!(!database_exists("tonearm_unused").await, "the default applies only without a name");
    drop_database(&database).await;
}

#[tokio::test]
async fn a_postgres_url_without_a_database_gets_the_default() {
    let database = fresh_database_name();
    let url = EngineUrl::new(postgres_url());
    let pool = SqlPool::connect(&url, &database).await.expect("open postgres");
    let SqlPool::Postgres(postgres) = &pool else { panic!("postgres:// opened {}", pool.engine()) };
    let current: String =
        sqlx::query_scalar("SELECT current_database()").fetch_one(postgres).await.unwrap();
    assert_eq!(current, database);
    postgres.close().await;
    assert!(database_exists(&database).await);
    drop_database(&database).await;
}

/// Replicas starting together all open the database, whichever of them created it.
#[tokio::test]
async fn concurrent_opens_of_a_missing_database_all_succeed() {
    let database = fresh_database_name();
    let url = EngineUrl::new(postgres_database_url(&database));
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = url.clone();
        opens.spawn(async move { SqlPool::connect(&url, "tonearm_unused").await });
    }
    while let Some(opened) = opens.join_next().await {
        match opened.expect("the open task ran") {
            Ok(SqlPool::Postgres(pool)) => pool.close().await,
            Ok(other) => panic!("postgres:// opened {}", other.engine()),
            Err(error) => panic!("a concurrent open failed: {error}"),
        }
    }
    assert!(database_exists(&database).await);
    drop_database(&database).await;
}

#[tokio::test]
async fn unsupported_sql_schemes_are_refused() {
    let error = SqlPool::connect(&EngineUrl::new("mysql://root@localhost/tonearm"), "unused")
        .await
        .expect_err("mysql is not supported");
    match error {
        EngineError::UnsupportedScheme { scheme, supported, .. } => {
            assert_eq!(scheme, "mysql");
            assert!(supported.contains("postgres://"), "{supported}");
        }
        other => panic!("expected UnsupportedScheme, got {other}"),
    }
}

#[tokio::test]
async fn an_unreachable_postgres_fails_fast() {
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(15),
        SqlPool::connect(&EngineUrl::new("postgres://postgres@127.0.0.1:1/tonearm"), "unused"),
    )
    .await
    .expect("connect gives up on its own instead of hanging");
    match outcome {
        Err(EngineError::Unreachable { engine, .. }) => assert_eq!(engine, "postgres"),
        Err(other) => panic!("expected Unreachable, got {other}"),
        Ok(pool) => panic!("nothing listens on port 1, yet {} opened", pool.engine()),
    }
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
}
