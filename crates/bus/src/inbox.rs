//! Idempotent consumers. A consuming service keeps a `processed_events` table in its own
//! database and, in the same transaction as an event's effect, records that it handled
//! the event: a redelivered event finds its id there and changes nothing.
//!
//! ```text
//! let mut tx = pool.begin().await?;
//! if inbox::first_delivery(&mut *tx, "analytics.plays", envelope.id).await? {
//!     apply_the_effect(&mut tx, &envelope).await?;
//! }
//! tx.commit().await?;
//! ```

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};
use uuid::Uuid;

/// The table, for a service's SQLite migrations.
pub const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS processed_events (
    consumer     TEXT NOT NULL,
    event_id     BLOB NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS processed_events_by_age ON processed_events (processed_at);";

/// The table, for a service's PostgreSQL migrations.
pub const POSTGRES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS processed_events_by_age ON processed_events (processed_at);";

/// How many rows a statement changed, on either engine (sqlx has no common trait for it).
pub trait RowsAffected {
    fn rows(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// Records that `consumer` handles `event_id`; false when it already had.
pub async fn first_delivery<'c, DB, E>(
    executor: E,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    E: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    let inserted = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3)
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(Utc::now())
    .execute(executor)
    .await?;
    Ok(inserted.rows() == 1)
}

/// Forgets ids handled before `before`: past the bus's retention no event can come again.
pub async fn prune<'c, DB, E>(executor: E, before: DateTime<Utc>) -> Result<u64, sqlx::Error>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    E: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    let pruned = sqlx::query("DELETE FROM processed_events WHERE processed_at < $1")
        .bind(before)
        .execute(executor)
        .await?;
    Ok(pruned.rows())
}
