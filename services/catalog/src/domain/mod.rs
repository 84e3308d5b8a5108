//! The catalog's plain types and rules: no HTTP, no SQL.

pub mod artwork;
mod format;
pub mod search;
mod tags;
mod track;

pub use format::AudioFormat;
pub use tags::{TrackTags, read_tags};
pub use track::{
    Album, AlbumSummary, Artist, ArtistSummary, CatalogError, MAX_NAME_CHARS, NewTrack, Rendition,
    Track, TrackEdit, TrackSort, TrackStatus, UNKNOWN_ARTIST, checked_name,
};
