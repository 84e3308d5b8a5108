//! Listening analytics: accepts plays (`POST /v1/me/plays`, published as `song.played`
//! through the outbox), and consumes plays, likes, registrations and the gateway's request
//! metrics into a warehouse (embedded SQLite under `up`, ClickHouse under `serve`) that
//! answers listening history, top tracks, play series, active users and API statistics.
//! Track summaries come from its own projection of `track.published` and `track.deleted`.

pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod service;
pub mod store;
pub mod warehouse;

pub use config::AnalyticsConfig;
pub use http::{openapi, router};
pub use service::AnalyticsService;

/// The PostgreSQL database this service uses when its URL names none.
pub const DATABASE_NAME: &str = "tonearm_analytics";
