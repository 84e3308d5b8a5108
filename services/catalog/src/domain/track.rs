use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::AudioFormat;

/// The artist a file without one is filed under.
pub const UNKNOWN_ARTIST: &str = "Unknown Artist";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artist {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Album {
    pub id: Uuid,
    pub title: String,
    pub artist: Artist,
    pub year: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackStatus {
    Processing,
    Ready,
    Failed,
}

impl TrackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Processing, Self::Ready, Self::Failed].into_iter().find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub id: Uuid,
    pub title: String,
    pub artist: Artist,
    /// The album's id and title (its artist may differ from the track's).
    pub album: (Uuid, String),
    pub track_number: Option<u32>,
    pub disc_number: Option<u32>,
    pub year: Option<i32>,
    pub genre: Option<String>,
    pub duration_ms: u64,
    pub content_hash: String,
    pub format: AudioFormat,
    pub size_bytes: u64,
    pub status: TrackStatus,
    pub error: Option<String>,
    pub loudness_lufs: Option<f64>,
    /// The encodings streaming made; empty until the track is ready.
    pub renditions: Vec<Rendition>,
    pub uploaded_by: Uuid,
    pub created_at: DateTime<Utc>,
}

/// One encoding of a track a player can pick.
pub use bus::events::RenditionInfo as Rendition;

/// A track about to be stored; its artist and album are found by name, or created.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTrack {
    pub id: Uuid,
    pub title: String,
    pub artist_name: String,
    pub album_title: String,
    pub track_number: Option<u32>,
    pub disc_number: Option<u32>,
    pub year: Option<i32>,
    pub genre: Option<String>,
    pub duration_ms: u64,
    pub content_hash: String,
    pub format: AudioFormat,
    pub size_bytes: u64,
    pub uploaded_by: Uuid,
    pub created_at: DateTime<Utc>,
}

/// A change to a track's descriptive fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackEdit {
    pub title: Option<String>,
    pub artist_name: Option<String>,
    pub album_title: Option<String>,
    pub genre: Option<String>,
    pub year: Option<i32>,
    pub track_number: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackSort {
    /// Newest first.
    Recent,
    /// By title, case-insensitively.
    Title,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlbumSummary {
    pub album: Album,
    pub tracks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtistSummary {
    pub artist: Artist,
    pub albums: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("the file is not audio Tonearm can play (MP3, FLAC, WAV, OGG Vorbis, M4A/AAC)")]
    UnsupportedFormat,
    #[error("the upload has no `file` part")]
    MissingFile,
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("only the uploader or an admin may change this track")]
    NotYours,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Objects(#[from] objects::ObjectsError),
    /// The request's body ended early or was malformed.
    #[error("{0}")]
    Unreadable(String),
    /// A fault of ours while taking an upload in (a scratch file, a task).
    #[error("upload failed: {0}")]
    Upload(String),
}

/// The longest title, artist or album name, in characters.
pub const MAX_NAME_CHARS: usize = 300;

/// A title, artist or album name as given by a person (an upload's fields, an edit):
/// trimmed, 1 to [`MAX_NAME_CHARS`] characters.
pub fn checked_name(field: &'static str, value: &str) -> Result<String, CatalogError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(CatalogError::Invalid {
            field,
            reason: format!("must be 1 to {MAX_NAME_CHARS} characters"),
        });
    }
    Ok(trimmed.to_owned())
}

/// A name read from a file's tags, cut to [`MAX_NAME_CHARS`] characters: a file's own
/// tags are taken as they are, never a reason to refuse it.
pub fn tag_name(value: String) -> String {
    match value.char_indices().nth(MAX_NAME_CHARS) {
        Some((end, _)) => value[..end].trim_end().to_owned(),
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(checked_name("title", "  Blue  ").unwrap(), "Blue");
        assert!(checked_name("title", "   ").is_err());
        assert_eq!(checked_name("title", &"é".repeat(300)).unwrap().chars().count(), 300);
        let long = checked_name("title", &"x".repeat(10_000)).unwrap_err();
        assert_eq!(long.to_string(), "title must be 1 to 300 characters");
        assert_eq!(tag_name("é".repeat(301)).chars().count(), 300);
        assert_eq!(tag_name("Blue".into()), "Blue");
    }
}
