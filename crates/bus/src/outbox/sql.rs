//! The outbox table's SQL, the same on SQLite and PostgreSQL, for every service's store.
//! A service's migrations create the table:
//! `outbox (id, event_type, version, key, payload, headers, occurred_at, published_at)`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type, types::Json};
use uuid::Uuid;

use crate::{envelope::Envelope, inbox::RowsAffected};

/// An outbox row as read back; public only because the query's bounds name it.
#[derive(FromRow)]
pub struct OutboxRow {
    id: Uuid,
    event_type: String,
    version: i32,
    key: String,
    payload: Json<serde_json::Value>,
    headers: Json<BTreeMap<String, String>>,
    occurred_at: DateTime<Utc>,
}

impl From<OutboxRow> for Envelope {
    fn from(row: OutboxRow) -> Self {
        Self {
            id: row.id,
            event_type: row.event_type,
            version: u32::try_from(row.version).unwrap_or_default(),
            occurred_at: row.occurred_at,
            key: row.key,
            payload: row.payload.0,
            headers: row.headers.0,
        }
    }
}

/// Records an event; call it inside the transaction that makes the change it describes.
pub async fn insert<'c, DB, E>(executor: E, event: &Envelope) -> Result<(), sqlx::Error>
where
    DB: Database,
    E: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> Json<serde_json::Value>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<BTreeMap<String, String>>: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(
        "INSERT INTO outbox (id, event_type, version, key, payload, headers, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(event.id)
    .bind(event.event_type.clone())
    .bind(i32::try_from(event.version).unwrap_or(i32::MAX))
    .bind(event.key.clone())
    .bind(Json(event.payload.clone()))
    .bind(Json(event.headers.clone()))
    .bind(event.occurred_at)
    .execute(executor)
    .await?;
    Ok(())
}

/// Unpublished events, oldest first.
pub async fn pending<'c, DB, E>(executor: E, limit: usize) -> Result<Vec<Envelope>, sqlx::Error>
where
    DB: Database,
    E: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> OutboxRow: FromRow<'r, DB::Row>,
{
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT id, event_type, version, key, payload, headers, occurred_at FROM outbox
         WHERE published_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(Envelope::from).collect())
}

/// Marks events published; marking one twice changes nothing.
pub async fn mark_published<DB>(
    pool: &sqlx::Pool<DB>,
    ids: &[Uuid],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    let mut tx = pool.begin().await?;
    for id in ids {
        sqlx::query("UPDATE outbox SET published_at = $2 WHERE id = $1")
            .bind(*id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Deletes events published before `before`; returns how many.
pub async fn prune<'c, DB, E>(executor: E, before: DateTime<Utc>) -> Result<u64, sqlx::Error>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    E: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    let pruned = sqlx::query("DELETE FROM outbox WHERE published_at < $1")
        .bind(before)
        .execute(executor)
        .await?;
    Ok(pruned.rows())
}

/// Implements [`OutboxStore`](crate::outbox::OutboxStore) for a store adapter that holds
/// its engine's pool in a field named `pool`, on the SQL above. Every service's SQLite and
/// PostgreSQL adapters use it, so the relay reads every outbox the same way.
#[macro_export]
macro_rules! sql_outbox_store {
    ($adapter:ty) => {
        #[::async_trait::async_trait]
        impl $crate::outbox::OutboxStore for $adapter {
            async fn pending(
                &self,
                limit: usize,
            ) -> Result<Vec<$crate::Envelope>, $crate::outbox::OutboxError> {
                Ok($crate::outbox::sql::pending(&self.pool, limit).await?)
            }

            async fn mark_published(
                &self,
                ids: &[::uuid::Uuid],
                at: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<(), $crate::outbox::OutboxError> {
                Ok($crate::outbox::sql::mark_published(&self.pool, ids, at).await?)
            }

            async fn prune_published(
                &self,
                before: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<u64, $crate::outbox::OutboxError> {
                Ok($crate::outbox::sql::prune(&self.pool, before).await?)
            }
        }
    };
}
