//! The catalog owns what can be played: artists, albums and tracks with their tags,
//! uploads (recognised by content, deduplicated by hash) and their media in object
//! storage. It announces uploads (`track.uploaded`) to streaming, applies streaming's
//! results (`track.transcoded`) to track status, and publishes `track.published` and
//! `track.deleted` through its outbox.

pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod service;
pub mod store;

pub use config::CatalogConfig;
pub use http::{openapi, router};
pub use service::CatalogService;

/// The PostgreSQL database this service uses when its URL names none.
pub const DATABASE_NAME: &str = "tonearm_catalog";
