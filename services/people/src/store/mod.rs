//! The people store port and its SQLite and PostgreSQL adapters: the projection of
//! accounts, follows, playlist followers, notifications, billing, the mail queue, the
//! outbox and the processed-events inbox.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use bus::outbox::OutboxStore;
use chrono::{DateTime, Utc};
use kernel::db::SqlPool;
use uuid::Uuid;

use crate::domain::{
    Follow, Notification, NotificationPage, OutgoingMail, Person,
    billing::{BillingChange, SubscriptionState},
};

pub use kernel::db::StoreError;
pub use postgres::PostgresPeopleStore;
pub use sqlite::SqlitePeopleStore;

/// What became of a provider event.
#[derive(Debug, Clone, PartialEq)]
pub enum BillingOutcome {
    /// Its id (or the invoice it pays) was seen before: nothing changed.
    Duplicate,
    /// A type Tonearm does not act on, or a refund of an unknown invoice: recorded only.
    Ignored,
    /// The subscription changed, and its event was recorded with it.
    Applied(SubscriptionState),
}

/// A playlist a notification is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaylistRef {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
}

/// Also the outbox the relay drains.
#[async_trait]
pub trait PeopleStore: OutboxStore {
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Applies `user.registered`, once per event id: the person joins the projection and
    /// `mail` (their welcome) is queued in the same transaction.
    async fn apply_registered(
        &self,
        consumer: &str,
        event_id: Uuid,
        person: &Person,
        mail: &OutgoingMail,
    ) -> Result<(), StoreError>;

    /// Applies `user.updated`, once per event id.
    async fn apply_renamed(
        &self,
        consumer: &str,
        event_id: Uuid,
        user_id: Uuid,
        display_name: &str,
    ) -> Result<(), StoreError>;

    /// Applies `user.deleted`, once per event id: the person goes with their follows (both
    /// ways), playlist follows, notifications (theirs and those they caused), subscription
    /// and unsent mail. Payments stay: they are the provider's records too.
    async fn forget_user(
        &self,
        consumer: &str,
        event_id: Uuid,
        user_id: Uuid,
    ) -> Result<(), StoreError>;

    /// Adds a person the auth service told of before their `user.registered` arrived; a
    /// person already known stays as they are.
    async fn remember_person(&self, person: &Person) -> Result<(), StoreError>;
    async fn person(&self, id: Uuid) -> Result<Option<Person>, StoreError>;
    async fn person_by_email(&self, email: &str) -> Result<Option<Person>, StoreError>;
    /// Those of `ids` that are known, in no particular order.
    async fn people(&self, ids: &[Uuid]) -> Result<Vec<Person>, StoreError>;
    /// People whose display name has a word starting with `prefix` (case-insensitive),
    /// by name, and the total.
    async fn search_people(
        &self,
        prefix: &str,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Person>, u64), StoreError>;
    /// False when the person is unknown.
    async fn set_presence_visible(&self, user_id: Uuid, visible: bool) -> Result<bool, StoreError>;

    /// Follows `followee` (idempotent: the first time stays). When the follow is new, the
    /// followee is notified in the same transaction and that notification is returned.
    async fn follow(
        &self,
        follower: Uuid,
        followee: Uuid,
        at: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError>;
    /// False when there was no such follow.
    async fn unfollow(&self, follower: Uuid, followee: Uuid) -> Result<bool, StoreError>;
    /// Whom `user_id` follows, most recent first, and the total.
    async fn following(
        &self,
        user_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Follow>, u64), StoreError>;
    /// Who follows `user_id`, most recent first, and the total.
    async fn followers(
        &self,
        user_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Follow>, u64), StoreError>;
    /// Every account `user_id` follows.
    async fn followee_ids(&self, user_id: Uuid) -> Result<Vec<Uuid>, StoreError>;
    /// (followers, following) of `user_id`.
    async fn follow_counts(&self, user_id: Uuid) -> Result<(u64, u64), StoreError>;
    async fn is_following(&self, follower: Uuid, followee: Uuid) -> Result<bool, StoreError>;

    /// Applies `playlist.created` for a public playlist, once per event id: each follower
    /// of its owner is notified. Returns the notifications made.
    async fn apply_playlist_created(
        &self,
        consumer: &str,
        event_id: Uuid,
        playlist: &PlaylistRef,
        at: DateTime<Utc>,
    ) -> Result<Vec<Notification>, StoreError>;
    /// Applies `playlist.changed`, once per event id: each follower of the playlist is
    /// notified, adding to their unread notification about it if they have one. Returns
    /// the notifications made or updated.
    async fn apply_playlist_changed(
        &self,
        consumer: &str,
        event_id: Uuid,
        playlist: &PlaylistRef,
        at: DateTime<Utc>,
    ) -> Result<Vec<Notification>, StoreError>;
    /// Applies `playlist.followed`, once per event id: the follower is recorded and the
    /// owner notified. Returns the notification.
    async fn apply_playlist_followed(
        &self,
        consumer: &str,
        event_id: Uuid,
        follower: Uuid,
        playlist: &PlaylistRef,
        at: DateTime<Utc>,
    ) -> Result<Option<Notification>, StoreError>;
    /// Applies `playlist.unfollowed`, once per event id.
    async fn apply_playlist_unfollowed(
        &self,
        consumer: &str,
        event_id: Uuid,
        user_id: Uuid,
        playlist_id: Uuid,
    ) -> Result<(), StoreError>;

    /// A page of `user_id`'s notifications, most recently updated first.
    async fn notifications(
        &self,
        user_id: Uuid,
        limit: u32,
        offset: u32,
        unread_only: bool,
    ) -> Result<NotificationPage, StoreError>;
    /// Marks `ids` (every notification when `None`) of `user_id` read; ids of other users'
    /// notifications change nothing. Returns how many stay unread.
    async fn mark_read(
        &self,
        user_id: Uuid,
        ids: Option<&[Uuid]>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    async fn unread_count(&self, user_id: Uuid) -> Result<u64, StoreError>;

    /// Applies a provider event once per its id, in one transaction that begins by
    /// recording the id: a payment, refund or cancellation recomputes the user's premium
    /// and records `payment.completed` or `subscription.changed`. `user_id` is the
    /// customer the service resolved (for payments and cancellations).
    async fn apply_billing(
        &self,
        provider_event_id: &str,
        event_type: &str,
        change: &BillingChange,
        user_id: Option<Uuid>,
        at: DateTime<Utc>,
    ) -> Result<BillingOutcome, StoreError>;
    async fn subscription(&self, user_id: Uuid) -> Result<Option<SubscriptionState>, StoreError>;

    /// Unsent messages whose next attempt is due and that nobody holds, oldest first.
    async fn due_mail(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutgoingMail>, StoreError>;
    /// Holds a message until `until` unless it was sent or someone else holds it; true when
    /// this caller now holds it.
    async fn claim_mail(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn mail_sent(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Counts a failed attempt, lets go of the message and sets its next attempt.
    async fn mail_failed(
        &self,
        id: Uuid,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;
    /// Lets go of every held message (a lone process starting again holds none).
    async fn release_mail_claims(&self) -> Result<u64, StoreError>;
    /// How many messages are waiting to be sent.
    async fn mail_backlog(&self) -> Result<u64, StoreError>;
}

/// Opens the store a pool points at and brings its schema up to date.
pub async fn open(pool: SqlPool) -> Result<Arc<dyn PeopleStore>, StoreError> {
    let store: Arc<dyn PeopleStore> = match pool {
        SqlPool::Sqlite(pool) => Arc::new(SqlitePeopleStore::new(pool)),
        SqlPool::Postgres(pool) => Arc::new(PostgresPeopleStore::new(pool)),
    };
    store.migrate().await?;
    Ok(store)
}
