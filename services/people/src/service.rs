//! The people service's operations: billing, the account projection and welcome mail,
//! follows, notifications, presence and the live channel.

use std::{collections::HashSet, sync::Arc, time::Duration};

use bus::events::{SongPlayed, UserRegistered};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kernel::{
    api::TrackSummary,
    cache::Cache,
    caller::Caller,
    catalog::Catalog,
    grant::{Role, Tier},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    accounts::Accounts,
    config::PeopleConfig,
    domain::{
        Follow, Notification, NotificationPage, PeopleError, Person,
        billing::{self, BillingChange, Customer, ProviderEvent},
        mail, mail_id,
    },
    events,
    live::{LiveHub, LiveMessage, Subscription, presence_channel, user_channel},
    store::{BillingOutcome, PeopleStore},
};

/// Times are kept at millisecond precision, as the API shows them.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(now)
}

/// Someone as other people see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserRef {
    pub id: Uuid,
    pub display_name: String,
}

impl From<&Person> for UserRef {
    fn from(person: &Person) -> Self {
        Self { id: person.id, display_name: person.display_name.clone() }
    }
}

/// How far into a track a heartbeat may say the player is: longer than any track.
pub const MAX_POSITION_MS: u64 = 86_400_000;

/// What someone is playing, as presence keeps it and the live channel sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NowPlaying {
    pub user: UserRef,
    pub track: TrackSummary,
    /// How far into the track they were at `updated_at`.
    pub position_ms: u64,
    pub paused: bool,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
    /// When this disappears unless a heartbeat or a play renews it.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
}

/// Someone's public profile, seen by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub person: Person,
    pub followers: u64,
    pub following: u64,
    /// The caller follows them.
    pub is_followed: bool,
    /// They follow the caller.
    pub follows_you: bool,
}

/// What a webhook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookReceipt {
    Applied,
    Duplicate,
    Ignored,
}

pub struct PeopleService {
    store: Arc<dyn PeopleStore>,
    accounts: Arc<dyn Accounts>,
    catalog: Arc<dyn Catalog>,
    presence: Arc<dyn Cache>,
    hub: Arc<LiveHub>,
    config: PeopleConfig,
}

/// A stream's channels: the user's own and the presence of each of `followees`.
fn channels(user_id: Uuid, followees: &[Uuid]) -> HashSet<String> {
    let mut channels: HashSet<String> = followees.iter().copied().map(presence_channel).collect();
    channels.insert(user_channel(user_id));
    channels
}

fn presence_key(user_id: Uuid) -> String {
    format!("presence:{user_id}")
}

/// Who asks the catalog about a track someone played: that person.
fn as_listener(user_id: Uuid) -> Caller {
    Caller { user_id, session_id: Uuid::nil(), tier: Tier::Free, role: Role::User }
}

impl PeopleService {
    pub fn new(
        store: Arc<dyn PeopleStore>,
        accounts: Arc<dyn Accounts>,
        catalog: Arc<dyn Catalog>,
        presence: Arc<dyn Cache>,
        hub: Arc<LiveHub>,
        config: PeopleConfig,
    ) -> Self {
        Self { store, accounts, catalog, presence, hub, config }
    }

    pub fn store(&self) -> &Arc<dyn PeopleStore> {
        &self.store
    }

    pub fn config(&self) -> &PeopleConfig {
        &self.config
    }

    pub fn hub(&self) -> &Arc<LiveHub> {
        &self.hub
    }

    // Accounts.

    pub async fn apply_registered(
        &self,
        event_id: Uuid,
        registered: &UserRegistered,
    ) -> Result<(), PeopleError> {
        let person = Person {
            id: registered.user_id,
            display_name: registered.display_name.clone(),
            email: registered.email.to_lowercase(),
            registered_at: registered.registered_at,
            presence_visible: true,
        };
        let welcome = mail::welcome(
            mail_id("welcome", event_id),
            &registered.email,
            &registered.display_name,
            &self.config.mail.public_url,
            now(),
        );
        Ok(self
            .store
            .apply_registered(events::REGISTRATIONS_GROUP, event_id, &person, &welcome)
            .await?)
    }

    pub async fn forget_user(&self, event_id: Uuid, user_id: Uuid) -> Result<(), PeopleError> {
        self.store.forget_user(events::USERS_GROUP, event_id, user_id).await?;
        self.end_presence(user_id).await;
        Ok(())
    }

    /// A person by id: from the projection, else from the auth service (remembered).
    pub async fn person(&self, id: Uuid) -> Result<Person, PeopleError> {
        if let Some(person) = self.store.person(id).await? {
            return Ok(person);
        }
        let account = self.accounts.account(id).await.map_err(|error| {
            tracing::warn!(%error, "cannot ask the auth service about an account");
            PeopleError::Unavailable("account directory")
        })?;
        let account = account.ok_or(PeopleError::NotFound("user"))?;
        self.remember(account).await
    }

    /// A person by email: from the projection, else from the auth service (remembered).
    pub async fn person_by_email(&self, email: &str) -> Result<Person, PeopleError> {
        if let Some(person) = self.store.person_by_email(email).await? {
            return Ok(person);
        }
        let account = self.accounts.account_by_email(email).await.map_err(|error| {
            tracing::warn!(%error, "cannot ask the auth service about an account");
            PeopleError::Unavailable("account directory")
        })?;
        self.remember(account.ok_or(PeopleError::NotFound("user"))?).await
    }

    async fn remember(&self, account: crate::accounts::Account) -> Result<Person, PeopleError> {
        let id = account.id;
        let person = Person {
            id: account.id,
            display_name: account.display_name,
            email: account.email.to_lowercase(),
            registered_at: account.created_at,
            presence_visible: true,
        };
        self.store.remember_person(&person).await?;
        Ok(self.store.person(id).await?.unwrap_or(person))
    }

    pub async fn profile(&self, caller: &Caller, id: Uuid) -> Result<Profile, PeopleError> {
        let person = self.person(id).await?;
        let (followers, following) = self.store.follow_counts(id).await?;
        let is_followed =
            caller.user_id != id && self.store.is_following(caller.user_id, id).await?;
        let follows_you =
            caller.user_id != id && self.store.is_following(id, caller.user_id).await?;
        Ok(Profile { person, followers, following, is_followed, follows_you })
    }

    /// People whose name has a word starting with `query`, each with whether the caller
    /// follows them.
    pub async fn search(
        &self,
        caller: &Caller,
        query: &str,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<(Person, bool)>, u64), PeopleError> {
        let query = query.trim();
        if query.is_empty() || query.chars().count() > 100 {
            return Err(PeopleError::Invalid {
                field: "q",
                reason: "must be 1 to 100 characters".into(),
            });
        }
        let (people, total) = self.store.search_people(query, limit, offset).await?;
        let followed: HashSet<Uuid> =
            self.store.followee_ids(caller.user_id).await?.into_iter().collect();
        let listed = people
            .into_iter()
            .map(|person| {
                let is_followed = followed.contains(&person.id);
                (person, is_followed)
            })
            .collect();
        Ok((listed, total))
    }

    // Follows.

    pub async fn follow(&self, caller: &Caller, id: Uuid) -> Result<(), PeopleError> {
        if id == caller.user_id {
            return Err(PeopleError::FollowSelf);
        }
        self.person(id).await?;
        // The follower may be new to the projection too.
        self.person(caller.user_id).await?;
        if let Some(notification) = self.store.follow(caller.user_id, id, now()).await? {
            self.announce(vec![notification]).await;
            self.following_changed(caller.user_id).await;
        }
        Ok(())
    }

    pub async fn unfollow(&self, caller: &Caller, id: Uuid) -> Result<(), PeopleError> {
        if id == caller.user_id {
            return Err(PeopleError::FollowSelf);
        }
        if self.store.unfollow(caller.user_id, id).await? {
            self.following_changed(caller.user_id).await;
        } else {
            // Unknown ids are 404; someone known but not followed is already unfollowed.
            self.person(id).await?;
        }
        Ok(())
    }

    pub async fn following(
        &self,
        user_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Follow>, u64), PeopleError> {
        Ok(self.store.following(user_id, limit, offset).await?)
    }

    pub async fn followers(
        &self,
        user_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Follow>, u64), PeopleError> {
        Ok(self.store.followers(user_id, limit, offset).await?)
    }

    /// Tells the caller's live streams to follow their new list of people.
    async fn following_changed(&self, user_id: Uuid) {
        let message = LiveMessage::new(FOLLOWING_CHANGED, &serde_json::json!({}));
        self.hub.publish(&user_channel(user_id), message).await;
    }

    // Notifications.

    pub async fn notifications(
        &self,
        caller: &Caller,
        limit: u32,
        offset: u32,
        unread_only: bool,
    ) -> Result<NotificationPage, PeopleError> {
        Ok(self.store.notifications(caller.user_id, limit, offset, unread_only).await?)
    }

    pub async fn mark_read(
        &self,
        caller: &Caller,
        ids: Option<&[Uuid]>,
    ) -> Result<u64, PeopleError> {
        if ids.is_some_and(|ids| ids.len() > 1000) {
            return Err(PeopleError::Invalid {
                field: "ids",
                reason: "at most 1000 ids at once".into(),
            });
        }
        let unread = self.store.mark_read(caller.user_id, ids, now()).await?;
        let message = LiveMessage::new("unread", &serde_json::json!({ "unread": unread }));
        self.hub.publish(&user_channel(caller.user_id), message).await;
        Ok(unread)
    }

    /// Pushes stored notifications to their recipients' live streams.
    pub async fn announce(&self, notifications: Vec<Notification>) {
        for notification in notifications {
            let channel = user_channel(notification.user_id);
            let message = LiveMessage::new("notification", &NotificationView::from(notification));
            self.hub.publish(&channel, message).await;
        }
    }

    // Presence.

    /// The caller is playing `track_id`: their followers see it until the TTL passes.
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        track_id: Uuid,
        position_ms: u64,
        paused: bool,
    ) -> Result<Option<NowPlaying>, PeopleError> {
        if position_ms > MAX_POSITION_MS {
            return Err(PeopleError::Invalid {
                field: "position_ms",
                reason: format!("must be at most {MAX_POSITION_MS} (a day)"),
            });
        }
        let person = self.person(caller.user_id).await?;
        let track = match self.current(caller.user_id).await {
            Some(current) if current.track.id == track_id => current.track,
            _ => self.track(caller, track_id).await?.ok_or(PeopleError::NotFound("track"))?,
        };
        self.show(&person, track, position_ms, paused, now()).await
    }

    /// The caller stopped playing.
    pub async fn stop_playing(&self, caller: &Caller) -> Result<(), PeopleError> {
        self.end_presence(caller.user_id).await;
        Ok(())
    }

    /// A play that ended within the TTL shows as now-playing (unless a heartbeat since
    /// says otherwise).
    pub async fn apply_play(&self, played: &SongPlayed) -> Result<(), PeopleError> {
        let ended = played.started_at
            + TimeDelta::milliseconds(i64::try_from(played.played_ms).unwrap_or(i64::MAX));
        let ttl = TimeDelta::from_std(self.config.presence_ttl()).unwrap_or(TimeDelta::MAX);
        if ended + ttl < now() {
            return Ok(());
        }
        if let Some(current) = self.current(played.user_id).await
            && current.updated_at >= ended
        {
            return Ok(());
        }
        let person = match self.person(played.user_id).await {
            Ok(person) => person,
            Err(PeopleError::NotFound(_)) => return Ok(()),
            Err(other) => return Err(other),
        };
        let caller = as_listener(played.user_id);
        let Some(track) = self.track(&caller, played.track_id).await? else {
            return Ok(());
        };
        self.show(&person, track, played.played_ms, false, ended).await.map(drop)
    }

    async fn track(&self, caller: &Caller, id: Uuid) -> Result<Option<TrackSummary>, PeopleError> {
        let found = self.catalog.ready_tracks(caller, &[id]).await.map_err(|error| {
            tracing::warn!(%error, "cannot ask the catalog about a track");
            PeopleError::Unavailable("catalog")
        })?;
        Ok(found.into_iter().next())
    }

    async fn show(
        &self,
        person: &Person,
        track: TrackSummary,
        position_ms: u64,
        paused: bool,
        at: DateTime<Utc>,
    ) -> Result<Option<NowPlaying>, PeopleError> {
        if !person.presence_visible {
            return Ok(None);
        }
        let ttl = self.config.presence_ttl();
        let playing = NowPlaying {
            user: person.into(),
            track,
            position_ms,
            paused,
            updated_at: at,
            expires_at: at + TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX),
        };
        let remaining = (playing.expires_at - now()).to_std().unwrap_or(Duration::ZERO);
        if remaining.is_zero() {
            return Ok(None);
        }
        let value = serde_json::to_string(&playing).unwrap_or_default();
        if let Err(error) = self.presence.set(&presence_key(person.id), &value, remaining).await {
            tracing::warn!(%error, "cannot store presence");
            return Err(PeopleError::Unavailable("presence store"));
        }
        let message = LiveMessage::new(NOW_PLAYING, &playing);
        self.hub.publish(&presence_channel(person.id), message).await;
        Ok(Some(playing))
    }

    async fn current(&self, user_id: Uuid) -> Option<NowPlaying> {
        match self.presence.get(&presence_key(user_id)).await {
            Ok(Some(raw)) => serde_json::from_str(&raw).ok(),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "cannot read presence");
                None
            }
        }
    }

    async fn end_presence(&self, user_id: Uuid) {
        if let Err(error) = self.presence.delete(&[presence_key(user_id)]).await {
            tracing::warn!(%error, "cannot clear presence");
        }
        let message = LiveMessage::new(PRESENCE_ENDED, &serde_json::json!({ "user_id": user_id }));
        self.hub.publish(&presence_channel(user_id), message).await;
    }

    /// What the people the caller follows are playing now, most recent first.
    pub async fn friends_playing(&self, caller: &Caller) -> Result<Vec<NowPlaying>, PeopleError> {
        let followees = self.store.followee_ids(caller.user_id).await?;
        Ok(self.playing_among(&followees).await)
    }

    /// What those of `people` who are playing now play, most recent first.
    async fn playing_among(&self, people: &[Uuid]) -> Vec<NowPlaying> {
        let lookups = people.iter().map(|id| self.current(*id));
        let mut playing: Vec<NowPlaying> =
            futures::future::join_all(lookups).await.into_iter().flatten().collect();
        let now = now();
        playing.retain(|playing| playing.expires_at > now);
        playing.sort_by_key(|playing| std::cmp::Reverse(playing.updated_at));
        playing
    }

    pub async fn presence_visible(&self, caller: &Caller) -> Result<bool, PeopleError> {
        Ok(self.person(caller.user_id).await?.presence_visible)
    }

    /// Shows or hides the caller's presence; hiding also ends what shows now.
    pub async fn set_presence_visible(
        &self,
        caller: &Caller,
        visible: bool,
    ) -> Result<bool, PeopleError> {
        self.person(caller.user_id).await?;
        self.store.set_presence_visible(caller.user_id, visible).await?;
        if !visible {
            self.end_presence(caller.user_id).await;
        }
        Ok(visible)
    }

    // The live channel.

    /// A live stream for the caller, with what to send first: their unread count and what
    /// the people they follow are playing.
    pub async fn live(
        &self,
        caller: &Caller,
    ) -> Result<(Subscription, Vec<LiveMessage>), PeopleError> {
        let followees = self.store.followee_ids(caller.user_id).await?;
        let subscription = self.hub.subscribe(channels(caller.user_id, &followees));
        let unread = self.store.unread_count(caller.user_id).await?;
        let mut first = vec![LiveMessage::new("ready", &serde_json::json!({ "unread": unread }))];
        for playing in self.playing_among(&followees).await {
            first.push(LiveMessage::new(NOW_PLAYING, &playing));
        }
        Ok((subscription, first))
    }

    /// The channels a user's live stream listens on: their own and each followee's
    /// presence.
    pub async fn live_channels(&self, user_id: Uuid) -> Result<HashSet<String>, PeopleError> {
        Ok(channels(user_id, &self.store.followee_ids(user_id).await?))
    }

    // Billing.

    /// Verifies and applies a provider's webhook.
    pub async fn webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookReceipt, PeopleError> {
        let secrets: Vec<&str> =
            self.config.billing.webhook_secrets.iter().map(ExposeSecret::expose_secret).collect();
        let tolerance = Duration::from_secs(self.config.billing.tolerance_secs);
        billing::verify_signature(signature, body, &secrets, Utc::now(), tolerance)?;
        let event = ProviderEvent::parse(body)?;
        let change = event.change()?;
        let user_id = match &change {
            BillingChange::Paid { customer, .. } | BillingChange::Cancelled { customer } => {
                Some(self.customer(customer).await?)
            }
            BillingChange::Refunded { .. } | BillingChange::Ignored => None,
        };
        let outcome =
            self.store.apply_billing(&event.id, &event.event_type, &change, user_id, now()).await?;
        tracing::info!(event_id = %event.id, event_type = %event.event_type, ?outcome, "billing event");
        Ok(match outcome {
            BillingOutcome::Applied(_) => {
                metrics::counter!("people_billing_events_total", "outcome" => "applied")
                    .increment(1);
                WebhookReceipt::Applied
            }
            BillingOutcome::Duplicate => WebhookReceipt::Duplicate,
            BillingOutcome::Ignored => WebhookReceipt::Ignored,
        })
    }

    async fn customer(&self, customer: &Customer) -> Result<Uuid, PeopleError> {
        match customer {
            Customer::Id(id) => match self.person(*id).await {
                Ok(person) => Ok(person.id),
                Err(PeopleError::NotFound(_)) => Err(PeopleError::NotFound("customer")),
                Err(other) => Err(other),
            },
            Customer::Email(email) => match self.person_by_email(email).await {
                Ok(person) => Ok(person.id),
                Err(PeopleError::NotFound(_)) => Err(PeopleError::NotFound("customer")),
                Err(other) => Err(other),
            },
        }
    }
}

/// The live event that tells a stream its owner's follows changed (never sent on).
pub const FOLLOWING_CHANGED: &str = "following_changed";
pub const NOW_PLAYING: &str = "now_playing";
pub const PRESENCE_ENDED: &str = "presence_ended";

/// A notification as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    pub kind: crate::domain::NotificationKind,
    /// Who caused it; absent when their account is gone.
    pub actor: Option<UserRef>,
    pub playlist: Option<PlaylistView>,
    /// How many times it happened while unread (changes to one playlist add up).
    pub count: u32,
    pub read: bool,
    #[serde(serialize_with = "kernel::api::millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "kernel::api::millis")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = NotifiedPlaylist)]
pub struct PlaylistView {
    pub id: Uuid,
    pub name: String,
}

impl From<Notification> for NotificationView {
    fn from(notification: Notification) -> Self {
        Self {
            id: notification.id,
            kind: notification.kind,
            actor: notification
                .actor_name
                .map(|display_name| UserRef { id: notification.actor_id, display_name }),
            playlist: notification.playlist.map(|(id, name)| PlaylistView { id, name }),
            count: notification.count,
            read: notification.read,
            created_at: notification.created_at,
            updated_at: notification.updated_at,
        }
    }
}
