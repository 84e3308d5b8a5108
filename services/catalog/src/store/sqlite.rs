use sqlx::SqlitePool;

/// The embedded adapter (`sqlite://`), used by `tonearm up`.
#[derive(Debug, Clone)]
pub struct SqliteCatalogStore {
    pool: SqlitePool,
}

impl SqliteCatalogStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

super::sql::sql_store!(SqliteCatalogStore, "migrations/sqlite");
