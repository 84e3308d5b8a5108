use std::sync::Arc;

use auth::{
    domain::{DisplayName, Email, NewSession, NewUser, RefreshSecret, Session, User},
    store::AuthStore,
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kernel::grant::{Role, Tier};
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

/// A store on a database of its own, removed again by [`StoreFixture::finish`].
pub struct StoreFixture {
    store: Arc<dyn AuthStore>,
    database: testkit::TestDatabase,
}

impl StoreFixture {
    pub async fn sqlite() -> Self {
        Self::open(testkit::TestDatabase::sqlite().await).await
    }

    pub async fn postgres() -> Self {
        Self::open(testkit::TestDatabase::postgres().await).await
    }

    async fn open(database: testkit::TestDatabase) -> Self {
        let store = auth::store::open(database.pool().clone())
            .await
            .unwrap_or_else(|error| panic!("cannot migrate the test database: {error}"));
        Self { store, database }
    }

    pub fn store(&self) -> Arc<dyn AuthStore> {
        Arc::clone(&self.store)
    }

    /// Drops the store, then the database (a failed test leaves it for a look).
    pub async fn finish(self) {
        drop(self.store);
        self.database.finish().await;
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
            premium_until: None,
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
