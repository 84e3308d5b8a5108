//! The kernel: what every Tonearm service shares and nothing more.
//!
//! It owns configuration layering, telemetry, the HTTP plumbing each service mounts
//! (request ids, metrics, health probes, graceful shutdown, zero-copy file bodies), the one problem+json error
//! type, the caller identity the gateway hands to services, the session grant both the
//! gateway and the auth service read, the cache port, and the choice of SQL engine by URL.
//! Anything that belongs to a single service lives in that service's crate instead.

pub mod api;
pub mod background;
pub mod cache;
pub mod caller;
pub mod catalog;
pub mod config;
pub mod db;
pub mod engine;
pub mod extract;
pub mod grant;
pub mod http;
pub mod internal;
pub mod memory;
pub mod problem;
pub mod sendfile;
pub mod telemetry;

pub use problem::Problem;
