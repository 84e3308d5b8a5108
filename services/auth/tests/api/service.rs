//! `AuthService` on a SQLite store and the in-process cache: the account flows as a client
//! drives them, with grants read the way the gateway reads them.

use std::{sync::Arc, time::Duration};

use auth::{
    AuthConfig, AuthService,
    domain::AuthError,
    service::{Registration, SignedIn},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use kernel::{
    cache::{Cache, MemoryCache},
    caller::{Caller, ClientInfo},
    grant::{self, AccessClaims, Role, Tier},
};
use uuid::Uuid;

use crate::support::{StoreFixture, unique_email};

const PASSWORD: &str = "correct horse battery";

struct Harness {
    service: AuthService,
    cache: Arc<dyn Cache>,
    _store: StoreFixture,
}

impl Harness {
    async fn new() -> Self {
        Self::with_config(AuthConfig::default()).await
    }

    async fn with_config(config: AuthConfig) -> Self {
        let store = StoreFixture::sqlite().await;
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new("test", 1 << 20));
        let service = AuthService::new(store.store(), Arc::clone(&cache), config)
            .await
            .expect("start the auth service");
        Self { service, cache, _store: store }
    }

    async fn register(&self, email: &str) -> SignedIn {
        let registration = Registration { email, password: PASSWORD, display_name: "Ada" };
        self.service.register(registration, &client()).await.expect("register")
    }

    async fn login(&self, email: &str, password: &str) -> Result<SignedIn, AuthError> {
        self.service.login(email, password, &client()).await
    }

    /// The caller a gateway would derive from this sign-in's access token.
    async fn caller(&self, signed_in: &SignedIn) -> Caller {
        let session_id = claims(signed_in).sid;
        let grant = self.service.grant(session_id).await.unwrap().expect("a live session");
        Caller {
            user_id: grant.user_id,
            session_id: grant.session_id,
            tier: grant.tier,
            role: grant.role,
        }
    }

    async fn is_live(&self, signed_in: &SignedIn) -> bool {
        self.service.grant(claims(signed_in).sid).await.unwrap().is_some()
    }
}

fn client() -> ClientInfo {
    ClientInfo { ip: None, user_agent: Some("service-tests".to_owned()) }
}

/// The claims of an access token, read without checking its signature.
fn claims(signed_in: &SignedIn) -> AccessClaims {
    let payload = signed_in.access_token.split('.').nth(1).expect("a JWT has a payload");
    let json = URL_SAFE_NO_PAD.decode(payload).expect("the payload is base64url");
    serde_json::from_slice(&json).expect("the payload holds access claims")
}

#[tokio::test]
async fn register_then_login() {
    let harness = Harness::new().await;
    let email = unique_email();
    let registered = harness.register(&email).await;
    assert_eq!(registered.user.email, email);
    assert_eq!((registered.user.tier, registered.user.role), (Tier::Free, Role::User));
    let first = claims(&registered);
    assert_eq!(first.sub, registered.user.id);
    assert_eq!((first.tier, first.role), (Tier::Free, Role::User));
    assert_eq!(first.iss, grant::DEFAULT_ISSUER);
    assert_eq!(first.aud, grant::DEFAULT_AUDIENCE);

    let signed_in = harness.login(&email, PASSWORD).await.expect("log in");
    assert_eq!(signed_in.user, registered.user);
    let second = claims(&signed_in);
    assert_eq!(second.sub, registered.user.id);
    assert_ne!(second.sid, first.sid, "each sign-in is a session of its own");
    assert_ne!(signed_in.refresh_token.token(), registered.refresh_token.token());

    let grant = harness.service.grant(second.sid).await.unwrap().expect("a live session");
    assert_eq!((grant.user_id, grant.session_id), (registered.user.id, second.sid));
    let caller = harness.caller(&signed_in).await;
    let sessions = harness.service.sessions(&caller).await.unwrap();
    let ids: Vec<Uuid> = sessions.iter().map(|session| session.id).collect();
    assert_eq!(ids, [second.sid, first.sid], "newest first");
    assert_eq!(harness.service.me(&caller).await.unwrap(), registered.user);
}

#[tokio::test]
async fn wrong_passwords_and_unknown_emails_look_alike() {
    let harness = Harness::new().await;
    let email = unique_email();
    harness.register(&email).await;
    let wrong_password = harness.login(&email, "not the password").await;
    let unknown_email = harness.login(&unique_email(), PASSWORD).await;
    let malformed_email = harness.login("not an email", PASSWORD).await;
    for outcome in [wrong_password, unknown_email, malformed_email] {
        let error = outcome.expect_err("no sign-in");
        assert!(matches!(error, AuthError::InvalidCredentials), "got {error:?}");
    }
}

#[tokio::test]
async fn emails_ignore_case_and_whitespace() {
    let harness = Harness::new().await;
    let email = unique_email();
    let shouted = format!("  {}  ", email.to_uppercase());
    let registered = harness.register(&shouted).await;
    assert_eq!(registered.user.email, email, "stored trimmed and lower-cased");
    let signed_in = harness.login(&email.to_uppercase(), PASSWORD).await.expect("log in");
    assert_eq!(signed_in.user.id, registered.user.id);
    let again = Registration { email: &email, password: PASSWORD, display_name: "Other" };
    let error = harness.service.register(again, &client()).await.expect_err("taken");
    assert!(matches!(error, AuthError::EmailTaken), "got {error:?}");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let harness = Harness::new().await;
    let email = unique_email();
    let signed_in = harness.register(&email).await;
    let other_device = harness.login(&email, PASSWORD).await.unwrap();
    let sid = claims(&signed_in).sid;

    let refreshed = harness.service.refresh(signed_in.refresh_token.token()).await.unwrap();
    assert_eq!(claims(&refreshed).sid, sid, "the same session goes on");
    assert_ne!(refreshed.refresh_token.token(), signed_in.refresh_token.token());
    let newest = harness.service.refresh(refreshed.refresh_token.token()).await.unwrap();
    assert!(harness.service.grant(sid).await.unwrap().is_some());

    // The first token was rotated: presenting it again means someone copied it.
    let replay = harness.service.refresh(signed_in.refresh_token.token()).await;
    assert!(matches!(replay, Err(AuthError::InvalidRefreshToken)), "got {replay:?}");
    assert_eq!(harness.service.grant(sid).await.unwrap(), None, "the session is revoked");
    let newest_again = harness.service.refresh(newest.refresh_token.token()).await;
    assert!(
        matches!(newest_again, Err(AuthError::InvalidRefreshToken)),
        "the whole family dies: {newest_again:?}"
    );
    assert!(harness.is_live(&other_device).await, "other sessions live on");

    let garbage = harness.service.refresh("not-a-token").await;
    assert!(matches!(garbage, Err(AuthError::InvalidRefreshToken)), "got {garbage:?}");
}

#[tokio::test]
async fn repeated_failures_throttle_logins() {
    let mut config = AuthConfig::default();
    config.login_throttle.max_failures_per_email = 3;
    let window = Duration::from_secs(config.login_throttle.window_secs);
    let harness = Harness::with_config(config).await;
    let email = unique_email();
    let bystander = unique_email();
    harness.register(&email).await;
    harness.register(&bystander).await;

    for attempt in 1..=3 {
        let error = harness.login(&email, "not the password").await.expect_err("wrong password");
        assert!(matches!(error, AuthError::InvalidCredentials), "attempt {attempt}: {error:?}");
    }
    match harness.login(&email.to_uppercase(), PASSWORD).await {
        Err(AuthError::Throttled { retry_after }) => {
            assert!(retry_after <= window, "{retry_after:?}");
            assert!(!retry_after.is_zero());
        }
        other => panic!("even the right password is throttled now, got {other:?}"),
    }
    harness.login(&bystander, PASSWORD).await.expect("other accounts are not throttled");
}

#[tokio::test]
async fn a_flushed_cache_logs_nobody_out() {
    let harness = Harness::new().await;
    let signed_in = harness.register(&unique_email()).await;
    let sid = claims(&signed_in).sid;
    let key = grant::session_key(sid);
    assert!(harness.cache.get(&key).await.unwrap().is_some(), "sign-in caches the grant");

    harness.cache.delete(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(
        grant::fresh_cached_grant(harness.cache.as_ref(), sid, Duration::from_secs(60)).await,
        None
    );
    let grant = harness.service.grant(sid).await.unwrap().expect("read from the database");
    assert_eq!((grant.user_id, grant.session_id), (signed_in.user.id, sid));
    let cached =
        grant::fresh_cached_grant(harness.cache.as_ref(), sid, Duration::from_secs(60)).await;
    assert_eq!(cached, Some(grant), "and cached again");
}

#[tokio::test]
async fn new_access_applies_to_the_next_grant() {
    let harness = Harness::new().await;
    let email = unique_email();
    let signed_in = harness.register(&email).await;
    let sid = claims(&signed_in).sid;
    assert_eq!(harness.service.grant(sid).await.unwrap().unwrap().tier, Tier::Free);

    let user = harness.service.set_access(&email, Some(Tier::Premium), None).await.unwrap();
    assert_eq!((user.tier, user.role), (Tier::Premium, Role::User));
    let grant = harness.service.grant(sid).await.unwrap().unwrap();
    assert_eq!((grant.tier, grant.role), (Tier::Premium, Role::User), "not the cached grant");

    let missing = harness.service.set_access(&unique_email(), Some(Tier::Premium), None).await;
    assert!(matches!(missing, Err(AuthError::UserNotFound)), "got {missing:?}");
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions() {
    let harness = Harness::new().await;
    let email = unique_email();
    let first = harness.register(&email).await;
    let current = harness.login(&email, PASSWORD).await.unwrap();
    let third = harness.login(&email, PASSWORD).await.unwrap();
    let caller = harness.caller(&current).await;

    let wrong =
        harness.service.change_password(&caller, "not the password", "brand new pass").await;
    assert!(
        matches!(wrong, Err(AuthError::WrongPassword { field: "current_password" })),
        "got {wrong:?}"
    );
    assert!(harness.is_live(&first).await, "a refused change revokes nothing");

    harness.service.change_password(&caller, PASSWORD, "brand new pass").await.unwrap();
    assert!(harness.is_live(&current).await, "the caller's session stays");
    assert!(!harness.is_live(&first).await);
    assert!(!harness.is_live(&third).await);
    let stale = harness.service.refresh(first.refresh_token.token()).await;
    assert!(matches!(stale, Err(AuthError::InvalidRefreshToken)), "got {stale:?}");

    let old = harness.login(&email, PASSWORD).await;
    assert!(matches!(old, Err(AuthError::InvalidCredentials)), "got {old:?}");
    harness.login(&email, "brand new pass").await.expect("the new password works");
}

#[tokio::test]
async fn deleting_the_account_ends_every_session() {
    let harness = Harness::new().await;
    let email = unique_email();
    let first = harness.register(&email).await;
    let second = harness.login(&email, PASSWORD).await.unwrap();
    let caller = harness.caller(&second).await;

    let wrong = harness.service.delete_account(&caller, "not the password").await;
    assert!(matches!(wrong, Err(AuthError::WrongPassword { field: "password" })), "got {wrong:?}");
    assert!(harness.is_live(&second).await);

    harness.service.delete_account(&caller, PASSWORD).await.unwrap();
    assert!(!harness.is_live(&first).await);
    assert!(!harness.is_live(&second).await);
    let login = harness.login(&email, PASSWORD).await;
    assert!(matches!(login, Err(AuthError::InvalidCredentials)), "got {login:?}");
    let refresh = harness.service.refresh(second.refresh_token.token()).await;
    assert!(matches!(refresh, Err(AuthError::InvalidRefreshToken)), "got {refresh:?}");
    let me = harness.service.me(&caller).await;
    assert!(matches!(me, Err(AuthError::UserNotFound)), "got {me:?}");
}
