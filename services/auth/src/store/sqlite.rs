use sqlx::SqlitePool;

/// The embedded adapter (`sqlite://`), used by `tonearm up`.
#[derive(Debug, Clone)]
pub struct SqliteAuthStore {
    pool: SqlitePool,
}

impl SqliteAuthStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

super::sql::sql_store!(SqliteAuthStore, "migrations/sqlite");
