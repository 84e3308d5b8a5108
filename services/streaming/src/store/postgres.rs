use sqlx::PgPool;

/// The PostgreSQL adapter (`postgres://`), one database per service.
#[derive(Debug, Clone)]
pub struct PostgresStreamingStore {
    pool: PgPool,
}

impl PostgresStreamingStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

// Concurrent claimers each lock the job they pick and pass over jobs another has locked,
// so they neither wait for nor collide with each other.
super::sql::sql_store!(PostgresStreamingStore, "migrations/postgres", "FOR UPDATE SKIP LOCKED");
