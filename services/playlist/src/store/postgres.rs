use sqlx::PgPool;

/// The PostgreSQL adapter (`postgres://`), one database per service.
#[derive(Debug, Clone)]
pub struct PostgresPlaylistStore {
    pool: PgPool,
}

impl PostgresPlaylistStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

// A change that adds tracks keeps their summaries from being deleted until it commits; a
// `track.deleted` already under way makes it wait, then find the track unknown.
super::sql::sql_store!(PostgresPlaylistStore, "migrations/postgres", "FOR KEY SHARE");
