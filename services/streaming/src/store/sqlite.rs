use sqlx::SqlitePool;

/// The embedded adapter (`sqlite://`), used by `tonearm up`.
#[derive(Debug, Clone)]
pub struct SqliteStreamingStore {
    pool: SqlitePool,
}

impl SqliteStreamingStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

// SQLite runs one writer at a time: a claim's pick and update cannot interleave with
// another's, so the pick needs no lock.
super::sql::sql_store!(SqliteStreamingStore, "migrations/sqlite", "");
