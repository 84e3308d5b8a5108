//! The auth store port and its two adapters, SQLite and PostgreSQL.
//!
//! Both dialects accept the same statements here (numbered `$n` parameters, `RETURNING`,
//! `ON CONFLICT`), so the adapters share one body of SQL (`sql.rs`) and differ in their
//! pools, column types and migrations.

mod postgres;
mod sql;
mod sqlite;

use async_trait::async_trait;
use bus::{Envelope, outbox::OutboxStore};
use chrono::{DateTime, Utc};
use kernel::{
    db::SqlPool,
    grant::{Role, SessionGrant, Tier},
};
use uuid::Uuid;

use crate::domain::{DisplayName, Email, NewSession, NewUser, RefreshRecord, Session, User};

pub use postgres::PostgresAuthStore;
pub use sqlite::SqliteAuthStore;

pub use kernel::db::StoreError;

/// A key that signs access tokens, kept so every replica signs and verifies alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub private_key_pem: String,
    pub public_key: String,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
/// Also the outbox the relay drains: events are written with the changes they describe.
pub trait AuthStore: OutboxStore {
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Stores the user and its `user.registered` event in one transaction.
    /// [`StoreError::Conflict`] when the email is taken.
    async fn create_user(&self, new: &NewUser, event: &Envelope) -> Result<(), StoreError>;
    /// The user and password hash for an email.
    async fn credentials(&self, email: &Email) -> Result<Option<(User, String)>, StoreError>;
    async fn user(&self, id: Uuid) -> Result<Option<User>, StoreError>;
    async fn password_hash(&self, id: Uuid) -> Result<Option<String>, StoreError>;
    /// Renames the user and records `event` (`user.updated`) in the same transaction.
    async fn rename(
        &self,
        id: Uuid,
        name: &DisplayName,
        now: DateTime<Utc>,
        event: &Envelope,
    ) -> Result<Option<User>, StoreError>;
    /// Applies a subscription change (`payment.completed`, `subscription.changed`), once
    /// per event id and only when `revision` is newer than the one applied; returns the
    /// user's live sessions when it changed anything.
    async fn apply_premium(
        &self,
        consumer: &str,
        event_id: Uuid,
        user_id: Uuid,
        premium_until: Option<DateTime<Utc>>,
        revision: u64,
    ) -> Result<Option<Vec<Uuid>>, StoreError>;
    /// Sets a new password hash and revokes every session except `keep`; returns the
    /// ids of the sessions it revoked.
    async fn change_password(
        &self,
        id: Uuid,
        password_hash: &str,
        keep: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError>;
    /// Changes tier and/or role; returns the user with the ids of their live sessions.
    async fn set_access(
        &self,
        email: &Email,
        tier: Option<Tier>,
        role: Option<Role>,
        now: DateTime<Utc>,
    ) -> Result<Option<(User, Vec<Uuid>)>, StoreError>;
    /// Deletes the user with their sessions and tokens, recording `user.deleted` in the
    /// same transaction; returns the ids of the sessions that died with them.
    async fn delete_user(&self, id: Uuid, event: &Envelope) -> Result<Vec<Uuid>, StoreError>;

    async fn create_session(&self, new: &NewSession) -> Result<(), StoreError>;
    /// The grant of a session that is neither revoked nor expired at `now`.
    async fn grant(
        &self,
        session_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionGrant>, StoreError>;
    /// A user's live sessions, newest first.
    async fn sessions(&self, user_id: Uuid, now: DateTime<Utc>)
    -> Result<Vec<Session>, StoreError>;
    /// Revokes a live session of `user_id`; false when there was none to revoke.
    async fn revoke_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    async fn refresh_record(&self, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError>;
    /// Retires `presented` and stores `next` in its family, atomically. False when
    /// `presented` was retired already (a concurrent rotation won).
    async fn rotate_refresh(
        &self,
        presented: &str,
        next: &str,
        next_expires_at: DateTime<Utc>,
        session_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Stores a key unless one with its `kid` exists.
    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
}

/// Opens the store a pool points at and brings its schema up to date.
pub async fn open(pool: SqlPool) -> Result<std::sync::Arc<dyn AuthStore>, StoreError> {
    let store: std::sync::Arc<dyn AuthStore> = match pool {
        SqlPool::Sqlite(pool) => std::sync::Arc::new(SqliteAuthStore::new(pool)),
        SqlPool::Postgres(pool) => std::sync::Arc::new(PostgresAuthStore::new(pool)),
    };
    store.migrate().await?;
    Ok(store)
}

fn parse_tier(raw: &str) -> Result<Tier, StoreError> {
    raw.parse().map_err(|e: kernel::grant::UnknownVariant| StoreError::Corrupt(e.to_string()))
}

fn parse_role(raw: &str) -> Result<Role, StoreError> {
    raw.parse().map_err(|e: kernel::grant::UnknownVariant| StoreError::Corrupt(e.to_string()))
}
