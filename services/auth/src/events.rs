//! Events the auth service publishes, through its outbox, and those it consumes: the
//! people service's subscription changes, which set how long a user is premium.

use std::sync::Arc;

use async_trait::async_trait;
use bus::{
    Envelope,
    consumer::{Handler, HandlerError},
    events::{PaymentCompleted, SubscriptionChanged, UserDeleted, UserRegistered, UserUpdated},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{AuthService, domain::User};

/// The consumer groups, one per topic.
pub const PAYMENTS_GROUP: &str = "auth.payments";
pub const SUBSCRIPTIONS_GROUP: &str = "auth.subscriptions";

/// `payment.completed` and `subscription.changed`: premium until the end they name.
pub struct Premium {
    pub service: Arc<AuthService>,
    pub group: &'static str,
}

#[async_trait]
impl Handler for Premium {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let (user_id, premium_until, revision) = match envelope.event_type.as_str() {
            "payment.completed" => {
                let paid: PaymentCompleted =
                    envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
                (paid.user_id, paid.premium_until, paid.revision)
            }
            _ => {
                let changed: SubscriptionChanged =
                    envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
                (changed.user_id, changed.premium_until, changed.revision)
            }
        };
        self.service
            .apply_premium(self.group, envelope.id, user_id, premium_until, revision)
            .await
            .map_err(|error| HandlerError::Transient(error.to_string()))
    }
}

pub fn user_updated(user_id: Uuid, display_name: &str, at: DateTime<Utc>) -> Envelope {
    Envelope::new(
        &UserUpdated { user_id, display_name: display_name.to_owned(), updated_at: at },
        at,
    )
}

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
