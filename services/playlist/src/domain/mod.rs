//! The playlist service's plain types and rules: no HTTP, no SQL.

pub mod positions;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use positions::PositionError;

/// The most tracks a playlist holds.
pub const MAX_TRACKS: usize = 10_000;

/// What every list embeds wherever it refers to a track: the read side's own copy,
/// projected from `track.published` and `track.deleted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSummary {
    pub id: Uuid,
    pub title: String,
    pub artist_id: Uuid,
    pub artist_name: String,
    pub album_id: Uuid,
    pub album_title: String,
    pub duration_ms: u64,
}

impl From<kernel::api::TrackSummary> for TrackSummary {
    fn from(summary: kernel::api::TrackSummary) -> Self {
        Self {
            id: summary.id,
            title: summary.title,
            artist_id: summary.artist.id,
            artist_name: summary.artist.name,
            album_id: summary.album.id,
            album_title: summary.album.title,
            duration_ms: summary.duration_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playlist {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub public: bool,
    /// Counts changes to the track list; its text is the snapshot id.
    pub version: i64,
    pub tracks_total: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Playlist {
    pub fn snapshot_id(&self) -> String {
        snapshot_id(self.version)
    }
}

/// A version as clients see it: opaque text.
pub fn snapshot_id(version: i64) -> String {
    format!("{version}")
}

/// The version a snapshot id names; `None` for text that no snapshot ever had.
pub fn parse_snapshot_id(text: &str) -> Option<i64> {
    text.parse().ok().filter(|version: &i64| *version >= 0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlaylist {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub public: bool,
    pub created_at: DateTime<Utc>,
}

/// A change to a playlist's details; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaylistEdit {
    pub name: Option<String>,
    pub description: Option<String>,
    pub public: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub position: u64,
    pub track: TrackSummary,
    pub added_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Like {
    pub track: TrackSummary,
    pub liked_at: DateTime<Utc>,
}

/// A change to a playlist's track list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackChange {
    /// Inserts these tracks, in order, at `position` (the end when `None`).
    Add { track_ids: Vec<Uuid>, position: Option<usize> },
    /// Removes the entries at these positions.
    Remove { positions: Vec<usize> },
    /// Moves `range_length` entries from `range_start` to before `insert_before`.
    Reorder { range_start: usize, range_length: usize, insert_before: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum PlaylistError {
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("only the owner may change this playlist")]
    NotYours,
    #[error("the playlist has changed since snapshot {0}; read it again")]
    Stale(String),
    #[error("unknown track ids: {0}")]
    UnknownTracks(String),
    #[error("a playlist holds at most {MAX_TRACKS} tracks")]
    Full,
    #[error(transparent)]
    Position(#[from] PositionError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the catalog is unavailable: {0}")]
    CatalogUnavailable(String),
}
