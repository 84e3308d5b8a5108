//! The SQL both adapters run. `sql_store!` implements [`AiStore`](super::AiStore) for an
//! adapter type holding a `pool` field of its engine's pool type.

use chrono::{DateTime, Utc};
use kernel::api::{AlbumRef, ArtistRef, TrackSummary};
use uuid::Uuid;

use super::{Listening, StoreError, StoredTrack};

/// A track's columns, as [`TrackRow`] reads them.
pub(super) const TRACK_COLUMNS: &str = "track_id, title, artist_id, artist_name, album_id, \
     album_title, duration_ms, genre, embedding, published_at";

/// A listening row's columns, as [`ListeningRow`] reads them.
pub(super) const LISTENING_COLUMNS: &str =
    "user_id, track_id, plays, play_weight, liked, last_played_at";

#[derive(sqlx::FromRow)]
pub(super) struct TrackRow {
    track_id: Uuid,
    title: String,
    artist_id: Uuid,
    artist_name: String,
    album_id: Uuid,
    album_title: String,
    duration_ms: i64,
    genre: Option<String>,
    embedding: Option<Vec<u8>>,
    published_at: DateTime<Utc>,
}

impl TryFrom<TrackRow> for StoredTrack {
    type Error = StoreError;
    fn try_from(row: TrackRow) -> Result<Self, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt(format!("track {}: {what}", row.track_id));
        let duration_ms = u64::try_from(row.duration_ms)
            .map_err(|_| corrupt(format!("duration {}", row.duration_ms)))?;
        let embedding = match &row.embedding {
            Some(bytes) => Some(
                decode_embedding(bytes)
                    .ok_or_else(|| corrupt(format!("an embedding of {} bytes", bytes.len())))?,
            ),
            None => None,
        };
        Ok(Self {
            summary: TrackSummary {
                id: row.track_id,
                title: row.title,
                artist: ArtistRef { id: row.artist_id, name: row.artist_name },
                album: AlbumRef { id: row.album_id, title: row.album_title },
                duration_ms,
            },
            genre: row.genre,
            embedding,
            published_at: row.published_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ListeningRow {
    user_id: Uuid,
    track_id: Uuid,
    plays: i64,
    play_weight: f64,
    liked: bool,
    last_played_at: Option<DateTime<Utc>>,
}

impl From<ListeningRow> for Listening {
    fn from(row: ListeningRow) -> Self {
        Self {
            user_id: row.user_id,
            track_id: row.track_id,
            plays: u64::try_from(row.plays).unwrap_or(0),
            play_weight: row.play_weight,
            liked: row.liked,
            last_played_at: row.last_played_at,
        }
    }
}

/// An embedding as stored: little-endian 32-bit floats.
pub(super) fn encode_embedding(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|value| value.to_le_bytes()).collect()
}

fn decode_embedding(bytes: &[u8]) -> Option<Vec<f32>> {
    let (chunks, rest) = bytes.as_chunks::<4>();
    rest.is_empty().then(|| chunks.iter().map(|chunk| f32::from_le_bytes(*chunk)).collect())
}

macro_rules! sql_store {
    ($adapter:ty, $migrations:literal) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use uuid::Uuid;

            use crate::store::{
                AiStore, Listened, Listening, StoreError, StoredTrack,
                sql::{LISTENING_COLUMNS, ListeningRow, TRACK_COLUMNS, TrackRow, encode_embedding},
            };

            type Connection =
                <<$adapter as crate::store::sql::Engine>::Database as sqlx::Database>::Connection;

            #[async_trait]
            impl AiStore for $adapter {
                async fn migrate(&self) -> Result<(), StoreError> {
                    sqlx::migrate!($migrations).run(&self.pool).await?;
                    Ok(())
                }

                #[tracing::instrument(skip_all, fields(track_id = %track.summary.id))]
                async fn apply_published(
                    &self,
                    consumer: &str,
                    event_id: Uuid,
                    track: &StoredTrack,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    if bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                        let summary = &track.summary;
                        sqlx::query(&format!(
                            "INSERT INTO tracks ({TRACK_COLUMNS})
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                             ON CONFLICT (track_id) DO UPDATE SET title = excluded.title,
                                artist_id = excluded.artist_id, artist_name = excluded.artist_name,
                                album_id = excluded.album_id, album_title = excluded.album_title,
                                duration_ms = excluded.duration_ms, genre = excluded.genre,
                                embedding = excluded.embedding,
                                published_at = excluded.published_at
                             WHERE tracks.published_at <= excluded.published_at"
                        ))
                        .bind(summary.id)
                        .bind(&summary.title)
                        .bind(summary.artist.id)
                        .bind(&summary.artist.name)
                        .bind(summary.album.id)
                        .bind(&summary.album.title)
                        .bind(i64::try_from(summary.duration_ms).unwrap_or(i64::MAX))
                        .bind(&track.genre)
                        .bind(track.embedding.as_deref().map(encode_embedding))
                        .bind(track.published_at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip_all, fields(%track_id))]
                async fn apply_track_deleted(
                    &self,
                    consumer: &str,
                    event_id: Uuid,
                    track_id: Uuid,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    if bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                        for table in ["tracks", "listening"] {
                            sqlx::query(&format!("DELETE FROM {table} WHERE track_id = $1"))
                                .bind(track_id)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(())
                }

                #[tracing::instrument(skip_all, fields(events = events.len()))]
                async fn apply_listening(
                    &self,
                    consumer: &str,
                    events: &[(Uuid, Listened)],
                ) -> Result<u64, StoreError> {
                    let mut tx = self.pool.begin().await?;
                    let mut applied = 0;
                    for (event_id, listened) in events {
                        if !bus::inbox::first_delivery(&mut *tx, consumer, *event_id).await? {
                            continue;
                        }
                        let at = apply(&mut tx, listened).await?;
                        sqlx::query(
                            "INSERT INTO listeners (user_id, revision, active_at) VALUES ($1, 1, $2)
                             ON CONFLICT (user_id) DO UPDATE SET
                                revision = listeners.revision + 1,
                                active_at = CASE WHEN listeners.active_at < excluded.active_at
                                    THEN excluded.active_at ELSE listeners.active_at END",
                        )
                        .bind(listened.user_id())
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                        applied += 1;
                    }
                    tx.commit().await?;
                    Ok(applied)
                }

                #[tracing::instrument(skip_all, fields(%user_id))]
                async fn forget_user(
                    &self,
                    consumer: &str,
                    event_id: Uuid,
                    user_id: Uuid,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    if bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                        for table in ["listening", "listeners"] {
                            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                                .bind(user_id)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn set_embeddings(
                    &self,
                    embeddings: &[(Uuid, Vec<f32>)],
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    for (track_id, embedding) in embeddings {
                        sqlx::query("UPDATE tracks SET embedding = $2 WHERE track_id = $1")
                            .bind(*track_id)
                            .bind(encode_embedding(embedding))
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn tracks(&self) -> Result<Vec<StoredTrack>, StoreError> {
                    let sql = format!(
                        "SELECT {TRACK_COLUMNS} FROM tracks ORDER BY published_at, track_id"
                    );
                    sqlx::query_as::<_, TrackRow>(&sql)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(StoredTrack::try_from)
                        .collect()
                }

                async fn track(&self, id: Uuid) -> Result<Option<StoredTrack>, StoreError> {
                    let sql = format!("SELECT {TRACK_COLUMNS} FROM tracks WHERE track_id = $1");
                    sqlx::query_as::<_, TrackRow>(&sql)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?
                        .map(StoredTrack::try_from)
                        .transpose()
                }

                async fn unembedded(&self, limit: u32) -> Result<Vec<StoredTrack>, StoreError> {
                    let sql = format!(
                        "SELECT {TRACK_COLUMNS} FROM tracks WHERE embedding IS NULL
                         ORDER BY track_id LIMIT $1"
                    );
                    sqlx::query_as::<_, TrackRow>(&sql)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(StoredTrack::try_from)
                        .collect()
                }

                async fn listening(&self) -> Result<Vec<Listening>, StoreError> {
                    let sql = format!("SELECT {LISTENING_COLUMNS} FROM listening");
                    Ok(sqlx::query_as::<_, ListeningRow>(&sql)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(Listening::from)
                        .collect())
                }

                async fn listening_of(&self, user_id: Uuid) -> Result<Vec<Listening>, StoreError> {
                    let sql =
                        format!("SELECT {LISTENING_COLUMNS} FROM listening WHERE user_id = $1");
                    Ok(sqlx::query_as::<_, ListeningRow>(&sql)
                        .bind(user_id)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .map(Listening::from)
                        .collect())
                }

                async fn revision_of(&self, user_id: Uuid) -> Result<u64, StoreError> {
                    let revision: Option<i64> =
                        sqlx::query_scalar("SELECT revision FROM listeners WHERE user_id = $1")
                            .bind(user_id)
                            .fetch_optional(&self.pool)
                            .await?;
                    Ok(revision.and_then(|r| u64::try_from(r).ok()).unwrap_or(0))
                }

                async fn active_listeners(
                    &self,
                    since: DateTime<Utc>,
                    limit: u32,
                ) -> Result<Vec<Uuid>, StoreError> {
                    Ok(sqlx::query_scalar(
                        "SELECT user_id FROM listeners WHERE active_at >= $1
                         ORDER BY active_at DESC LIMIT $2",
                    )
                    .bind(since)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn listening_version(&self) -> Result<i64, StoreError> {
                    Ok(sqlx::query_scalar(
                        "SELECT CAST(COALESCE(SUM(revision), 0) + COUNT(*) AS BIGINT)
                         FROM listeners",
                    )
                    .fetch_one(&self.pool)
                    .await?)
                }
            }

            /// Applies one listening event to its row; returns when it happened.
            async fn apply(
                conn: &mut Connection,
                listened: &Listened,
            ) -> Result<DateTime<Utc>, StoreError> {
                match *listened {
                    Listened::Played { user_id, track_id, completion, at } => {
                        sqlx::query(
                            "INSERT INTO listening (user_id, track_id, plays, play_weight, last_played_at)
                             VALUES ($1, $2, 1, $3, $4)
                             ON CONFLICT (user_id, track_id) DO UPDATE SET
                                plays = listening.plays + 1,
                                play_weight = listening.play_weight + excluded.play_weight,
                                last_played_at = CASE
                                    WHEN listening.last_played_at IS NULL
                                        OR listening.last_played_at < excluded.last_played_at
                                    THEN excluded.last_played_at
                                    ELSE listening.last_played_at END",
                        )
                        .bind(user_id)
                        .bind(track_id)
                        .bind(completion)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                        Ok(at)
                    }
                    Listened::Liked { user_id, track_id, liked, at } => {
                        // A like and its undoing may arrive out of order: the later wins.
                        sqlx::query(
                            "INSERT INTO listening (user_id, track_id, liked, liked_changed_at)
                             VALUES ($1, $2, $3, $4)
                             ON CONFLICT (user_id, track_id) DO UPDATE SET
                                liked = excluded.liked, liked_changed_at = excluded.liked_changed_at
                             WHERE listening.liked_changed_at IS NULL
                                OR listening.liked_changed_at <= excluded.liked_changed_at",
                        )
                        .bind(user_id)
                        .bind(track_id)
                        .bind(liked)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                        Ok(at)
                    }
                }
            }
        };
    };
}
pub(super) use sql_store;

/// Names the sqlx database an adapter runs on, for helpers generic over connections.
pub(super) trait Engine {
    type Database: sqlx::Database;
}

impl Engine for super::SqliteAiStore {
    type Database = sqlx::Sqlite;
}

impl Engine for super::PostgresAiStore {
    type Database = sqlx::Postgres;
}
