use sqlx::PgPool;

/// The PostgreSQL adapter (`postgres://`), one database per service.
#[derive(Debug, Clone)]
pub struct PostgresPeopleStore {
    pool: PgPool,
}

impl PostgresPeopleStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

super::sql::sql_store!(PostgresPeopleStore, "migrations/postgres");
