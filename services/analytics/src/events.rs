//! The events the analytics service consumes: plays, likes and registrations (activity),
//! the gateway's request metrics, and the catalog's published and deleted tracks (its
//! projection of track summaries, and the warehouse's tombstones), and deleted accounts,
//! whose listening history it forgets. Plays, activity and requests are taken a poll's
//! worth at a time, because the warehouse counts fastest in batches.

use std::sync::Arc;

use async_trait::async_trait;
use bus::{
    Envelope, Event,
    consumer::{BatchHandler, Handler, HandlerError},
    events::{
        ApiRequest, SongLiked, SongPlayed, SongUnliked, TrackDeleted, TrackPublished, UserDeleted,
        UserRegistered,
    },
};
use kernel::api::{AlbumRef, ArtistRef, TrackSummary};
use uuid::Uuid;

use crate::{
    AnalyticsService,
    domain::{ActivityFact, PlayFact, RequestFact},
    service::AnalyticsError,
    store::StoreError,
};

/// The consumer groups, one per topic.
pub const PLAYS_GROUP: &str = "analytics.plays";
pub const LIKES_GROUP: &str = "analytics.likes";
pub const UNLIKES_GROUP: &str = "analytics.unlikes";
pub const REGISTRATIONS_GROUP: &str = "analytics.registrations";
pub const REQUESTS_GROUP: &str = "analytics.requests";
pub const PUBLISHED_GROUP: &str = "analytics.published";
pub const DELETED_GROUP: &str = "analytics.deleted";
pub const USERS_GROUP: &str = "analytics.users";

type Rejections = Vec<(Uuid, String)>;

/// Decodes every envelope with `decode`, setting aside those that do not decode.
fn decode_all<T>(
    envelopes: &[Envelope],
    decode: impl Fn(&Envelope) -> Result<T, String>,
) -> (Vec<T>, Rejections) {
    let mut decoded = Vec::with_capacity(envelopes.len());
    let mut rejected = Vec::new();
    for envelope in envelopes {
        match decode(envelope) {
            Ok(value) => decoded.push(value),
            Err(reason) => rejected.push((envelope.id, reason)),
        }
    }
    (decoded, rejected)
}

/// `song.played`: each play is counted once by its play id.
pub struct Plays(pub Arc<AnalyticsService>);

#[async_trait]
impl BatchHandler for Plays {
    async fn handle_batch(&self, envelopes: &[Envelope]) -> Result<Rejections, String> {
        let (plays, rejected) = decode_all(envelopes, |envelope| {
            let played: SongPlayed = envelope.decode().map_err(|e| e.to_string())?;
            Ok(PlayFact {
                play_id: played.play_id,
                user_id: played.user_id,
                track_id: played.track_id,
                played_at_ms: played.started_at.timestamp_millis(),
                played_ms: played.played_ms,
                stream: played.stream,
            })
        });
        self.0.ingest_plays(&plays).await.map_err(|error| error.to_string())?;
        Ok(rejected)
    }
}

/// `song.liked`, `song.unliked` and `user.registered`: the user was active then.
pub struct Activity(pub Arc<AnalyticsService>);

#[async_trait]
impl BatchHandler for Activity {
    async fn handle_batch(&self, envelopes: &[Envelope]) -> Result<Rejections, String> {
        let (activity, rejected) = decode_all(envelopes, |envelope| {
            let (user_id, at) = match envelope.event_type.as_str() {
                SongLiked::TYPE => {
                    let liked: SongLiked = envelope.decode().map_err(|e| e.to_string())?;
                    (liked.user_id, liked.liked_at)
                }
                SongUnliked::TYPE => {
                    let unliked: SongUnliked = envelope.decode().map_err(|e| e.to_string())?;
                    (unliked.user_id, unliked.unliked_at)
                }
                UserRegistered::TYPE => {
                    let registered: UserRegistered =
                        envelope.decode().map_err(|e| e.to_string())?;
                    (registered.user_id, registered.registered_at)
                }
                other => return Err(format!("not an activity event: {other}")),
            };
            Ok(ActivityFact { user_id, at_ms: at.timestamp_millis() })
        });
        self.0.ingest_activity(&activity).await.map_err(|error| error.to_string())?;
        Ok(rejected)
    }
}

/// `api.request`: each batch of request metrics is counted once by its event id.
pub struct Requests(pub Arc<AnalyticsService>);

#[async_trait]
impl BatchHandler for Requests {
    async fn handle_batch(&self, envelopes: &[Envelope]) -> Result<Rejections, String> {
        let (batches, rejected) = decode_all(envelopes, |envelope| {
            let batch: ApiRequest = envelope.decode().map_err(|e| e.to_string())?;
            let requests: Vec<RequestFact> = batch
                .requests
                .into_iter()
                .map(|sample| RequestFact {
                    method: sample.method,
                    route: sample.route,
                    status: sample.status,
                    duration_us: sample.duration_us,
                    at_ms: sample.at.timestamp_millis(),
                })
                .collect();
            Ok((envelope.id, requests))
        });
        for (batch_id, requests) in batches {
            self.0.ingest_requests(batch_id, &requests).await.map_err(|error| error.to_string())?;
        }
        Ok(rejected)
    }
}

/// `track.published`: the track joins the projection.
pub struct Published(pub Arc<AnalyticsService>);

#[async_trait]
impl Handler for Published {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let published: TrackPublished =
            envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
        let summary = TrackSummary {
            id: published.track_id,
            title: published.title,
            artist: ArtistRef { id: published.artist.id, name: published.artist.name },
            album: AlbumRef { id: published.album.id, title: published.album.title },
            duration_ms: published.duration_ms,
        };
        self.0.apply_published(envelope.id, &summary).await.map_err(classify)
    }
}

/// `track.deleted`: the track leaves the projection, and the warehouse tombstones it (its
/// plays stay in series, but charts and histories neither show nor count it).
pub struct Deleted(pub Arc<AnalyticsService>);

#[async_trait]
impl Handler for Deleted {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let deleted: TrackDeleted =
            envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
        self.0.apply_deleted(envelope.id, deleted.track_id).await.map_err(classify_analytics)
    }
}

/// `user.deleted`: the account's listening history is forgotten (see
/// [`AnalyticsService::forget_user`]).
pub struct UserDeletions(pub Arc<AnalyticsService>);

#[async_trait]
impl Handler for UserDeletions {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let deleted: UserDeleted =
            envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
        self.0.forget_user(envelope.id, deleted.user_id).await.map_err(classify_analytics)
    }
}

fn classify(error: StoreError) -> HandlerError {
    match error {
        StoreError::Corrupt(_) => HandlerError::Rejected(error.to_string()),
        other => HandlerError::Transient(other.to_string()),
    }
}

/// Only a store's corrupt answer is final; a warehouse error, even an unexpected answer,
/// is retried, since a deletion dropped to the dead letters would never happen.
fn classify_analytics(error: AnalyticsError) -> HandlerError {
    match error {
        AnalyticsError::Store(error) => classify(error),
        other => HandlerError::Transient(other.to_string()),
    }
}
