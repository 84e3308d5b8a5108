use sqlx::SqlitePool;

/// The embedded adapter (`sqlite://`), used by `tonearm up`.
#[derive(Debug, Clone)]
pub struct SqlitePlaylistStore {
    pool: SqlitePool,
}

impl SqlitePlaylistStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

// SQLite runs one writer at a time: a change that checks its tracks cannot interleave with
// a `track.deleted`, so the check needs no lock.
super::sql::sql_store!(SqlitePlaylistStore, "migrations/sqlite", "");
