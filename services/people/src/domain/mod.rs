//! People, follows, notifications, presence, mail and billing as plain types and rules:
//! no HTTP, no SQL.

pub mod billing;
pub mod mail;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An account as this service knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: Uuid,
    pub display_name: String,
    pub email: String,
    pub registered_at: DateTime<Utc>,
    /// Whether followers see what they are playing.
    pub presence_visible: bool,
}

/// Someone in a list of followers or followed accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    pub person: Person,
    pub followed_at: DateTime<Utc>,
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Someone began following you.
    NewFollower,
    /// Someone you follow made a public playlist.
    PlaylistCreated,
    /// A playlist you follow changed.
    PlaylistChanged,
    /// Someone followed (saved) your playlist.
    PlaylistFollowed,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewFollower => "new_follower",
            Self::PlaylistCreated => "playlist_created",
            Self::PlaylistChanged => "playlist_changed",
            Self::PlaylistFollowed => "playlist_followed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::NewFollower, Self::PlaylistCreated, Self::PlaylistChanged, Self::PlaylistFollowed]
            .into_iter()
            .find(|kind| kind.as_str() == raw)
    }
}

/// A notification as stored: for `user_id`, caused by `actor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: NotificationKind,
    pub actor_id: Uuid,
    /// The actor's display name when the notification was read back; absent when the
    /// actor's account is gone.
    pub actor_name: Option<String>,
    pub playlist: Option<(Uuid, String)>,
    /// How many times it happened while unread (changes to one playlist add up).
    pub count: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub read: bool,
}

/// A notification to make, before it has an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub kind: NotificationKind,
    pub actor_id: Uuid,
    pub playlist: Option<(Uuid, String)>,
    pub at: DateTime<Utc>,
}

/// A page of notifications with the unread count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    pub total: u64,
    pub unread: u64,
}

/// A message waiting in (or sent from) the mail queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// Derived from the event that asked for it, so a redelivered event queues nothing new
    /// and the message's `Message-ID` is the same on every attempt.
    pub id: Uuid,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
}

/// Why an operation of this service failed.
#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("you cannot follow yourself")]
    FollowSelf,
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("the {0} is unavailable")]
    Unavailable(&'static str),
    #[error(transparent)]
    Webhook(#[from] billing::WebhookError),
    #[error(transparent)]
    Store(#[from] kernel::db::StoreError),
}

/// The id of the mail an event asks for, the same on every delivery of that event.
pub fn mail_id(kind: &str, event_id: Uuid) -> Uuid {
    Uuid::new_v5(&event_id, kind.as_bytes())
}

/// The pause before the next attempt at a message that failed `attempts` times: doubling
/// from a second, up to `max`.
pub fn mail_backoff(attempts: u32, max: std::time::Duration) -> std::time::Duration {
    let doubled = 1_u64.checked_shl(attempts.saturating_sub(1).min(30)).unwrap_or(u64::MAX);
    std::time::Duration::from_secs(doubled).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn kinds_round_trip_through_text() {
        for kind in [
            NotificationKind::NewFollower,
            NotificationKind::PlaylistCreated,
            NotificationKind::PlaylistChanged,
            NotificationKind::PlaylistFollowed,
        ] {
            assert_eq!(NotificationKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(NotificationKind::parse("poke"), None);
    }

    #[test]
    fn mail_backs_off_by_doubling_up_to_a_ceiling() {
        let max = Duration::from_secs(300);
        let pauses: Vec<u64> = (1..=10).map(|n| mail_backoff(n, max).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(mail_backoff(u32::MAX, max), max);
    }

    #[test]
    fn one_event_always_asks_for_the_same_mail() {
        let event = Uuid::now_v7();
        assert_eq!(mail_id("welcome", event), mail_id("welcome", event));
        assert_ne!(mail_id("welcome", event), mail_id("receipt", event));
    }
}
