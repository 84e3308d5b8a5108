//! The auth service owns accounts: registration, argon2id passwords, sessions, EdDSA
//! access tokens, rotating refresh tokens with reuse detection, and the keys that sign
//! them. It publishes `user.registered` and `user.deleted` through its outbox and serves
//! the session grants the gateway enforces.

pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod keys;
pub mod password;
pub mod service;
pub mod store;

pub use config::AuthConfig;
pub use http::{internal_router, openapi, router};
pub use service::AuthService;

/// The PostgreSQL database this service uses when its URL names none.
pub const DATABASE_NAME: &str = "tonearm_auth";
