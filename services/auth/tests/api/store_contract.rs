//! One contract for every `AuthStore` adapter: each case below runs once on SQLite and once
//! on PostgreSQL (`store_contract::sqlite::*`, `store_contract::postgres::*`), each time on
//! a fresh database.

use std::sync::Arc;

use auth::{
    domain::RefreshSecret,
    store::{AuthStore, SigningKeyRecord, StoreError},
};
use bus::{
    Envelope, Event,
    events::{UserDeleted, UserRegistered},
    outbox::OutboxStore,
};
use chrono::TimeDelta;
use kernel::grant::{Role, SessionGrant, Tier};
use uuid::Uuid;

use crate::support::{
    display_name, email, new_session, new_user, now, stored_session, stored_user, unique_email,
};

macro_rules! store_contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = crate::support::StoreFixture::sqlite().await;
                    super::$case(fixture.store()).await;
                    fixture.finish().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = crate::support::StoreFixture::postgres().await;
                    super::$case(fixture.store()).await;
                    fixture.finish().await;
                }
            )*
        }
    };
}

store_contract!(
    users_are_created_and_found,
    duplicate_emails_conflict,
    sessions_grant_their_users_access,
    sessions_are_listed_newest_first,
    sessions_are_revoked_once,
    expired_sessions_grant_nothing,
    refresh_tokens_rotate_once,
    change_password_keeps_only_one_session,
    set_access_changes_tier_and_role,
    delete_user_takes_everything_along,
    rename,
    paid_premium_follows_the_latest_revision_once,
    signing_keys_newest_first,
    the_outbox_drains_in_order_and_prunes,
);

async fn pending(store: &dyn AuthStore, key: Uuid) -> Vec<Envelope> {
    let key = key.to_string();
    let events = OutboxStore::pending(store, 1_000).await.expect("read the outbox");
    events.into_iter().filter(|event| event.key == key).collect()
}

async fn users_are_created_and_found(store: Arc<dyn AuthStore>) {
    let registered_at = now();
    let new = new_user(Tier::Premium, Role::Admin, registered_at);
    let event = auth::events::user_registered(&new.user);
    store.create_user(&new, &event).await.unwrap();

    let (user, hash) = store.credentials(&email(&new.user.email)).await.unwrap().unwrap();
    assert_eq!(user, new.user);
    assert_eq!(hash, new.password_hash);
    assert_eq!(store.user(new.user.id).await.unwrap(), Some(new.user.clone()));
    assert_eq!(store.password_hash(new.user.id).await.unwrap(), Some(new.password_hash));

    assert!(store.credentials(&email(&unique_email())).await.unwrap().is_none());
    assert_eq!(store.user(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(store.password_hash(Uuid::now_v7()).await.unwrap(), None);

    let events = pending(store.as_ref(), new.user.id).await;
    assert_eq!(events, vec![event], "the user.registered event waits in the outbox");
    assert_eq!(events[0].event_type, UserRegistered::TYPE);
    assert_eq!(events[0].payload["user_id"], new.user.id.to_string());
    assert_eq!(events[0].payload["email"], new.user.email);
}

async fn duplicate_emails_conflict(store: Arc<dyn AuthStore>) {
    let first = stored_user(store.as_ref()).await;
    let mut second = new_user(Tier::Free, Role::User, now());
    second.user.email = first.user.email.clone();
    let error = store
        .create_user(&second, &auth::events::user_registered(&second.user))
        .await
        .expect_err("the email is taken");
    assert!(matches!(error, StoreError::Conflict), "expected Conflict, got {error:?}");
    assert_eq!(store.user(second.user.id).await.unwrap(), None);
    assert!(
        pending(store.as_ref(), second.user.id).await.is_empty(),
        "the refused user's event was rolled back with it"
    );
    let (owner, _) = store.credentials(&email(&first.user.email)).await.unwrap().unwrap();
    assert_eq!(owner.id, first.user.id);
}

async fn sessions_grant_their_users_access(store: Arc<dyn AuthStore>) {
    let new = new_user(Tier::Premium, Role::Admin, now());
    store.create_user(&new, &auth::events::user_registered(&new.user)).await.unwrap();
    let session = stored_session(store.as_ref(), new.user.id).await;
    let at = now();
    let grant = store.grant(session.session.id, at).await.unwrap();
    assert_eq!(
        grant,
        Some(SessionGrant {
            user_id: new.user.id,
            session_id: session.session.id,
            tier: Tier::Premium,
            role: Role::Admin,
            checked_at: at,
            premium_until: None,
        })
    );
    assert_eq!(store.grant(Uuid::now_v7(), at).await.unwrap(), None, "unknown sessions");
}

async fn sessions_are_listed_newest_first(store: Arc<dyn AuthStore>) {
    let user = stored_user(store.as_ref()).await;
    let other = stored_user(store.as_ref()).await;
    let at = now();
    let later = at + TimeDelta::days(1);
    let oldest = new_session(user.user.id, at - TimeDelta::minutes(2), later);
    let newest = new_session(user.user.id, at, later);
    let middle = new_session(user.user.id, at - TimeDelta::minutes(1), later);
    let revoked = new_session(user.user.id, at - TimeDelta::seconds(30), later);
    let expired =
        new_session(user.user.id, at - TimeDelta::seconds(20), at - TimeDelta::seconds(1));
    let others = new_session(other.user.id, at, later);
    for session in [&oldest, &newest, &middle, &revoked, &expired, &others] {
        store.create_session(session).await.unwrap();
    }
    assert!(store.revoke_session(user.user.id, revoked.session.id, at).await.unwrap());

    let listed = store.sessions(user.user.id, at).await.unwrap();
    assert_eq!(listed, vec![newest.session, middle.session, oldest.session]);
    assert_eq!(store.sessions(other.user.id, at).await.unwrap(), vec![others.session]);
    assert!(store.sessions(Uuid::now_v7(), at).await.unwrap().is_empty());
}

async fn sessions_are_revoked_once(store: Arc<dyn AuthStore>) {
    let user = stored_user(store.as_ref()).await;
    let stranger = stored_user(store.as_ref()).await;
    let session = stored_session(store.as_ref(), user.user.id).await;
    let id = session.session.id;
    assert!(
        !store.revoke_session(stranger.user.id, id, now()).await.unwrap(),
        "only its own user revokes a session"
    );
    assert!(store.grant(id, now()).await.unwrap().is_some());

    assert!(store.revoke_session(user.user.id, id, now()).await.unwrap());
    assert!(!store.revoke_session(user.user.id, id, now()).await.unwrap(), "already revoked");
    assert_eq!(store.grant(id, now()).await.unwrap(), None);
    assert!(store.sessions(user.user.id, now()).await.unwrap().is_empty());
    let record = store.refresh_record(&session.refresh.hash()).await.unwrap().unwrap();
    assert!(record.session_revoked_at.is_some(), "its refresh tokens see the revocation");
}

async fn expired_sessions_grant_nothing(store: Arc<dyn AuthStore>) {
    let user = stored_user(store.as_ref()).await;
    let at = now();
    let expired = new_session(user.user.id, at - TimeDelta::hours(1), at - TimeDelta::seconds(1));
    let ending_now = new_session(user.user.id, at - TimeDelta::hours(1), at);
    store.create_session(&expired).await.unwrap();
    store.create_session(&ending_now).await.unwrap();
    assert_eq!(store.grant(expired.session.id, at).await.unwrap(), None);
    assert_eq!(store.grant(ending_now.session.id, at).await.unwrap(), None, "expiry is exclusive");
    assert!(
        store
            .grant(ending_now.session.id, at - TimeDelta::milliseconds(1))
            .await
            .unwrap()
            .is_some(),
        "alive a moment earlier"
    );
    assert!(store.sessions(user.user.id, at).await.unwrap().is_empty());
}

async fn refresh_tokens_rotate_once(store: Arc<dyn AuthStore>) {
    let user = stored_user(store.as_ref()).await;
    let session = stored_session(store.as_ref(), user.user.id).await;
    let sid = session.session.id;
    let first = session.refresh.hash();

    let record = store.refresh_record(&first).await.unwrap().expect("the first token is known");
    assert_eq!(record.session_id, sid);
    assert_eq!(record.user_id, user.user.id);
    assert_eq!(record.expires_at, session.refresh_expires_at);
    assert_eq!(record.rotated_at, None);
    assert_eq!(record.session_revoked_at, None);
    assert_eq!(record.session_expires_at, session.session.expires_at);
    assert!(store.refresh_record(&RefreshSecret::generate().hash()).await.unwrap().is_none());

    let rotated_at = now() + TimeDelta::seconds(5);
    let next_expires_at = rotated_at + TimeDelta::days(2);
    let second = RefreshSecret::generate().hash();
    assert!(store.rotate_refresh(&first, &second, next_expires_at, sid, rotated_at).await.unwrap());
    let third = RefreshSecret::generate().hash();
    assert!(
        !store.rotate_refresh(&first, &third, next_expires_at, sid, rotated_at).await.unwrap(),
        "a retired token does not rotate again"
    );
    assert!(
        store.refresh_record(&third).await.unwrap().is_none(),
        "the losing rotation stored nothing"
    );

    let old = store.refresh_record(&first).await.unwrap().unwrap();
    assert_eq!(old.rotated_at, Some(rotated_at));
    let new = store.refresh_record(&second).await.unwrap().expect("the new token is known");
    assert_eq!(new.session_id, sid, "the new token belongs to the same session");
    assert_eq!(new.user_id, user.user.id);
    assert_eq!(new.rotated_at, None);
    assert_eq!(new.expires_at, next_expires_at);
    assert_eq!(new.session_expires_at, next_expires_at, "rotation extends the session");

    let listed = store.sessions(user.user.id, now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_seen_at, rotated_at);
    assert_eq!(listed[0].expires_at, next_expires_at);
}

async fn change_password_keeps_only_one_session(store: Arc<dyn AuthStore>) {
    let user = stored_user(store.as_ref()).await;
    let other = stored_user(store.as_ref()).await;
    let first = stored_session(store.as_ref(), user.user.id).await.session.id;
    let kept = stored_session(store.as_ref(), user.user.id).await.session.id;
    let third = stored_session(store.as_ref(), user.user.id).await.session.id;
    let bystander = stored_session(store.as_ref(), other.user.id).await.session.id;

    let mut revoked = store.change_password(user.user.id, "new-hash", kept, now()).await.unwrap();
    revoked.sort();
    let mut expected = vec![first, third];
    expected.sort();
    assert_eq!(revoked, expected);
    assert_eq!(store.password_hash(user.user.id).await.unwrap().as_deref(), Some("new-hash"));
    assert!(store.grant(kept, now()).await.unwrap().is_some());
    assert_eq!(store.grant(first, now()).await.unwrap(), None);
    assert_eq!(store.grant(third, now()).await.unwrap(), None);
    assert!(store.grant(bystander, now()).await.unwrap().is_some(), "other users keep theirs");
    assert_eq!(store.password_hash(other.user.id).await.unwrap(), Some(other.password_hash));

    let again = store.change_password(user.user.id, "newer-hash", kept, now()).await.unwrap();
    assert!(again.is_empty(), "nothing left to revoke: {again:?}");
}

async fn set_access_changes_tier_and_role(store: Arc<dyn AuthStore>) {
    let user = stored_user(store.as_ref()).await;
    let address = email(&user.user.email);
    let first = stored_session(store.as_ref(), user.user.id).await.session.id;
    let second = stored_session(store.as_ref(), user.user.id).await.session.id;
    let revoked = stored_session(store.as_ref(), user.user.id).await.session.id;
    assert!(store.revoke_session(user.user.id, revoked, now()).await.unwrap());

    let (changed, mut sessions) =
        store.set_access(&address, Some(Tier::Premium), None, now()).await.unwrap().unwrap();
    assert_eq!(changed.tier, Tier::Premium);
    assert_eq!(changed.role, Role::User, "an unset role stays as it was");
    assert_eq!(changed.id, user.user.id);
    sessions.sort();
    let mut live = vec![first, second];
    live.sort();
    assert_eq!(sessions, live, "the live sessions, to drop their cached grants");
    let grant = store.grant(first, now()).await.unwrap().unwrap();
    assert_eq!((grant.tier, grant.role), (Tier::Premium, Role::User));

    let (changed, _) =
        store.set_access(&address, None, Some(Role::Admin), now()).await.unwrap().unwrap();
    assert_eq!((changed.tier, changed.role), (Tier::Premium, Role::Admin));
    assert_eq!(store.user(user.user.id).await.unwrap(), Some(changed));

    let nobody = email(&unique_email());
    assert!(store.set_access(&nobody, Some(Tier::Premium), None, now()).await.unwrap().is_none());
}

async fn delete_user_takes_everything_along(store: Arc<dyn AuthStore>) {
    let user = stored_user(store.as_ref()).await;
    let survivor = stored_user(store.as_ref()).await;
    let first = stored_session(store.as_ref(), user.user.id).await;
    let second = stored_session(store.as_ref(), user.user.id).await;
    let kept = stored_session(store.as_ref(), survivor.user.id).await;

    let deleted_at = now();
    let event = auth::events::user_deleted(user.user.id, deleted_at);
    let mut sessions = store.delete_user(user.user.id, &event).await.unwrap();
    sessions.sort();
    let mut expected = vec![first.session.id, second.session.id];
    expected.sort();
    assert_eq!(sessions, expected);

    assert_eq!(store.user(user.user.id).await.unwrap(), None);
    assert!(store.credentials(&email(&user.user.email)).await.unwrap().is_none());
    for session in [&first, &second] {
        assert_eq!(store.grant(session.session.id, now()).await.unwrap(), None);
        assert!(store.refresh_record(&session.refresh.hash()).await.unwrap().is_none());
    }
    assert!(store.sessions(user.user.id, now()).await.unwrap().is_empty());

    let events = pending(store.as_ref(), user.user.id).await;
    let types: Vec<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(types, [UserRegistered::TYPE, UserDeleted::TYPE], "oldest first");
    assert_eq!(events[1], event);

    assert!(store.grant(kept.session.id, now()).await.unwrap().is_some());
    assert!(store.refresh_record(&kept.refresh.hash()).await.unwrap().is_some());
    assert!(store.user(survivor.user.id).await.unwrap().is_some());
}

async fn rename(store: Arc<dyn AuthStore>) {
    let user = stored_user(store.as_ref()).await;
    let at = now();
    let event = auth::events::user_updated(user.user.id, "Grace Hopper", at);
    let renamed =
        store.rename(user.user.id, &display_name("Grace Hopper"), at, &event).await.unwrap();
    let renamed = renamed.expect("the user exists");
    assert_eq!(renamed.display_name, "Grace Hopper");
    assert_eq!(renamed.email, user.user.email, "only the name changes");
    assert_eq!(renamed.created_at, user.user.created_at);
    assert_eq!(store.user(user.user.id).await.unwrap(), Some(renamed));
    let events = pending(store.as_ref(), user.user.id).await;
    assert_eq!(events.last(), Some(&event), "user.updated goes out with the change");
    let nobody = Uuid::now_v7();
    let event = auth::events::user_updated(nobody, "Nobody", at);
    let unknown = store.rename(nobody, &display_name("Nobody"), at, &event).await.unwrap();
    assert_eq!(unknown, None);
    assert!(pending(store.as_ref(), nobody).await.is_empty());
}

async fn paid_premium_follows_the_latest_revision_once(store: Arc<dyn AuthStore>) {
    let user = stored_user(store.as_ref()).await;
    let session = stored_session(store.as_ref(), user.user.id).await;
    let until = now() + TimeDelta::hours(1);
    let event = Uuid::now_v7();
    let applied =
        store.apply_premium("auth.test", event, user.user.id, Some(until), 1).await.unwrap();
    assert_eq!(applied, Some(vec![session.session.id]), "its live sessions are named");
    let premium = store.user(user.user.id).await.unwrap().unwrap();
    assert_eq!((premium.tier, premium.premium_until), (Tier::Premium, Some(until)));
    let grant = store.grant(session.session.id, now()).await.unwrap().unwrap();
    assert_eq!((grant.tier, grant.premium_until), (Tier::Premium, Some(until)));

    // A redelivery, or an older revision arriving late, changes nothing.
    assert_eq!(store.apply_premium("auth.test", event, user.user.id, None, 5).await.unwrap(), None);
    let stale = store.apply_premium("auth.test", Uuid::now_v7(), user.user.id, None, 1).await;
    assert_eq!(stale.unwrap(), None);
    assert_eq!(store.user(user.user.id).await.unwrap().unwrap().tier, Tier::Premium);

    // Once the end has passed, the tier is free again, with nothing more to apply.
    let past = now() - TimeDelta::seconds(1);
    store.apply_premium("auth.test", Uuid::now_v7(), user.user.id, Some(past), 2).await.unwrap();
    let expired = store.user(user.user.id).await.unwrap().unwrap();
    assert_eq!((expired.tier, expired.premium_until), (Tier::Free, None));
    let grant = store.grant(session.session.id, now()).await.unwrap().unwrap();
    assert_eq!(grant.tier, Tier::Free);
}

async fn signing_keys_newest_first(store: Arc<dyn AuthStore>) {
    assert!(store.signing_keys().await.unwrap().is_empty(), "a fresh store has no keys");
    let at = now();
    let key = |kid: &str, created_at| SigningKeyRecord {
        kid: kid.to_owned(),
        private_key_pem: format!("private {kid}"),
        public_key: format!("public {kid}"),
        created_at,
    };
    let older = key("older", at - TimeDelta::days(30));
    let newer = key("newer", at);
    store.add_signing_key(&older).await.unwrap();
    store.add_signing_key(&newer).await.unwrap();
    let mut imposter = key("older", at + TimeDelta::days(1));
    imposter.private_key_pem = "another key".to_owned();
    store.add_signing_key(&imposter).await.expect("an existing kid is not an error");
    assert_eq!(store.signing_keys().await.unwrap(), vec![newer, older], "the first one stays");
}

async fn the_outbox_drains_in_order_and_prunes(store: Arc<dyn AuthStore>) {
    let first = new_user(Tier::Free, Role::User, now());
    let second = new_user(Tier::Free, Role::User, now());
    for new in [&first, &second] {
        store.create_user(new, &auth::events::user_registered(&new.user)).await.unwrap();
    }
    let ours = |events: Vec<Envelope>| -> Vec<Envelope> {
        let keys = [first.user.id.to_string(), second.user.id.to_string()];
        events.into_iter().filter(|e| keys.contains(&e.key)).collect()
    };
    let pending = ours(OutboxStore::pending(store.as_ref(), 1_000).await.unwrap());
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].key, first.user.id.to_string(), "oldest first");
    let registered: UserRegistered = pending[1].decode().unwrap();
    assert_eq!(registered.user_id, second.user.id);

    let published_at = now();
    store.mark_published(&[pending[0].id], published_at).await.unwrap();
    let left = ours(OutboxStore::pending(store.as_ref(), 1_000).await.unwrap());
    assert_eq!(left.iter().map(|e| e.id).collect::<Vec<_>>(), vec![pending[1].id]);

    assert_eq!(store.prune_published(published_at - TimeDelta::seconds(1)).await.unwrap(), 0);
    assert_eq!(store.prune_published(published_at + TimeDelta::seconds(1)).await.unwrap(), 1);
    let still = ours(OutboxStore::pending(store.as_ref(), 1_000).await.unwrap());
    assert_eq!(still.len(), 1, "pruning never touches unpublished events");
}
