//! The auth service's operations: each checks its input, applies the rules in `domain`,
//! and keeps the store and the session cache in step.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kernel::{
    cache::Cache,
    caller::{Caller, ClientInfo},
    grant::{self, AccessClaims, DirectoryError, Role, SessionDirectory, SessionGrant, Tier},
};
use uuid::Uuid;

use crate::{
    config::AuthConfig,
    domain::{
        AuthError, DisplayName, Email, NewSession, NewUser, Password, RefreshSecret,
        RefreshVerdict, Session, User, judge_refresh,
    },
    events,
    keys::KeyRing,
    password::PasswordHasher,
    store::{AuthStore, StoreError},
};

/// A user who just signed in, with the tokens to hand them.
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    pub access_token: String,
    pub refresh_token: RefreshSecret,
    pub expires_in: Duration,
}

pub struct Registration<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub display_name: &'a str,
}

/// Why a login failed, as `auth_login_failures_total` counts it: a wrong email or
/// password (indistinguishable to the caller), or a throttled address or account.
const LOGIN_FAILURES: [&str; 2] = ["bad_credentials", "throttled"];

pub struct AuthService {
    store: Arc<dyn AuthStore>,
    cache: Arc<dyn Cache>,
    keys: KeyRing,
    hasher: PasswordHasher,
    config: AuthConfig,
}

/// Times are kept at millisecond precision, as the API shows them.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(now)
}

fn after(start: DateTime<Utc>, span: Duration) -> DateTime<Utc> {
    start + TimeDelta::from_std(span).unwrap_or(TimeDelta::MAX)
}

impl AuthService {
    pub async fn new(
        store: Arc<dyn AuthStore>,
        cache: Arc<dyn Cache>,
        config: AuthConfig,
    ) -> Result<Self, AuthError> {
        let keys = KeyRing::load(store.as_ref(), config.signing_key_pem.as_ref()).await?;
        tracing::info!(kid = keys.active_kid(), "access tokens signed with ed25519 key");
        for reason in LOGIN_FAILURES {
            metrics::counter!("auth_login_failures_total", "reason" => reason).increment(0);
        }
        Ok(Self { store, cache, keys, hasher: PasswordHasher::default(), config })
    }

    pub fn store(&self) -> &Arc<dyn AuthStore> {
        &self.store
    }

    pub async fn register(
        &self,
        registration: Registration<'_>,
        client: &ClientInfo,
    ) -> Result<SignedIn, AuthError> {
        let email = Email::parse(registration.email)?;
        let password = Password::parse(registration.password, "password")?;
        let display_name = DisplayName::parse(registration.display_name)?;
        let user = User {
            id: Uuid::now_v7(),
            email: email.as_str().to_owned(),
            display_name: display_name.as_str().to_owned(),
            tier: Tier::Free,
            role: Role::User,
            created_at: now(),
            premium_until: None,
        };
        let password_hash = self.hasher.hash(&password).await?;
        let event = events::user_registered(&user);
        self.store
            .create_user(&NewUser { user: user.clone(), password_hash }, &event)
            .await
            .map_err(|error| match error {
                StoreError::Conflict => AuthError::EmailTaken,
                other => other.into(),
            })?;
        tracing::info!(user_id = %user.id, "user registered");
        self.start_session(user, client).await
    }

    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<SignedIn, AuthError> {
        let outcome = self.attempt_login(email, password, client).await;
        let failure = match &outcome {
            Err(AuthError::InvalidCredentials) => Some(LOGIN_FAILURES[0]),
            Err(AuthError::Throttled { .. }) => Some(LOGIN_FAILURES[1]),
            _ => None,
        };
        if let Some(reason) = failure {
            metrics::counter!("auth_login_failures_total", "reason" => reason).increment(1);
        }
        outcome
    }

    async fn attempt_login(
        &self,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<SignedIn, AuthError> {
        let email = Email::parse(email).map_err(|_| AuthError::InvalidCredentials)?;
        let throttle_keys = self.throttle_keys(&email, client);
        // Counted as a failure before the password is checked, so that a burst of
        // concurrent guesses cannot all pass a check made before any of them failed.
        let counted = self.count_attempt(&throttle_keys).await?;
        let outcome = self.verify_and_sign_in(&email, password, client).await;
        if !matches!(outcome, Err(AuthError::InvalidCredentials)) {
            self.take_back(&counted).await;
        }
        outcome
    }

    async fn verify_and_sign_in(
        &self,
        email: &Email,
        password: &str,
        client: &ClientInfo,
    ) -> Result<SignedIn, AuthError> {
        let password = Password::unchecked(password);
        let account = self.store.credentials(email).await?;
        let verified =
            self.hasher.verify(&password, account.as_ref().map(|(_, hash)| hash.as_str())).await?;
        match account {
            Some((user, _)) if verified => self.start_session(user, client).await,
            _ => Err(AuthError::InvalidCredentials),
        }
    }

    pub async fn refresh(&self, token: &str) -> Result<SignedIn, AuthError> {
        let presented = RefreshSecret::from_client(token);
        let record = self
            .store
            .refresh_record(&presented.hash())
            .await?
            .ok_or(AuthError::InvalidRefreshToken)?;
        let now = now();
        match judge_refresh(&record, now) {
            RefreshVerdict::Refuse => Err(AuthError::InvalidRefreshToken),
            RefreshVerdict::Reused => {
                self.revoke_family(record.user_id, record.session_id, now).await?;
                Err(AuthError::InvalidRefreshToken)
            }
            RefreshVerdict::Rotate => {
                let next = RefreshSecret::generate();
                let rotated = self
                    .store
                    .rotate_refresh(
                        &presented.hash(),
                        &next.hash(),
                        after(now, self.config.refresh_token_ttl()),
                        record.session_id,
                        now,
                    )
                    .await?;
                if !rotated {
                    // Another request rotated this token a moment ago: the same token was
                    // presented twice, which is reuse.
                    self.revoke_family(record.user_id, record.session_id, now).await?;
                    return Err(AuthError::InvalidRefreshToken);
                }
                let user =
                    self.store.user(record.user_id).await?.ok_or(AuthError::InvalidRefreshToken)?;
                let access_token = self.sign_access(&user, record.session_id, now)?;
                Ok(SignedIn {
                    user,
                    access_token,
                    refresh_token: next,
                    expires_in: self.config.access_token_ttl(),
                })
            }
        }
    }

    async fn revoke_family(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        tracing::warn!(%user_id, %session_id, "refresh token reused; revoking its session");
        self.store.revoke_session(user_id, session_id, now).await?;
        self.forget_grants(&[session_id]).await;
        Ok(())
    }

    /// Ends the session the refresh token belongs to, and the caller's own.
    pub async fn logout(&self, caller: &Caller, refresh_token: &str) -> Result<(), AuthError> {
        let now = now();
        let presented = RefreshSecret::from_client(refresh_token);
        let mut ended = vec![caller.session_id];
        if let Some(record) = self.store.refresh_record(&presented.hash()).await?
            && record.user_id == caller.user_id
            && record.session_id != caller.session_id
        {
            ended.push(record.session_id);
        }
        for session_id in &ended {
            self.store.revoke_session(caller.user_id, *session_id, now).await?;
        }
        self.forget_grants(&ended).await;
        Ok(())
    }

    /// Operator look-up of an account by email.
    pub async fn user_by_email(&self, email: &str) -> Result<User, AuthError> {
        let email = Email::parse(email)?;
        Ok(self.store.credentials(&email).await?.ok_or(AuthError::UserNotFound)?.0)
    }

    /// An account by id, for other services.
    pub async fn user(&self, id: Uuid) -> Result<Option<User>, AuthError> {
        Ok(self.store.user(id).await?)
    }

    pub async fn me(&self, caller: &Caller) -> Result<User, AuthError> {
        self.store.user(caller.user_id).await?.ok_or(AuthError::UserNotFound)
    }

    pub async fn rename(&self, caller: &Caller, display_name: &str) -> Result<User, AuthError> {
        let name = DisplayName::parse(display_name)?;
        let at = now();
        let event = events::user_updated(caller.user_id, name.as_str(), at);
        self.store.rename(caller.user_id, &name, at, &event).await?.ok_or(AuthError::UserNotFound)
    }

    /// Applies a change of paid premium announced by the people service; the user's
    /// sessions see their new tier on their next request.
    pub async fn apply_premium(
        &self,
        consumer: &str,
        event_id: Uuid,
        user_id: Uuid,
        premium_until: Option<DateTime<Utc>>,
        revision: u64,
    ) -> Result<(), AuthError> {
        let changed =
            self.store.apply_premium(consumer, event_id, user_id, premium_until, revision).await?;
        if let Some(sessions) = changed {
            tracing::info!(%user_id, ?premium_until, revision, "premium changed");
            self.forget_grants(&sessions).await;
        }
        Ok(())
    }

    pub async fn change_password(
        &self,
        caller: &Caller,
        current: &str,
        new: &str,
    ) -> Result<(), AuthError> {
        let new = Password::parse(new, "new_password")?;
        self.confirm_password(caller, current, "current_password").await?;
        let hash = self.hasher.hash(&new).await?;
        let revoked =
            self.store.change_password(caller.user_id, &hash, caller.session_id, now()).await?;
        self.forget_grants(&revoked).await;
        Ok(())
    }

    pub async fn sessions(&self, caller: &Caller) -> Result<Vec<Session>, AuthError> {
        Ok(self.store.sessions(caller.user_id, now()).await?)
    }

    pub async fn revoke_session(&self, caller: &Caller, session_id: Uuid) -> Result<(), AuthError> {
        if !self.store.revoke_session(caller.user_id, session_id, now()).await? {
            return Err(AuthError::SessionNotFound);
        }
        self.forget_grants(&[session_id]).await;
        Ok(())
    }

    pub async fn delete_account(&self, caller: &Caller, password: &str) -> Result<(), AuthError> {
        self.confirm_password(caller, password, "password").await?;
        let at = now();
        let sessions = self
            .store
            .delete_user(caller.user_id, &events::user_deleted(caller.user_id, at))
            .await?;
        self.forget_grants(&sessions).await;
        tracing::info!(user_id = %caller.user_id, "account deleted");
        Ok(())
    }

    /// Operator action: changes a user's tier and/or role; their live sessions see the
    /// change on their next request.
    pub async fn set_access(
        &self,
        email: &str,
        tier: Option<Tier>,
        role: Option<Role>,
    ) -> Result<User, AuthError> {
        let email = Email::parse(email)?;
        let (user, sessions) = self
            .store
            .set_access(&email, tier, role, now())
            .await?
            .ok_or(AuthError::UserNotFound)?;
        self.forget_grants(&sessions).await;
        Ok(user)
    }

    /// The grant of a live session: from the cache while fresh, else from the store.
    pub async fn grant(&self, session_id: Uuid) -> Result<Option<SessionGrant>, AuthError> {
        let now = now();
        let cache = self.cache.as_ref();
        if let Some(cached) =
            grant::fresh_cached_grant(cache, session_id, self.config.grant_max_age()).await
        {
            return Ok(Some(cached));
        }
        match self.store.grant(session_id, now).await? {
            Some(grant) => {
                self.remember(&grant).await;
                Ok(Some(grant))
            }
            None => {
                self.forget_grants(&[session_id]).await;
                Ok(None)
            }
        }
    }

    pub fn jwks(&self) -> &jsonwebtoken::jwk::JwkSet {
        self.keys.jwks()
    }

    async fn confirm_password(
        &self,
        caller: &Caller,
        password: &str,
        field: &'static str,
    ) -> Result<(), AuthError> {
        let hash = self.store.password_hash(caller.user_id).await?;
        let password = Password::unchecked(password);
        if self.hasher.verify(&password, hash.as_deref()).await? {
            Ok(())
        } else {
            Err(AuthError::WrongPassword { field })
        }
    }

    async fn start_session(&self, user: User, client: &ClientInfo) -> Result<SignedIn, AuthError> {
        let now = now();
        let refresh_expires_at = after(now, self.config.refresh_token_ttl());
        let session = Session {
            id: Uuid::now_v7(),
            user_id: user.id,
            created_at: now,
            last_seen_at: now,
            expires_at: refresh_expires_at,
            user_agent: client.user_agent.clone(),
            revoked_at: None,
        };
        let refresh = RefreshSecret::generate();
        self.store
            .create_session(&NewSession {
                session: session.clone(),
                refresh: refresh.clone(),
                refresh_expires_at,
            })
            .await?;
        self.remember(&SessionGrant {
            user_id: user.id,
            session_id: session.id,
            tier: user.tier,
            role: user.role,
            checked_at: now,
            premium_until: user.premium_until,
        })
        .await;
        let access_token = self.sign_access(&user, session.id, now)?;
        Ok(SignedIn {
            user,
            access_token,
            refresh_token: refresh,
            expires_in: self.config.access_token_ttl(),
        })
    }

    fn sign_access(
        &self,
        user: &User,
        session_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<String, AuthError> {
        let issued = now.timestamp();
        let ttl = i64::try_from(self.config.access_token_ttl_secs).unwrap_or(i64::MAX);
        self.keys.sign(&AccessClaims {
            sub: user.id,
            sid: session_id,
            tier: user.tier,
            role: user.role,
            iat: issued,
            exp: issued.saturating_add(ttl),
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
        })
    }

    async fn remember(&self, grant: &SessionGrant) {
        let Ok(value) = serde_json::to_string(grant) else {
            return;
        };
        let key = grant::session_key(grant.session_id);
        if let Err(error) = self.cache.set(&key, &value, self.config.session_cache_ttl()).await {
            tracing::warn!(%error, "could not cache session grant");
        }
    }

    async fn forget_grants(&self, session_ids: &[Uuid]) {
        let keys: Vec<String> = session_ids.iter().copied().map(grant::session_key).collect();
        if let Err(error) = self.cache.delete(&keys).await {
            // The grant's max age bounds how long the stale entry can be trusted.
            tracing::warn!(%error, "could not drop cached session grants");
        }
    }

    fn throttle_keys(&self, email: &Email, client: &ClientInfo) -> Vec<(String, u64)> {
        let limits = &self.config.login_throttle;
        let mut keys = vec![(
            format!("login-failures:email:{}", email.as_str()),
            limits.max_failures_per_email,
        )];
        if let Some(ip) = client.ip {
            keys.push((format!("login-failures:ip:{ip}"), limits.max_failures_per_ip));
        }
        keys
    }

    /// Counts an attempt against every key and refuses it when any window is over its
    /// limit. Returns the keys it was counted against, for [`Self::take_back`]. An
    /// unavailable cache lets the attempt through uncounted: logging everyone out of
    /// sign-in is worse than a window without a throttle.
    async fn count_attempt(&self, keys: &[(String, u64)]) -> Result<Vec<String>, AuthError> {
        let window = Duration::from_secs(self.config.login_throttle.window_secs);
        let mut counted = Vec::with_capacity(keys.len());
        let mut refused = None;
        for (key, limit) in keys {
            match self.cache.hit(key, window).await {
                Ok(hit) => {
                    counted.push(key.clone());
                    if hit.count > *limit {
                        refused =
                            Some(refused.map_or(hit.resets_in, |r: Duration| r.max(hit.resets_in)));
                    }
                }
                Err(error) => tracing::warn!(%error, "login throttle unavailable"),
            }
        }
        match refused {
            // A refused attempt checked no password: it does not count against the limit.
            Some(retry_after) => {
                self.take_back(&counted).await;
                Err(AuthError::Throttled { retry_after })
            }
            None => Ok(counted),
        }
    }

    /// Takes back an attempt counted by [`Self::count_attempt`] that did not fail.
    async fn take_back(&self, counted: &[String]) {
        for key in counted {
            if let Err(error) = self.cache.unhit(key).await {
                tracing::warn!(%error, "login throttle unavailable");
            }
        }
    }
}

#[async_trait]
impl SessionDirectory for AuthService {
    async fn grant(&self, session_id: Uuid) -> Result<Option<SessionGrant>, DirectoryError> {
        AuthService::grant(self, session_id).await.map_err(|e| DirectoryError(e.to_string()))
    }

    async fn jwks(&self) -> Result<serde_json::Value, DirectoryError> {
        serde_json::to_value(self.keys.jwks()).map_err(|e| DirectoryError(e.to_string()))
    }
}
