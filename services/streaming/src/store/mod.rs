//! The streaming store port and its SQLite and PostgreSQL adapters: transcode jobs (a
//! durable queue with leases), URL signing keys, the outbox and the processed-events inbox.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use bus::{Envelope, outbox::OutboxStore};
use chrono::{DateTime, Utc};
use kernel::db::SqlPool;
use uuid::Uuid;

use crate::domain::{Job, NewJob, SigningKey, job::JobResult};

pub use kernel::db::StoreError;
pub use postgres::PostgresStreamingStore;
pub use sqlite::SqliteStreamingStore;

/// Also the outbox the relay drains.
/// Jobs by state, for `transcode_queue_depth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting to run, due or not.
    pub queued: u64,
    /// Claimed by a worker.
    pub running: u64,
}

#[async_trait]
pub trait StreamingStore: OutboxStore {
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Queues a transcode, once per event id (recorded as handled by `consumer` in the same
    /// transaction). A track that already has a job keeps it. True when a job was queued.
    async fn enqueue(
        &self,
        consumer: &str,
        event_id: Uuid,
        job: &NewJob,
    ) -> Result<bool, StoreError>;

    /// Claims the job that has waited longest among those runnable at `now`: queued and
    /// due, or running under a lease that has lapsed (its worker died). The claim marks it
    /// running for `owner` until `lease_until` and counts an attempt. Two workers never
    /// claim the same job under the same lease.
    async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError>;

    /// Extends `owner`'s lease on a running job; false when the job is no longer running
    /// under that owner (deleted, finished, or reclaimed after the lease lapsed).
    async fn extend_lease(
        &self,
        track_id: Uuid,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Puts `owner`'s running job back in the queue, due at `next_attempt_at`, noting the
    /// transient fault. False when the job is no longer `owner`'s.
    async fn retry_later(
        &self,
        track_id: Uuid,
        owner: &str,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Ends `owner`'s running job (done with its packaging, or failed with a reason) and
    /// records `event` (`track.transcoded`) in the same transaction. False, recording
    /// nothing, when the job is no longer `owner`'s.
    async fn finish(
        &self,
        track_id: Uuid,
        owner: &str,
        result: &JobResult,
        event: &Envelope,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Returns every running job to the queue, due now. Only for the embedded shape, where
    /// one process owns the database: what was running when it stopped runs again.
    async fn requeue_running(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn job(&self, track_id: Uuid) -> Result<Option<Job>, StoreError>;

    /// How many jobs wait and how many run, across every replica: the queue's gauge.
    async fn queue_depth(&self) -> Result<QueueDepth, StoreError>;

    /// Deletes a track's job, once per event id (as `consumer`). True when there was one.
    async fn forget(
        &self,
        consumer: &str,
        event_id: Uuid,
        track_id: Uuid,
    ) -> Result<bool, StoreError>;

    /// Every URL signing key, in no particular order.
    async fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError>;

    /// Adds a signing key; [`StoreError::Conflict`] when its id exists.
    async fn add_signing_key(&self, key: &SigningKey) -> Result<(), StoreError>;
}

/// Opens the store a pool points at and brings its schema up to date.
pub async fn open(pool: SqlPool) -> Result<Arc<dyn StreamingStore>, StoreError> {
    let store: Arc<dyn StreamingStore> = match pool {
        SqlPool::Sqlite(pool) => Arc::new(SqliteStreamingStore::new(pool)),
        SqlPool::Postgres(pool) => Arc::new(PostgresStreamingStore::new(pool)),
    };
    store.migrate().await?;
    Ok(store)
}
