//! Playlists and likes: playlists (public or private, followed by others) whose track
//! lists change by snapshot, and each listener's liked songs. Reads never call the
//! catalog: track summaries come from this service's own projection of `track.published`
//! and `track.deleted`. It publishes `playlist.created`, `song.liked` and `song.unliked`
//! through its outbox.

pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod service;
pub mod store;

pub use config::PlaylistConfig;
pub use http::{openapi, router};
pub use service::PlaylistService;

/// The PostgreSQL database this service uses when its URL names none.
pub const DATABASE_NAME: &str = "tonearm_playlist";
