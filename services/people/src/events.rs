//! The events the people service publishes (`payment.completed`, `subscription.changed`)
//! and those it consumes: accounts (for its projection and the welcome mail), playlists
//! (for notifications) and plays (for now-playing).

use std::sync::Arc;

use async_trait::async_trait;
use bus::{
    Envelope,
    consumer::{Handler, HandlerError},
    events::{
        PaymentCompleted, PlaylistChanged, PlaylistCreated, PlaylistFollowed, PlaylistUnfollowed,
        SongPlayed, SubscriptionChange, SubscriptionChanged, UserDeleted, UserRegistered,
        UserUpdated,
    },
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    PeopleService,
    domain::{
        PeopleError,
        billing::{BillingChange, SubscriptionState},
    },
    store::{PlaylistRef, StoreError},
};

/// The consumer groups, one per topic.
pub const REGISTRATIONS_GROUP: &str = "people.registrations";
pub const RENAMES_GROUP: &str = "people.renames";
pub const USERS_GROUP: &str = "people.users";
pub const PLAYLISTS_CREATED_GROUP: &str = "people.playlists-created";
pub const PLAYLISTS_CHANGED_GROUP: &str = "people.playlists-changed";
pub const PLAYLISTS_FOLLOWED_GROUP: &str = "people.playlists-followed";
pub const PLAYLISTS_UNFOLLOWED_GROUP: &str = "people.playlists-unfollowed";
pub const PLAYS_GROUP: &str = "people.plays";

/// The event that announces a subscription change: `payment.completed` for a payment,
/// `subscription.changed` for a refund or cancellation.
pub fn subscription_event(
    state: &SubscriptionState,
    change: &BillingChange,
    payment_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> Envelope {
    match (change, payment_id) {
        (BillingChange::Paid { invoice, .. }, Some(payment_id)) => Envelope::new(
            &PaymentCompleted {
                payment_id,
                user_id: state.user_id,
                amount_cents: invoice.amount_cents,
                currency: invoice.currency.clone(),
                completed_at: at,
                premium_until: state.premium_until,
                revision: state.revision,
            },
            at,
        ),
        (change, _) => Envelope::new(
            &SubscriptionChanged {
                user_id: state.user_id,
                premium_until: state.premium_until,
                revision: state.revision,
                reason: match change {
                    BillingChange::Refunded { .. } => SubscriptionChange::Refunded,
                    _ => SubscriptionChange::Cancelled,
                },
                changed_at: at,
            },
            at,
        ),
    }
}

fn decode<T: bus::Event>(envelope: &Envelope) -> Result<T, HandlerError> {
    envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))
}

fn classify(error: PeopleError) -> HandlerError {
    match error {
        PeopleError::Store(corrupt @ StoreError::Corrupt(_)) => {
            HandlerError::Rejected(corrupt.to_string())
        }
        other => HandlerError::Transient(other.to_string()),
    }
}

/// `user.registered`: the person joins the projection and is sent a welcome.
pub struct Registrations(pub Arc<PeopleService>);

#[async_trait]
impl Handler for Registrations {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let registered: UserRegistered = decode(envelope)?;
        self.0.apply_registered(envelope.id, &registered).await.map_err(classify)
    }
}

/// `user.updated`: a new display name.
pub struct Renames(pub Arc<PeopleService>);

#[async_trait]
impl Handler for Renames {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let updated: UserUpdated = decode(envelope)?;
        self.0
            .store()
            .apply_renamed(RENAMES_GROUP, envelope.id, updated.user_id, &updated.display_name)
            .await
            .map_err(|e| classify(e.into()))
    }
}

/// `user.deleted`: the person and what hangs on them go.
pub struct UserDeletions(pub Arc<PeopleService>);

#[async_trait]
impl Handler for UserDeletions {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let deleted: UserDeleted = decode(envelope)?;
        self.0.forget_user(envelope.id, deleted.user_id).await.map_err(classify)
    }
}

/// `playlist.created`: followers of its owner hear of a new public playlist.
pub struct PlaylistsCreated(pub Arc<PeopleService>);

#[async_trait]
impl Handler for PlaylistsCreated {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let created: PlaylistCreated = decode(envelope)?;
        if !created.public {
            return Ok(());
        }
        let playlist =
            PlaylistRef { id: created.playlist_id, owner_id: created.owner_id, name: created.name };
        let made = self
            .0
            .store()
            .apply_playlist_created(
                PLAYLISTS_CREATED_GROUP,
                envelope.id,
                &playlist,
                created.created_at,
            )
            .await
            .map_err(|e| classify(e.into()))?;
        self.0.announce(made).await;
        Ok(())
    }
}

/// `playlist.changed`: its followers hear of it.
pub struct PlaylistsChanged(pub Arc<PeopleService>);

#[async_trait]
impl Handler for PlaylistsChanged {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let changed: PlaylistChanged = decode(envelope)?;
        let playlist =
            PlaylistRef { id: changed.playlist_id, owner_id: changed.owner_id, name: changed.name };
        let made = self
            .0
            .store()
            .apply_playlist_changed(
                PLAYLISTS_CHANGED_GROUP,
                envelope.id,
                &playlist,
                changed.changed_at,
            )
            .await
            .map_err(|e| classify(e.into()))?;
        self.0.announce(made).await;
        Ok(())
    }
}

/// `playlist.followed`: the follower is recorded and the owner hears of it.
pub struct PlaylistFollows(pub Arc<PeopleService>);

#[async_trait]
impl Handler for PlaylistFollows {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let followed: PlaylistFollowed = decode(envelope)?;
        let playlist = PlaylistRef {
            id: followed.playlist_id,
            owner_id: followed.owner_id,
            name: followed.name,
        };
        let made = self
            .0
            .store()
            .apply_playlist_followed(
                PLAYLISTS_FOLLOWED_GROUP,
                envelope.id,
                followed.user_id,
                &playlist,
                followed.followed_at,
            )
            .await
            .map_err(|e| classify(e.into()))?;
        self.0.announce(made.into_iter().collect()).await;
        Ok(())
    }
}

/// `playlist.unfollowed`.
pub struct PlaylistUnfollows(pub Arc<PeopleService>);

#[async_trait]
impl Handler for PlaylistUnfollows {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let unfollowed: PlaylistUnfollowed = decode(envelope)?;
        self.0
            .store()
            .apply_playlist_unfollowed(
                PLAYLISTS_UNFOLLOWED_GROUP,
                envelope.id,
                unfollowed.user_id,
                unfollowed.playlist_id,
            )
            .await
            .map_err(|e| classify(e.into()))
    }
}

/// `song.played`: a play that ended within the presence TTL shows as now-playing.
pub struct Plays(pub Arc<PeopleService>);

#[async_trait]
impl Handler for Plays {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let played: SongPlayed = decode(envelope)?;
        self.0.apply_play(&played).await.map_err(classify)
    }
}
