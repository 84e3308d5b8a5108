//! SQL engines chosen by URL: `sqlite://path` (embedded) or `postgres://…` (a database per
//! service, created when missing). A service opens its pool here, then runs its own
//! migrations through its store adapter.

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    ConnectOptions, Connection, PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::engine::{EngineError, EngineUrl};

/// An open pool on one of the supported engines.
#[derive(Debug, Clone)]
pub enum SqlPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl SqlPool {
    /// Opens the database `url` names. A PostgreSQL URL without a database name gets
    /// `default_database` (e.g. `tonearm_auth`), which is created if it does not exist.
    pub async fn connect(url: &EngineUrl, default_database: &str) -> Result<Self, EngineError> {
        match url.scheme() {
            "sqlite" => Ok(Self::Sqlite(open_sqlite(url).await?)),
            "postgres" | "postgresql" => {
                Ok(Self::Postgres(open_postgres(url, default_database).await?))
            }
            scheme => Err(EngineError::UnsupportedScheme {
                url: url.redacted(),
                scheme: scheme.to_owned(),
                supported: "sqlite://, postgres://",
            }),
        }
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// The page cache each SQLite connection may fill, unless its URL says (`?cache_mib=N`).
/// Reads come mostly from memory-mapped pages, so a small cache serves them; it is memory
/// a pool of 8 connections may hold for good, once per database.
pub const DEFAULT_SQLITE_CACHE_MIB: u64 = 8;

/// Takes Tonearm's own options off a SQLite URL: `cache_mib`. The rest is sqlx's.
fn sqlite_options(url: &str) -> Result<(String, u64), String> {
    let Some((path, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), DEFAULT_SQLITE_CACHE_MIB));
    };
    let mut cache_mib = DEFAULT_SQLITE_CACHE_MIB;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "cache_mib" {
            cache_mib = value
                .parse()
                .map_err(|_| format!("cache_mib must be a whole number of MiB, not {value}"))?;
        } else {
            rest.append_pair(&key, &value);
        }
    }
    let rest = rest.finish();
    Ok((if rest.is_empty() { path.to_owned() } else { format!("{path}?{rest}") }, cache_mib))
}

async fn open_sqlite(url: &EngineUrl) -> Result<SqlitePool, EngineError> {
    let invalid = |reason: String| EngineError::Invalid { url: url.redacted(), reason };
    let (sqlx_url, cache_mib) = sqlite_options(url.expose()).map_err(invalid)?;
    let options = SqliteConnectOptions::from_str(&sqlx_url)
        .map_err(|e| invalid(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        // Reads (search above all) come from memory-mapped pages rather than a read() per
        // 4 KiB page; the page cache holds what is written, in KiB when negative.
        .pragma("mmap_size", "268435456")
        .pragma("cache_size", format!("-{}", cache_mib.saturating_mul(1024)))
        .pragma("temp_store", "memory")
        .log_statements(tracing::log::LevelFilter::Trace);
    if let Some(parent) = Path::new(options.get_filename()).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| invalid(format!("cannot create {}: {e}", parent.display())))?;
    }
    SqlitePoolOptions::new().max_connections(8).connect_with(options).await.map_err(|e| {
        EngineError::Unreachable { engine: "sqlite", url: url.redacted(), reason: e.to_string() }
    })
}

async fn open_postgres(url: &EngineUrl, default_database: &str) -> Result<PgPool, EngineError> {
    let unreachable = |reason: String| EngineError::Unreachable {
        engine: "postgres",
        url: url.redacted(),
        reason,
    };
    let mut options = PgConnectOptions::from_str(url.expose())
        .map_err(|e| EngineError::Invalid { url: url.redacted(), reason: e.to_string() })?
        .log_statements(tracing::log::LevelFilter::Trace);
    let named = url::Url::parse(url.expose())
        .ok()
        .map(|parsed| parsed.path().trim_start_matches('/').to_owned())
        .filter(|name| !name.is_empty());
    let database = match named {
        Some(name) => name,
        None => {
            options = options.database(default_database);
            default_database.to_owned()
        }
    };
    create_database_if_missing(&options, &database).await.map_err(unreachable)?;
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| unreachable(e.to_string()))
}

async fn create_database_if_missing(
    options: &PgConnectOptions,
    database: &str,
) -> Result<(), String> {
    let maintenance = options.clone().database("postgres");
    let mut connection =
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&maintenance))
            .await
            .map_err(|_| "timed out connecting".to_owned())?
            .map_err(|e| e.to_string())?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
    if !exists {
        let quoted = format!("\"{}\"", database.replace('"', "\"\""));
        match sqlx::query(&format!("CREATE DATABASE {quoted}")).execute(&mut connection).await {
            Ok(_) => tracing::info!(database, "created postgres database"),
            // Another replica created it between our check and our create: 42P04 when its
            // create had committed, 23505 (on pg_database's name index) when both raced.
            Err(sqlx::Error::Database(error))
                if matches!(error.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    let _ = connection.close().await;
    Ok(())
}

/// `$first, $first+1, …` for `count` parameters: both engines number them so.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// Numbers a statement's parameters (`$1`, `$2`, …) in the order it is written, for
/// statements that mix lists of any length with single parameters.
#[derive(Debug, Default)]
pub struct Placeholders(usize);

impl Placeholders {
    pub fn one(&mut self) -> String {
        self.list(1)
    }

    /// `n` parameters separated by commas, for an `IN (…)` list.
    pub fn list(&mut self, n: usize) -> String {
        let list = placeholders(self.0 + 1, n);
        self.0 += n;
        list
    }
}

/// What a service's store can fail with, whatever the engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unique constraint violated")]
    Conflict,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// A unique-key violation is a [`StoreError::Conflict`] the domain can name.
    pub fn conflict_or(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            _ => Self::Database(error),
        }
    }

    /// The database is down or overloaded, which is worth a 503 and a retry.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
            )
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_in_the_order_they_are_written() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(placeholders(1, 0), "");
        let mut params = Placeholders::default();
        assert_eq!(params.list(2), "$1, $2");
        assert_eq!(params.one(), "$3");
        assert_eq!(params.list(0), "");
        assert_eq!(params.list(1), "$4");
    }

    #[test]
    fn a_sqlite_url_says_its_page_cache_and_keeps_sqlx_options() {
        assert_eq!(sqlite_options("sqlite://a.db").unwrap(), ("sqlite://a.db".into(), 8));
        assert_eq!(
            sqlite_options("sqlite://a.db?cache_mib=64").unwrap(),
            ("sqlite://a.db".into(), 64)
        );
        assert_eq!(
            sqlite_options("sqlite://a.db?mode=rwc&cache_mib=2").unwrap(),
            ("sqlite://a.db?mode=rwc".into(), 2)
        );
        assert!(sqlite_options("sqlite://a.db?cache_mib=lots").is_err());
    }
}
