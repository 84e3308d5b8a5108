//! The SQL both adapters run. `sql_store!` implements
//! [`AnalyticsStore`](super::AnalyticsStore) and [`OutboxStore`](bus::outbox::OutboxStore)
//! for an adapter type holding a `pool` field of its engine's pool type.

use kernel::api::{AlbumRef, ArtistRef, TrackSummary};
use uuid::Uuid;

use super::StoreError;

/// A summary's columns, as [`SummaryRow`] reads them.
pub(super) const SUMMARY_COLUMNS: &str =
    "track_id, title, artist_id, artist_name, album_id, album_title, duration_ms";

/// The most rows one statement writes or matches, well under both engines' limits on
/// parameters.
pub(super) const CHUNK: usize = 250;

#[derive(sqlx::FromRow)]
pub(super) struct SummaryRow {
    track_id: Uuid,
    title: String,
    artist_id: Uuid,
    artist_name: String,
    album_id: Uuid,
    album_title: String,
    duration_ms: i64,
}

impl TryFrom<SummaryRow> for TrackSummary {
    type Error = StoreError;
    fn try_from(row: SummaryRow) -> Result<Self, StoreError> {
        Ok(Self {
            duration_ms: u64::try_from(row.duration_ms).map_err(|_| {
                StoreError::Corrupt(format!("track {}: duration {}", row.track_id, row.duration_ms))
            })?,
            id: row.track_id,
            title: row.title,
            artist: ArtistRef { id: row.artist_id, name: row.artist_name },
            album: AlbumRef { id: row.album_id, title: row.album_title },
        })
    }
}

macro_rules! sql_store {
    ($adapter:ty, $migrations:literal) => {
        const _: () = {
            use async_trait::async_trait;
            use bus::Envelope;
            use chrono::{DateTime, Utc};
            use kernel::{api::TrackSummary, db::placeholders};
            use uuid::Uuid;

            use crate::store::{
                AnalyticsStore, StoreError,
                sql::{CHUNK, SUMMARY_COLUMNS, SummaryRow},
            };

            #[async_trait]
            impl AnalyticsStore for $adapter {
                async fn migrate(&self) -> Result<(), StoreError> {
                    sqlx::migrate!($migrations).run(&self.pool).await?;
                    Ok(())
                }

                #[tracing::instrument(skip_all, fields(plays = plays.len()))]
                async fn accept_plays(
                    &self,
                    plays: &[(Uuid, Uuid, Envelope)],
                    at: DateTime<Utc>,
                ) -> Result<u64, StoreError> {
                    let mut tx = self.pool.begin().await?;
                    let mut accepted = 0;
                    for (play_id, user_id, event) in plays {
                        let inserted = sqlx::query(
                            "INSERT INTO accepted_plays (play_id, user_id, accepted_at)
                             VALUES ($1, $2, $3) ON CONFLICT (play_id) DO NOTHING",
                        )
                        .bind(*play_id)
                        .bind(*user_id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if inserted == 1 {
                            bus::outbox::sql::insert(&mut *tx, event).await?;
                            accepted += 1;
                        }
                    }
                    tx.commit().await?;
                    Ok(accepted)
                }

                async fn summaries(&self, ids: &[Uuid]) -> Result<Vec<TrackSummary>, StoreError> {
                    let mut unique = ids.to_vec();
                    unique.sort_unstable();
                    unique.dedup();
                    let mut summaries = Vec::with_capacity(unique.len());
                    for chunk in unique.chunks(CHUNK) {
                        let sql = format!(
                            "SELECT {SUMMARY_COLUMNS} FROM track_summaries WHERE track_id IN ({})",
                            placeholders(1, chunk.len())
                        );
                        let mut query = sqlx::query_as::<_, SummaryRow>(&sql);
                        for id in chunk {
                            query = query.bind(*id);
                        }
                        for row in query.fetch_all(&self.pool).await? {
                            summaries.push(row.try_into()?);
                        }
                    }
                    Ok(summaries)
                }

                async fn upsert_summaries(
                    &self,
                    summaries: &[TrackSummary],
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    for summary in summaries {
                        upsert(&mut tx, summary).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip_all)]
                async fn apply_published(
                    &self,
                    consumer: &str,
                    event_id: Uuid,
                    summary: &TrackSummary,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    if bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                        upsert(&mut tx, summary).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip_all)]
                async fn apply_deleted(
                    &self,
                    consumer: &str,
                    event_id: Uuid,
                    track_id: Uuid,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    if bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                        sqlx::query("DELETE FROM track_summaries WHERE track_id = $1")
                            .bind(track_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip_all, fields(%user_id))]
                async fn forget_user(&self, user_id: Uuid) -> Result<u64, StoreError> {
                    Ok(sqlx::query("DELETE FROM accepted_plays WHERE user_id = $1")
                        .bind(user_id)
                        .execute(&self.pool)
                        .await?
                        .rows_affected())
                }
            }

            async fn upsert(
                conn: &mut <<$adapter as crate::store::sql::Engine>::Database as sqlx::Database>::Connection,
                summary: &TrackSummary,
            ) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO track_summaries ({SUMMARY_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (track_id) DO UPDATE SET title = excluded.title,
                        artist_id = excluded.artist_id, artist_name = excluded.artist_name,
                        album_id = excluded.album_id, album_title = excluded.album_title,
                        duration_ms = excluded.duration_ms"
                ))
                .bind(summary.id)
                .bind(&summary.title)
                .bind(summary.artist.id)
                .bind(&summary.artist.name)
                .bind(summary.album.id)
                .bind(&summary.album.title)
                .bind(i64::try_from(summary.duration_ms).unwrap_or(i64::MAX))
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            bus::sql_outbox_store!($adapter);
        };
    };
}
pub(super) use sql_store;

/// Names the sqlx database an adapter runs on, for helpers generic over connections.
pub(super) trait Engine {
    type Database: sqlx::Database;
}

impl Engine for super::SqliteAnalyticsStore {
    type Database = sqlx::Sqlite;
}

impl Engine for super::PostgresAnalyticsStore {
    type Database = sqlx::Postgres;
}
