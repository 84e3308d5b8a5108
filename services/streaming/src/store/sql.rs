//! The SQL both adapters run. `sql_store!` implements
//! [`StreamingStore`](super::StreamingStore) and [`OutboxStore`](bus::outbox::OutboxStore)
//! for an adapter type holding a `pool` field of its engine's pool type.
//!
//! Statuses in `WHERE` clauses are literals, not parameters, so PostgreSQL can use the
//! partial indexes on `transcode_jobs` whatever plan it caches.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::{Job, JobStatus, Packaged};

/// A job as [`JobRow`] reads it, for `SELECT` and `RETURNING`. The packaging is read as
/// text on both engines (it is `JSONB` on PostgreSQL) so that a value that does not decode
/// is reported as corrupt rather than as a database error.
pub(super) const JOB_COLUMNS: &str = "track_id, source_key, format, status, attempts, error,
    CAST(packaged AS TEXT) AS packaged, created_at, updated_at";

/// When a job may be claimed at `$now`: queued and due, or running under a lapsed lease.
macro_rules! runnable {
    ($now:literal) => {
        concat!(
            "((status = 'queued' AND next_attempt_at <= ",
            $now,
            ") OR (status = 'running' AND lease_until < ",
            $now,
            "))"
        )
    };
}

pub(super) use runnable;

#[derive(sqlx::FromRow)]
pub(super) struct JobRow {
    track_id: Uuid,
    source_key: String,
    format: String,
    status: String,
    attempts: i32,
    error: Option<String>,
    packaged: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(row: JobRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str, value: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("transcode job {}: {what} {value}", row.track_id))
        };
        let packaged = row
            .packaged
            .as_deref()
            .map(serde_json::from_str::<Packaged>)
            .transpose()
            .map_err(|error| corrupt("packaging", &error))?;
        Ok(Self {
            status: JobStatus::parse(&row.status).ok_or_else(|| corrupt("status", &row.status))?,
            attempts: u32::try_from(row.attempts)
                .map_err(|_| corrupt("attempts", &row.attempts))?,
            packaged,
            track_id: row.track_id,
            source_key: row.source_key,
            format: row.format,
            error: row.error,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A signing key's row: `(id, secret, created_at)`.
pub(super) type SigningKeyRow = (String, Vec<u8>, DateTime<Utc>);

/// Implements the store for `$adapter`, with the migrations at `$migrations` and `$lock`
/// appended to the subquery that picks the job to claim (`FOR UPDATE SKIP LOCKED` on
/// PostgreSQL, so concurrent claimers pass over each other's picks instead of queueing
/// behind them; nothing on SQLite, which runs one writer at a time).
macro_rules! sql_store {
    ($adapter:ty, $migrations:literal, $lock:literal) => {
        use async_trait::async_trait;
        use bus::Envelope;
        use chrono::{DateTime, Utc};
        use uuid::Uuid;

        use super::{
            StoreError, StreamingStore,
            sql::{JOB_COLUMNS, JobRow, SigningKeyRow, runnable},
        };
        use crate::domain::{Job, JobStatus, NewJob, SigningKey, job::JobResult};

        #[async_trait]
        impl StreamingStore for $adapter {
            async fn migrate(&self) -> Result<(), StoreError> {
                sqlx::migrate!($migrations).run(&self.pool).await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn enqueue(
                &self,
                consumer: &str,
                event_id: Uuid,
                job: &NewJob,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(false);
                }
                let inserted = sqlx::query(
                    "INSERT INTO transcode_jobs (track_id, source_key, format, status, attempts,
                         next_attempt_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, 0, $5, $5, $5)
                     ON CONFLICT (track_id) DO NOTHING",
                )
                .bind(job.track_id)
                .bind(&job.source_key)
                .bind(&job.format)
                .bind(JobStatus::Queued.as_str())
                .bind(job.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(inserted.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn claim(
                &self,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
            ) -> Result<Option<Job>, StoreError> {
                // The outer condition repeats the inner one: of two claimers that picked
                // the same job, the second finds it no longer runnable and changes nothing.
                let sql = format!(
                    concat!(
                        "UPDATE transcode_jobs
                         SET status = 'running', owner = $1, lease_until = $3,
                             attempts = attempts + 1, updated_at = $2
                         WHERE track_id = (
                             SELECT track_id FROM transcode_jobs
                             WHERE ",
                        runnable!("$2"),
                        "
                             ORDER BY next_attempt_at, created_at, track_id
                             LIMIT 1 ",
                        $lock,
                        "
                         ) AND ",
                        runnable!("$2"),
                        "
                         RETURNING {columns}"
                    ),
                    columns = JOB_COLUMNS
                );
                sqlx::query_as::<_, JobRow>(&sql)
                    .bind(owner)
                    .bind(now)
                    .bind(lease_until)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(Job::try_from)
                    .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn extend_lease(
                &self,
                track_id: Uuid,
                owner: &str,
                lease_until: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let extended = sqlx::query(
                    "UPDATE transcode_jobs SET lease_until = $3
                     WHERE track_id = $1 AND status = 'running' AND owner = $2",
                )
                .bind(track_id)
                .bind(owner)
                .bind(lease_until)
                .execute(&self.pool)
                .await?;
                Ok(extended.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn retry_later(
                &self,
                track_id: Uuid,
                owner: &str,
                error: &str,
                next_attempt_at: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                // `updated_at` keeps the claim's time: the port passes no clock here.
                let requeued = sqlx::query(
                    "UPDATE transcode_jobs
                     SET status = $3, owner = NULL, lease_until = NULL, error = $4,
                         next_attempt_at = $5
                     WHERE track_id = $1 AND status = 'running' AND owner = $2",
                )
                .bind(track_id)
                .bind(owner)
                .bind(JobStatus::Queued.as_str())
                .bind(error)
                .bind(next_attempt_at)
                .execute(&self.pool)
                .await?;
                Ok(requeued.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn finish(
                &self,
                track_id: Uuid,
                owner: &str,
                result: &JobResult,
                event: &Envelope,
                at: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let (status, packaged, error) = match result {
                    JobResult::Done(packaged) => {
                        (JobStatus::Done, Some(sqlx::types::Json(packaged)), None)
                    }
                    JobResult::Failed(reason) => (JobStatus::Failed, None, Some(reason.as_str())),
                };
                let mut tx = self.pool.begin().await?;
                let finished = sqlx::query(
                    "UPDATE transcode_jobs
                     SET status = $3, packaged = $4, error = $5, owner = NULL,
                         lease_until = NULL, updated_at = $6
                     WHERE track_id = $1 AND status = 'running' AND owner = $2",
                )
                .bind(track_id)
                .bind(owner)
                .bind(status.as_str())
                .bind(packaged)
                .bind(error)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if finished.rows_affected() == 0 {
                    // Dropping the transaction rolls it back: no event for a lost job.
                    return Ok(false);
                }
                bus::outbox::sql::insert(&mut *tx, event).await?;
                tx.commit().await?;
                Ok(true)
            }

            #[tracing::instrument(skip_all)]
            async fn requeue_running(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
                let requeued = sqlx::query(
                    "UPDATE transcode_jobs
                     SET status = $1, owner = NULL, lease_until = NULL, next_attempt_at = $2,
                         updated_at = $2
                     WHERE status = 'running'",
                )
                .bind(JobStatus::Queued.as_str())
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(requeued.rows_affected())
            }

            #[tracing::instrument(skip_all)]
            async fn job(&self, track_id: Uuid) -> Result<Option<Job>, StoreError> {
                sqlx::query_as::<_, JobRow>(&format!(
                    "SELECT {JOB_COLUMNS} FROM transcode_jobs WHERE track_id = $1"
                ))
                .bind(track_id)
                .fetch_optional(&self.pool)
                .await?
                .map(Job::try_from)
                .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn queue_depth(&self) -> Result<super::QueueDepth, StoreError> {
                let counts: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT status, COUNT(*) FROM transcode_jobs
                     WHERE status IN ('queued', 'running') GROUP BY status",
                )
                .fetch_all(&self.pool)
                .await?;
                let mut depth = super::QueueDepth::default();
                for (status, count) in counts {
                    let count = u64::try_from(count).unwrap_or(0);
                    match status.as_str() {
                        "queued" => depth.queued = count,
                        _ => depth.running = count,
                    }
                }
                Ok(depth)
            }

            #[tracing::instrument(skip_all)]
            async fn forget(
                &self,
                consumer: &str,
                event_id: Uuid,
                track_id: Uuid,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(false);
                }
                let deleted = sqlx::query("DELETE FROM transcode_jobs WHERE track_id = $1")
                    .bind(track_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(deleted.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
                let rows = sqlx::query_as::<_, SigningKeyRow>(
                    "SELECT id, secret, created_at FROM signing_keys ORDER BY created_at, id",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, secret, created_at)| SigningKey { id, secret, created_at })
                    .collect())
            }

            #[tracing::instrument(skip_all)]
            async fn add_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO signing_keys (id, secret, created_at) VALUES ($1, $2, $3)")
                    .bind(&key.id)
                    .bind(&key.secret)
                    .bind(key.created_at)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::conflict_or)?;
                Ok(())
            }
        }

        bus::sql_outbox_store!($adapter);
    };
}

pub(super) use sql_store;
