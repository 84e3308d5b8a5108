//! The events recommendations learn from: published and deleted tracks (with their
//! embeddings computed on arrival), plays weighted by how much of the track was heard,
//! likes and their undoing, and deleted accounts, whose listening is forgotten. Tracks and
//! listening are taken a poll's worth at a time: embedding is fastest in batches, and
//! plays are written in one transaction.

use std::sync::Arc;

use async_trait::async_trait;
use bus::{
    Envelope, Event,
    consumer::{BatchHandler, Handler, HandlerError},
    events::{SongLiked, SongPlayed, SongUnliked, TrackDeleted, TrackPublished, UserDeleted},
};
use kernel::api::{AlbumRef, ArtistRef, TrackSummary};
use uuid::Uuid;

use crate::{
    recommendations::{RecommendError, Recommendations, completion},
    store::{Listened, StoreError, StoredTrack},
};

/// The consumer groups, one per topic.
pub const PUBLISHED_GROUP: &str = "ai.published";
pub const DELETED_GROUP: &str = "ai.deleted";
pub const PLAYS_GROUP: &str = "ai.plays";
pub const LIKES_GROUP: &str = "ai.likes";
pub const UNLIKES_GROUP: &str = "ai.unlikes";
pub const USERS_GROUP: &str = "ai.users";

/// A group of this replica's own, which sees every track event (see [`Replica`]).
pub fn replica_group() -> String {
    format!("ai.replica.{}", Uuid::new_v4().simple())
}

type Rejections = Vec<(Uuid, String)>;

/// Decodes every envelope with `decode`, setting aside those that do not decode.
fn decode_all<T>(
    envelopes: &[Envelope],
    decode: impl Fn(&Envelope) -> Result<T, String>,
) -> (Vec<(Uuid, T)>, Rejections) {
    let mut decoded = Vec::with_capacity(envelopes.len());
    let mut rejected = Vec::new();
    for envelope in envelopes {
        match decode(envelope) {
            Ok(value) => decoded.push((envelope.id, value)),
            Err(reason) => rejected.push((envelope.id, reason)),
        }
    }
    (decoded, rejected)
}

/// A `track.published` event as the track recommendations keep (not embedded yet).
fn published_track(envelope: &Envelope) -> Result<StoredTrack, String> {
    let published: TrackPublished = envelope.decode().map_err(|e| e.to_string())?;
    Ok(StoredTrack {
        summary: TrackSummary {
            id: published.track_id,
            title: published.title,
            artist: ArtistRef { id: published.artist.id, name: published.artist.name },
            album: AlbumRef { id: published.album.id, title: published.album.title },
            duration_ms: published.duration_ms,
        },
        genre: published.genre,
        embedding: None,
        published_at: published.published_at,
    })
}

/// `track.published`: the track is embedded and recorded, or replaced by its new metadata.
pub struct Published(pub Arc<Recommendations>);

#[async_trait]
impl BatchHandler for Published {
    async fn handle_batch(&self, envelopes: &[Envelope]) -> Result<Rejections, String> {
        let (tracks, rejected) = decode_all(envelopes, published_track);
        self.0.publish(PUBLISHED_GROUP, tracks).await.map_err(|error| error.to_string())?;
        Ok(rejected)
    }
}

/// `track.deleted`: the track, and what anyone did with it, goes.
pub struct Deleted(pub Arc<Recommendations>);

#[async_trait]
impl Handler for Deleted {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let deleted: TrackDeleted =
            envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
        self.0
            .store()
            .apply_track_deleted(DELETED_GROUP, envelope.id, deleted.track_id)
            .await
            .map_err(classify)?;
        self.0.forget_track(deleted.track_id);
        Ok(())
    }
}

/// `song.played`, `song.liked` and `song.unliked`, recorded under `consumer`.
pub struct Listening {
    pub service: Arc<Recommendations>,
    pub consumer: &'static str,
}

#[async_trait]
impl BatchHandler for Listening {
    async fn handle_batch(&self, envelopes: &[Envelope]) -> Result<Rejections, String> {
        let (events, rejected) = decode_all(envelopes, |envelope| {
            Ok(match envelope.event_type.as_str() {
                SongPlayed::TYPE => {
                    let played: SongPlayed = envelope.decode().map_err(|e| e.to_string())?;
                    Listened::Played {
                        user_id: played.user_id,
                        track_id: played.track_id,
                        completion: completion(played.played_ms, played.duration_ms, played.stream),
                        at: played.started_at,
                    }
                }
                SongLiked::TYPE => {
                    let liked: SongLiked = envelope.decode().map_err(|e| e.to_string())?;
                    Listened::Liked {
                        user_id: liked.user_id,
                        track_id: liked.track_id,
                        liked: true,
                        at: liked.liked_at,
                    }
                }
                SongUnliked::TYPE => {
                    let unliked: SongUnliked = envelope.decode().map_err(|e| e.to_string())?;
                    Listened::Liked {
                        user_id: unliked.user_id,
                        track_id: unliked.track_id,
                        liked: false,
                        at: unliked.unliked_at,
                    }
                }
                other => return Err(format!("not a listening event: {other}")),
            })
        });
        self.service
            .store()
            .apply_listening(self.consumer, &events)
            .await
            .map_err(|error| error.to_string())?;
        Ok(rejected)
    }
}

/// `user.deleted`: what the listener did is forgotten.
pub struct UserDeletions(pub Arc<Recommendations>);

#[async_trait]
impl Handler for UserDeletions {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let deleted: UserDeleted =
            envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
        self.0.forget_user(envelope.id, deleted.user_id).await.map_err(classify_recommend)
    }
}

/// `track.published` and `track.deleted`, read by every replica in its own
/// [`replica_group`]: the shared groups record a track once, and each replica takes what
/// was recorded into its model in memory.
pub struct Replica(pub Arc<Recommendations>);

#[async_trait]
impl Handler for Replica {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        match envelope.event_type.as_str() {
            TrackPublished::TYPE => {
                let track = published_track(envelope).map_err(HandlerError::Rejected)?;
                self.0.refresh_published(track).await.map_err(classify_recommend)
            }
            TrackDeleted::TYPE => {
                let deleted: TrackDeleted =
                    envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
                self.0.forget_track(deleted.track_id);
                Ok(())
            }
            other => Err(HandlerError::Rejected(format!("not a track event: {other}"))),
        }
    }
}

fn classify_recommend(error: RecommendError) -> HandlerError {
    match error {
        RecommendError::Store(error) => classify(error),
        other => HandlerError::Transient(other.to_string()),
    }
}

fn classify(error: StoreError) -> HandlerError {
    match error {
        StoreError::Corrupt(_) => HandlerError::Rejected(error.to_string()),
        other => HandlerError::Transient(other.to_string()),
    }
}
