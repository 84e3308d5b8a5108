//! The playlist store port and its SQLite and PostgreSQL adapters: playlists and their
//! entries (ordered by gapped sort keys), follows, likes, the projection of track
//! summaries, the outbox and the processed-events inbox.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use bus::{Envelope, outbox::OutboxStore};
use chrono::{DateTime, Utc};
use kernel::db::SqlPool;
use uuid::Uuid;

use crate::domain::{
    Entry, Like, NewPlaylist, Playlist, PlaylistEdit, PositionError, TrackChange, TrackSummary,
};

pub use kernel::db::StoreError;
pub use postgres::PostgresPlaylistStore;
pub use sqlite::SqlitePlaylistStore;

/// Why a change to a track list was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no such playlist")]
    NotFound,
    /// The playlist's version is not the one the change expected.
    #[error("stale snapshot")]
    Stale,
    /// Positions or ranges outside the list.
    #[error(transparent)]
    Position(#[from] PositionError),
    /// The change would take the list past this many tracks.
    #[error("a playlist holds at most {0} tracks")]
    Full(usize),
    /// Some track ids are not in the projection.
    #[error("unknown tracks")]
    UnknownTracks(Vec<Uuid>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Also the outbox the relay drains.
#[async_trait]
pub trait PlaylistStore: OutboxStore {
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Stores a playlist (version 0, no tracks) and records `event` (`playlist.created`)
    /// in the same transaction.
    async fn create_playlist(
        &self,
        new: &NewPlaylist,
        event: &Envelope,
    ) -> Result<Playlist, StoreError>;

    async fn playlist(&self, id: Uuid) -> Result<Option<Playlist>, StoreError>;

    /// The user's own playlists and those they follow (flagged `true`), newest first
    /// (own by creation, followed by when they were followed, merged by that time), and
    /// the total.
    async fn playlists_of(
        &self,
        user_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<(Playlist, bool)>, u64), StoreError>;

    /// Applies a details edit and records `event` (`playlist.changed`) with it; `None` when
    /// there is no such playlist. The version stays.
    async fn update_playlist(
        &self,
        id: Uuid,
        edit: &PlaylistEdit,
        at: DateTime<Utc>,
        event: &Envelope,
    ) -> Result<Option<Playlist>, StoreError>;

    /// Deletes a playlist with its entries and follows; false when there was none.
    async fn delete_playlist(&self, id: Uuid) -> Result<bool, StoreError>;

    /// Follows a playlist (idempotent: the first time stays). `event`
    /// (`playlist.followed`) is recorded only when the follow is new; true when it was.
    async fn follow(
        &self,
        user_id: Uuid,
        playlist_id: Uuid,
        at: DateTime<Utc>,
        event: &Envelope,
    ) -> Result<bool, StoreError>;

    /// Unfollows; `event` (`playlist.unfollowed`) is recorded only when a follow existed.
    async fn unfollow(
        &self,
        user_id: Uuid,
        playlist_id: Uuid,
        event: &Envelope,
    ) -> Result<bool, StoreError>;

    async fn follows(&self, user_id: Uuid, playlist_id: Uuid) -> Result<bool, StoreError>;

    /// A page of a playlist's entries in order, positions counted from `offset`, and the
    /// total.
    async fn entries(
        &self,
        playlist_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Entry>, u64), StoreError>;

    /// Changes a playlist's track list and bumps its version, in one transaction that
    /// begins by bumping the version (so concurrent changes to one playlist queue up
    /// instead of interleaving). With `expected_version`, a playlist at another version is
    /// [`ChangeError::Stale`]. Added tracks must be in the projection
    /// ([`ChangeError::UnknownTracks`] lists those that are not). Only the rows added or
    /// moved are written, unless the sort keys' gaps ran out (then all are renumbered; see
    /// `domain::positions`). `event` (`playlist.changed`) is recorded with the change.
    /// Returns the new version.
    async fn change_tracks(
        &self,
        playlist_id: Uuid,
        expected_version: Option<i64>,
        change: &TrackChange,
        max_tracks: usize,
        at: DateTime<Utc>,
        event: &Envelope,
    ) -> Result<i64, ChangeError>;

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

    /// Applies `track.deleted`, once per event id: the summary goes, and with it the
    /// track's entries in every playlist (whose versions are bumped) and its likes.
    async fn apply_deleted(
        &self,
        consumer: &str,
        event_id: Uuid,
        track_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Applies `user.deleted`, once per event id: the user's playlists go (with their
    /// entries and followers), and so do their follows and likes.
    async fn forget_user(
        &self,
        consumer: &str,
        event_id: Uuid,
        user_id: Uuid,
    ) -> Result<(), StoreError>;

    /// The projected summaries among `ids`, in no particular order.
    async fn summaries(&self, ids: &[Uuid]) -> Result<Vec<TrackSummary>, StoreError>;

    /// Likes a track; the first like's time stays. `event` (`song.liked`) is recorded in
    /// the same transaction only when the like is new. True when it was new.
    async fn like(
        &self,
        user_id: Uuid,
        track_id: Uuid,
        at: DateTime<Utc>,
        event: &Envelope,
    ) -> Result<bool, StoreError>;

    /// Unlikes a track; `event` (`song.unliked`) is recorded only when a like existed.
    async fn unlike(
        &self,
        user_id: Uuid,
        track_id: Uuid,
        event: &Envelope,
    ) -> Result<bool, StoreError>;

    /// A page of the user's likes, newest first (ties by track id), and the total.
    async fn likes(
        &self,
        user_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Like>, u64), StoreError>;

    /// Which of `track_ids` the user likes.
    async fn liked_among(&self, user_id: Uuid, track_ids: &[Uuid])
    -> Result<Vec<Uuid>, StoreError>;
}

/// Opens the store a pool points at and brings its schema up to date.
pub async fn open(pool: SqlPool) -> Result<Arc<dyn PlaylistStore>, StoreError> {
    let store: Arc<dyn PlaylistStore> = match pool {
        SqlPool::Sqlite(pool) => Arc::new(SqlitePlaylistStore::new(pool)),
        SqlPool::Postgres(pool) => Arc::new(PostgresPlaylistStore::new(pool)),
    };
    store.migrate().await?;
    Ok(store)
}
