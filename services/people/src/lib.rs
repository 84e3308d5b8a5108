//! People: billing that makes accounts premium (a payment provider's signed webhooks,
//! announced as `payment.completed` and `subscription.changed`), the welcome mail, follows
//! between accounts, notifications about followed people and playlists, and the live
//! channel that pushes notifications and friends' now-playing (presence kept in the cache
//! with a TTL, fanned out across replicas through Redis pub/sub).
//!
//! Billing lives here rather than in auth: auth owns the tier a session carries and learns
//! of premium from events, so the provider's ledger, its secrets and its retries stay out
//! of the service every request depends on.

pub mod accounts;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod live;
pub mod mailer;
pub mod service;
pub mod store;

pub use config::PeopleConfig;
pub use http::{openapi, router};
pub use service::PeopleService;

/// The PostgreSQL database this service uses when its URL names none.
pub const DATABASE_NAME: &str = "tonearm_people";
