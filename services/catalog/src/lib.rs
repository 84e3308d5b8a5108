//! The catalog owns what can be played: artists, albums and tracks with their tags,
//! uploads (recognised by content, deduplicated by hash) and their media in object
//! storage. It publishes `track.deleted` through its outbox.

pub mod config;
pub mod domain;
pub mod http;
pub mod service;
pub mod store;

pub use config::CatalogConfig;
pub use http::{openapi, router};
pub use service::CatalogService;

/// The PostgreSQL database this service uses when its URL names none.
pub const DATABASE_NAME: &str = "tonearm_catalog";
