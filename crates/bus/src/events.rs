//! Every event Tonearm services exchange, typed and versioned. A type's topic is its name;
//! a breaking change to a payload is a new version, read side by side with the old one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

/// An event type: its topic name, its payload version, and the key that picks its partition
/// (so that events about one user or one track stay in order).
pub trait Event: Serialize + DeserializeOwned {
    const TYPE: &'static str;
    const VERSION: u32;
    fn key(&self) -> String;
}

macro_rules! event {
    ($type:ty, $name:literal, version = $version:literal, key = $key:ident) => {
        impl Event for $type {
            const TYPE: &'static str = $name;
            const VERSION: u32 = $version;
            fn key(&self) -> String {
                self.$key.to_string()
            }
        }
    };
}

/// The topics of every event type, for tools and for creating topics up front.
pub const ALL_TYPES: [&str; 17] = [
    UserRegistered::TYPE,
    UserUpdated::TYPE,
    UserDeleted::TYPE,
    SongPlayed::TYPE,
    SongLiked::TYPE,
    SongUnliked::TYPE,
    PlaylistCreated::TYPE,
    PlaylistChanged::TYPE,
    PlaylistFollowed::TYPE,
    PlaylistUnfollowed::TYPE,
    TrackPublished::TYPE,
    TrackDeleted::TYPE,
    TrackUploaded::TYPE,
    TrackTranscoded::TYPE,
    ApiRequest::TYPE,
    PaymentCompleted::TYPE,
    SubscriptionChanged::TYPE,
];

/// A new account exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub tier: String,
    pub registered_at: DateTime<Utc>,
}
event!(UserRegistered, "user.registered", version = 1, key = user_id);

/// An account's public details changed (its display name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdated {
    pub user_id: Uuid,
    pub display_name: String,
    pub updated_at: DateTime<Utc>,
}
event!(UserUpdated, "user.updated", version = 1, key = user_id);

/// An account is gone; everything it owned must go too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDeleted {
    pub user_id: Uuid,
    pub deleted_at: DateTime<Utc>,
}
event!(UserDeleted, "user.deleted", version = 1, key = user_id);

/// A listener played (part of) a track. `play_id` is the client's id that makes a retried
/// report count once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SongPlayed {
    pub play_id: Uuid,
    pub user_id: Uuid,
    pub track_id: Uuid,
    pub played_ms: u64,
    pub duration_ms: u64,
    /// True when the play counts as a stream (at least min(30 s, half the track)).
    pub stream: bool,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}
event!(SongPlayed, "song.played", version = 1, key = track_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SongLiked {
    pub user_id: Uuid,
    pub track_id: Uuid,
    pub liked_at: DateTime<Utc>,
}
event!(SongLiked, "song.liked", version = 1, key = user_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SongUnliked {
    pub user_id: Uuid,
    pub track_id: Uuid,
    pub unliked_at: DateTime<Utc>,
}
event!(SongUnliked, "song.unliked", version = 1, key = user_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaylistCreated {
    pub playlist_id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub public: bool,
    pub created_at: DateTime<Utc>,
}
event!(PlaylistCreated, "playlist.created", version = 1, key = owner_id);

/// What changed about a playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaylistChange {
    /// Tracks were added, removed or moved.
    Tracks,
    /// Its name, description or visibility.
    Details,
}

/// A playlist's tracks or details changed; its followers hear of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaylistChanged {
    pub playlist_id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub public: bool,
    pub change: PlaylistChange,
    pub changed_at: DateTime<Utc>,
}
event!(PlaylistChanged, "playlist.changed", version = 1, key = playlist_id);

/// Someone began following (saving) someone else's public playlist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaylistFollowed {
    pub playlist_id: Uuid,
    pub owner_id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub followed_at: DateTime<Utc>,
}
event!(PlaylistFollowed, "playlist.followed", version = 1, key = playlist_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaylistUnfollowed {
    pub playlist_id: Uuid,
    pub user_id: Uuid,
    pub unfollowed_at: DateTime<Utc>,
}
event!(PlaylistUnfollowed, "playlist.unfollowed", version = 1, key = playlist_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtistRef {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlbumRef {
    pub id: Uuid,
    pub title: String,
}

/// A track became ready to play, or a ready track's metadata changed; read sides keep
/// its summary from the latest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackPublished {
    pub track_id: Uuid,
    pub title: String,
    pub artist: ArtistRef,
    pub album: AlbumRef,
    pub duration_ms: u64,
    pub published_at: DateTime<Utc>,
    /// Absent from events published before it was added, and for tracks with no genre.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genre: Option<String>,
}
event!(TrackPublished, "track.published", version = 1, key = track_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackDeleted {
    pub track_id: Uuid,
    pub deleted_at: DateTime<Utc>,
}
event!(TrackDeleted, "track.deleted", version = 1, key = track_id);

/// Internal: the catalog stored a new upload; streaming transcodes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackUploaded {
    pub track_id: Uuid,
    /// The original file's object key in the shared object storage.
    pub source_key: String,
    /// The container the catalog recognised (`mp3`, `flac`, `ogg`, `wav`, `m4a`).
    pub format: String,
    pub uploaded_at: DateTime<Utc>,
}
event!(TrackUploaded, "track.uploaded", version = 1, key = track_id);

/// One encoded rendition of a track, as players are told about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenditionInfo {
    pub bitrate_kbps: u32,
    /// An RFC 6381 codec string, e.g. `mp4a.40.2` for AAC-LC.
    pub codec: String,
}

/// How a transcode ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TranscodeOutcome {
    Ready {
        renditions: Vec<RenditionInfo>,
        /// Integrated loudness (EBU R128); absent for silence, which has none.
        loudness_lufs: Option<f64>,
        /// The decoded duration, which corrects whatever the tags claimed.
        duration_ms: u64,
    },
    Failed {
        /// Why, in words a listener or uploader can act on.
        error: String,
    },
}

/// Internal: streaming finished (or gave up on) a track's transcode; the catalog marks the
/// track ready or failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackTranscoded {
    pub track_id: Uuid,
    pub outcome: TranscodeOutcome,
    pub finished_at: DateTime<Utc>,
}
event!(TrackTranscoded, "track.transcoded", version = 1, key = track_id);

/// One request the gateway answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSample {
    pub route: String,
    pub method: String,
    pub status: u16,
    pub duration_us: u64,
    pub at: DateTime<Utc>,
}

/// A batch of request metrics from one gateway instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiRequest {
    pub instance: String,
    pub requests: Vec<RequestSample>,
}
event!(ApiRequest, "api.request", version = 1, key = instance);

/// A payment went through; it activates premium until `premium_until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentCompleted {
    pub payment_id: Uuid,
    pub user_id: Uuid,
    pub amount_cents: u64,
    pub currency: String,
    pub completed_at: DateTime<Utc>,
    /// The end of the premium the user has now, this payment included.
    #[serde(default)]
    pub premium_until: Option<DateTime<Utc>>,
    /// Counts the user's subscription changes, so that a consumer keeps the latest
    /// whatever order `payment.completed` and `subscription.changed` arrive in.
    #[serde(default)]
    pub revision: u64,
}
event!(PaymentCompleted, "payment.completed", version = 1, key = user_id);

/// Why a subscription changed other than by a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionChange {
    Refunded,
    Cancelled,
}

/// A refund or a cancellation moved the end of a user's premium (to now, or to the end of
/// what their other payments cover).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionChanged {
    pub user_id: Uuid,
    pub premium_until: Option<DateTime<Utc>>,
    pub revision: u64,
    pub reason: SubscriptionChange,
    pub changed_at: DateTime<Utc>,
}
event!(SubscriptionChanged, "subscription.changed", version = 1, key = user_id);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_distinct_topic() {
        let mut names = ALL_TYPES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL_TYPES.len());
    }
}
