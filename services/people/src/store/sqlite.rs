use sqlx::SqlitePool;

/// The embedded adapter (`sqlite://`), used by `tonearm up`.
#[derive(Debug, Clone)]
pub struct SqlitePeopleStore {
    pool: SqlitePool,
}

impl SqlitePeopleStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

super::sql::sql_store!(SqlitePeopleStore, "migrations/sqlite");
