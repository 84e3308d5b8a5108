//! Streaming owns what players fetch: it turns each uploaded original into an adaptive
//! ladder (AAC-LC at 64, 128 and 256 kbps in ~6 s fMP4 segments, described by an HLS
//! master playlist and a DASH manifest), measures its loudness (EBU R128), and serves the
//! playlists and segments behind signed, expiring URLs.
//!
//! Transcodes are jobs in this service's database: a job survives a crash and runs again,
//! transient faults are retried with backoff, undecodable input fails at once. It learns of
//! uploads from `track.uploaded` and reports each outcome with `track.transcoded` through
//! its outbox; `track.deleted` removes a track's job and media.

pub mod config;
pub mod domain;
pub mod events;
pub mod http;
mod scratch;
pub mod service;
pub mod store;
pub mod transcoder;
pub mod worker;

pub use config::StreamingConfig;
pub use http::{MediaService, media_openapi, media_service, openapi, router};
pub use service::StreamingService;

/// The PostgreSQL database this service uses when its URL names none.
pub const DATABASE_NAME: &str = "tonearm_streaming";
