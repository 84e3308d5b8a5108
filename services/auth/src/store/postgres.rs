use sqlx::PgPool;

/// The PostgreSQL adapter (`postgres://`), one database per service.
#[derive(Debug, Clone)]
pub struct PostgresAuthStore {
    pool: PgPool,
}

impl PostgresAuthStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

super::sql::sql_store!(PostgresAuthStore, "migrations/postgres");
