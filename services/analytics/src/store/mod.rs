//! The analytics service's own store and its SQLite and PostgreSQL adapters: the
//! projection of track summaries, the plays accepted through the API, the outbox and the
//! processed-events inbox. (Counts live in the [warehouse](crate::warehouse).)

mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use bus::{Envelope, outbox::OutboxStore};
use chrono::{DateTime, Utc};
use kernel::{api::TrackSummary, db::SqlPool};
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

pub use kernel::db::StoreError;

/// Also the outbox the relay drains.
#[async_trait]
pub trait AnalyticsStore: OutboxStore {
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Accepts plays, each with its `song.played` event, in one transaction: a play whose
    /// id was accepted before is skipped with its event. Returns how many were new.
    async fn accept_plays(
        &self,
        plays: &[(Uuid, Uuid, Envelope)],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// The projected summaries among `ids`, in no particular order.
    async fn summaries(&self, ids: &[Uuid]) -> Result<Vec<TrackSummary>, StoreError>;

    /// Puts summaries in the projection (inserted or replaced), e.g. fetched from the
    /// catalog for ids whose event has not arrived yet.
    async fn upsert_summaries(&self, summaries: &[TrackSummary]) -> Result<(), StoreError>;

    /// Applies `track.published`, once per event id (as `consumer`).
    async fn apply_published(
        &self,
        consumer: &str,
        event_id: Uuid,
        summary: &TrackSummary,
    ) -> Result<(), StoreError>;

    /// Applies `track.deleted`, once per event id: the summary goes.
    async fn apply_deleted(
        &self,
        consumer: &str,
        event_id: Uuid,
        track_id: Uuid,
    ) -> Result<(), StoreError>;

    /// Deletes the ids of the plays a user had accepted (`user.deleted`); returns how many
    /// there were. Idempotent. Their `song.played` events are left to the outbox, which
    /// prunes them once published.
    async fn forget_user(&self, user_id: Uuid) -> Result<u64, StoreError>;
}

/// The embedded adapter (`sqlite://`), used by `tonearm up`.
#[derive(Debug, Clone)]
pub struct SqliteAnalyticsStore {
    pool: SqlitePool,
}

/// The PostgreSQL adapter (`postgres://`), one database per service.
#[derive(Debug, Clone)]
pub struct PostgresAnalyticsStore {
    pool: PgPool,
}

sql::sql_store!(SqliteAnalyticsStore, "migrations/sqlite");
sql::sql_store!(PostgresAnalyticsStore, "migrations/postgres");

/// Opens the store a pool points at and brings its schema up to date.
pub async fn open(pool: SqlPool) -> Result<Arc<dyn AnalyticsStore>, StoreError> {
    let store: Arc<dyn AnalyticsStore> = match pool {
        SqlPool::Sqlite(pool) => Arc::new(SqliteAnalyticsStore { pool }),
        SqlPool::Postgres(pool) => Arc::new(PostgresAnalyticsStore { pool }),
    };
    store.migrate().await?;
    Ok(store)
}
