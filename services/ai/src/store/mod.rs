//! The AI service's store and its SQLite and PostgreSQL adapters: the tracks it
//! recommends, with their content embeddings (its projection of `track.published` and
//! `track.deleted`), what each listener played and liked (from `song.played`, `song.liked`
//! and `song.unliked`), and the processed-events inbox. It publishes nothing, so it keeps
//! no outbox.

mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{api::TrackSummary, db::SqlPool};
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

pub use kernel::db::StoreError;

/// A track as recommendations know it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrack {
    pub summary: TrackSummary,
    pub genre: Option<String>,
    /// Unit length; `None` until the embedding model has seen the track.
    pub embedding: Option<Vec<f32>>,
    pub published_at: DateTime<Utc>,
}

/// Something a listener did that recommendations learn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Listened {
    /// Played `completion` (0 to 1) of the track.
    Played { user_id: Uuid, track_id: Uuid, completion: f64, at: DateTime<Utc> },
    /// Liked it (`liked`) or took the like back.
    Liked { user_id: Uuid, track_id: Uuid, liked: bool, at: DateTime<Utc> },
}

impl Listened {
    pub fn user_id(&self) -> Uuid {
        match self {
            Self::Played { user_id, .. } | Self::Liked { user_id, .. } => *user_id,
        }
    }
}

/// What one listener did with one track, all told.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Listening {
    pub user_id: Uuid,
    pub track_id: Uuid,
    pub plays: u64,
    /// The completed fractions of the plays, added up.
    pub play_weight: f64,
    pub liked: bool,
    pub last_played_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait AiStore: Send + Sync + 'static {
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Applies `track.published` once per event id (as `consumer`): the track is added,
    /// or replaced with its new metadata and embedding.
    async fn apply_published(
        &self,
        consumer: &str,
        event_id: Uuid,
        track: &StoredTrack,
    ) -> Result<(), StoreError>;

    /// Applies `track.deleted` once per event id: the track goes, and what anyone did
    /// with it.
    async fn apply_track_deleted(
        &self,
        consumer: &str,
        event_id: Uuid,
        track_id: Uuid,
    ) -> Result<(), StoreError>;

    /// Applies listening events, each once per event id, in one transaction; returns how
    /// many were new.
    async fn apply_listening(
        &self,
        consumer: &str,
        events: &[(Uuid, Listened)],
    ) -> Result<u64, StoreError>;

    /// Applies `user.deleted` once per event id: what the listener did is forgotten.
    async fn forget_user(
        &self,
        consumer: &str,
        event_id: Uuid,
        user_id: Uuid,
    ) -> Result<(), StoreError>;

    /// Sets embeddings computed after their tracks arrived; unknown ids are skipped.
    async fn set_embeddings(&self, embeddings: &[(Uuid, Vec<f32>)]) -> Result<(), StoreError>;

    /// Every track, oldest published first.
    async fn tracks(&self) -> Result<Vec<StoredTrack>, StoreError>;

    async fn track(&self, id: Uuid) -> Result<Option<StoredTrack>, StoreError>;

    /// Up to `limit` tracks that have no embedding yet.
    async fn unembedded(&self, limit: u32) -> Result<Vec<StoredTrack>, StoreError>;

    /// Everyone's listening, for training.
    async fn listening(&self) -> Result<Vec<Listening>, StoreError>;

    /// One listener's listening.
    async fn listening_of(&self, user_id: Uuid) -> Result<Vec<Listening>, StoreError>;

    /// How many times a listener's listening has changed (0 for someone new).
    async fn revision_of(&self, user_id: Uuid) -> Result<u64, StoreError>;

    /// The listeners active since `since`, most recent first, at most `limit`.
    async fn active_listeners(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// A number that changes whenever anyone's listening does: a retrain is skipped when
    /// it has not.
    async fn listening_version(&self) -> Result<i64, StoreError>;
}

/// The embedded adapter (`sqlite://`), used by `tonearm up`.
#[derive(Debug, Clone)]
pub struct SqliteAiStore {
    pool: SqlitePool,
}

/// The PostgreSQL adapter (`postgres://`), one database per service.
#[derive(Debug, Clone)]
pub struct PostgresAiStore {
    pool: PgPool,
}

sql::sql_store!(SqliteAiStore, "migrations/sqlite");
sql::sql_store!(PostgresAiStore, "migrations/postgres");

/// Opens the store a pool points at and brings its schema up to date.
pub async fn open(pool: SqlPool) -> Result<Arc<dyn AiStore>, StoreError> {
    let store: Arc<dyn AiStore> = match pool {
        SqlPool::Sqlite(pool) => Arc::new(SqliteAiStore { pool }),
        SqlPool::Postgres(pool) => Arc::new(PostgresAiStore { pool }),
    };
    store.migrate().await?;
    Ok(store)
}
