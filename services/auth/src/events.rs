//! Events the auth service publishes, through its outbox. It consumes none yet.

use bus::{
    Envelope,
    events::{UserDeleted, UserRegistered},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::User;

pub fn user_registered(user: &User) -> Envelope {
    let event = UserRegistered {
        user_id: user.id,
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        tier: user.tier.as_str().to_owned(),
        registered_at: user.created_at,
    };
    Envelope::new(&event, user.created_at)
}

pub fn user_deleted(user_id: Uuid, at: DateTime<Utc>) -> Envelope {
    Envelope::new(&UserDeleted { user_id, deleted_at: at }, at)
}
