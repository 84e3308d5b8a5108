//! Events the auth service publishes (through its outbox). It consumes none yet.

use chrono::{DateTime, Utc};
use kernel::outbox::OutboxEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::User;

pub const USER_REGISTERED: &str = "user.registered";
pub const USER_DELETED: &str = "user.deleted";

/// `user.registered` v1: a new account exists.
#[derive(Debug, Serialize)]
pub struct UserRegistered<'a> {
    pub user_id: Uuid,
    pub email: &'a str,
    pub display_name: &'a str,
    pub tier: &'a str,
    pub registered_at: DateTime<Utc>,
}

/// `user.deleted` v1: the account and everything it owned must go.
#[derive(Debug, Serialize)]
pub struct UserDeleted {
    pub user_id: Uuid,
    pub deleted_at: DateTime<Utc>,
}

pub fn user_registered(user: &User) -> OutboxEvent {
    let payload = UserRegistered {
        user_id: user.id,
        email: &user.email,
        display_name: &user.display_name,
        tier: user.tier.as_str(),
        registered_at: user.created_at,
    };
    OutboxEvent::new(
        USER_REGISTERED,
        1,
        user.id.to_string(),
        &payload,
        user.created_at,
    )
}

pub fn user_deleted(user_id: Uuid, at: DateTime<Utc>) -> OutboxEvent {
    OutboxEvent::new(
        USER_DELETED,
        1,
        user_id.to_string(),
        &UserDeleted {
            user_id,
            deleted_at: at,
        },
        at,
    )
}

/// Maps a stored type name back to its constant.
pub(crate) fn known_type(name: &str) -> &'static str {
    match name {
        USER_REGISTERED => USER_REGISTERED,
        USER_DELETED => USER_DELETED,
        _ => "unknown",
    }
}
