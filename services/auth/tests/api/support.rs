use std::sync::Arc;

use auth::{
    domain::{DisplayName, Email, NewSession, NewUser, RefreshSecret, Session, User},
    store::AuthStore,
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kernel::{
    db::SqlPool,
    engine::EngineUrl,
    grant::{Role, Tier},
};
use tempfile::TempDir;
use uuid::Uuid;

/// Now at the millisecond precision the service keeps.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1)).expect("truncate to milliseconds")
}

pub use testkit::unique_email;

pub fn email(raw: &str) -> Email {
    Email::parse(raw).expect("a valid email")
}

pub fn display_name(raw: &str) -> DisplayName {
    DisplayName::parse(raw).expect("a valid display name")
}

/// A store on a fresh database of its own, removed again by [`StoreFixture::finish`].
pub struct StoreFixture {
    store: Arc<dyn AuthStore>,
    pool: SqlPool,
    postgres_database: Option<String>,
    _dir: Option<TempDir>,
}

impl StoreFixture {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("auth.db").display());
        Self::open(&url, None, Some(dir)).await
    }

    pub async fn postgres() -> Self {
        let database = testkit::fresh_database_name();
        let url = testkit::postgres_database_url(&database);
        Self::open(&url, Some(database), None).await
    }

    async fn open(url: &str, postgres_database: Option<String>, dir: Option<TempDir>) -> Self {
        let pool = SqlPool::connect(&EngineUrl::new(url), auth::DATABASE_NAME)
            .await
            .unwrap_or_else(|error| panic!("cannot open {url}: {error}"));
        let store = auth::store::open(pool.clone())
            .await
            .unwrap_or_else(|error| panic!("cannot migrate {url}: {error}"));
        Self { store, pool, postgres_database, _dir: dir }
    }

    pub fn store(&self) -> Arc<dyn AuthStore> {
        Arc::clone(&self.store)
    }

    /// Closes the pool and drops the PostgreSQL database. A failed test skips this and
    /// leaves its database behind for a look.
    pub async fn finish(self) {
        drop(self.store);
        match self.pool {
            SqlPool::Sqlite(pool) => pool.close().await,
            SqlPool::Postgres(pool) => pool.close().await,
        }
        if let Some(database) = self.postgres_database {
            testkit::drop_database(&database).await;
        }
    }
}

/// A user as the service would register it, not yet stored.
pub fn new_user(tier: Tier, role: Role, created_at: DateTime<Utc>) -> NewUser {
    NewUser {
        user: User {
            id: Uuid::now_v7(),
            email: unique_email(),
            display_name: "Ada Lovelace".to_owned(),
            tier,
            role,
            created_at,
        },
        password_hash: format!("hash-{}", Uuid::new_v4().simple()),
    }
}

/// Stores a free user and returns it.
pub async fn stored_user(store: &dyn AuthStore) -> NewUser {
    let new = new_user(Tier::Free, Role::User, now());
    store
        .create_user(&new, &auth::events::user_registered(&new.user))
        .await
        .expect("create a user");
    new
}

/// A session of `user_id` created at `created_at`, expiring at `expires_at`.
pub fn new_session(
    user_id: Uuid,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> NewSession {
    NewSession {
        session: Session {
            id: Uuid::now_v7(),
            user_id,
            created_at,
            last_seen_at: created_at,
            expires_at,
            user_agent: Some(format!("test-agent/{}", Uuid::new_v4().simple())),
            revoked_at: None,
        },
        refresh: RefreshSecret::generate(),
        refresh_expires_at: expires_at,
    }
}

/// Stores a session of `user_id` that lives for a day from now.
pub async fn stored_session(store: &dyn AuthStore, user_id: Uuid) -> NewSession {
    let created_at = now();
    let new = new_session(user_id, created_at, created_at + TimeDelta::days(1));
    store.create_session(&new).await.expect("create a session");
    new
}
