use sqlx::PgPool;

/// The PostgreSQL adapter (`postgres://`), one database per service.
#[derive(Debug, Clone)]
pub struct PostgresCatalogStore {
    pool: PgPool,
}

impl PostgresCatalogStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

super::sql::sql_store!(PostgresCatalogStore, "migrations/postgres");
