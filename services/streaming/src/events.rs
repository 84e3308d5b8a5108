//! The events streaming consumes: uploads to transcode, deletions to clean up after.

use std::sync::Arc;

use async_trait::async_trait;
use bus::{
    Envelope,
    consumer::{Handler, HandlerError},
    events::{TrackDeleted, TrackUploaded},
};

use crate::{StreamingService, service::StreamingError, store::StoreError};

/// The consumer groups streaming reads its topics in, one per topic.
pub const UPLOADS_GROUP: &str = "streaming.uploads";
pub const DELETIONS_GROUP: &str = "streaming.deletions";

/// `track.uploaded`: queue a transcode.
pub struct Uploads(pub Arc<StreamingService>);

#[async_trait]
impl Handler for Uploads {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let uploaded: TrackUploaded = envelope.decode().map_err(rejected)?;
        self.0.enqueue(envelope.id, &uploaded).await.map(drop).map_err(classify)
    }
}

/// `track.deleted`: drop the job and the media.
pub struct Deletions(pub Arc<StreamingService>);

#[async_trait]
impl Handler for Deletions {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let deleted: TrackDeleted = envelope.decode().map_err(rejected)?;
        self.0.forget(envelope.id, deleted.track_id).await.map_err(classify)
    }
}

/// The consumer group of one replica's segment cache: every replica reads every
/// `track.deleted`, where [`DELETIONS_GROUP`] hands each to one replica alone.
pub fn segment_cache_group() -> String {
    format!("streaming.segment-cache.{}", uuid::Uuid::new_v4().simple())
}

/// `track.deleted`, read by every replica (in its own [`segment_cache_group`]): stop
/// serving the track's segments from this replica's memory, so that a URL signed before
/// the deletion stops playing everywhere, not only where [`Deletions`] ran.
pub struct CachedSegments(pub Arc<StreamingService>);

#[async_trait]
impl Handler for CachedSegments {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        // A new group starts at the topic's beginning, so a replica replays every retained
        // deletion when it starts; each costs a lookup-table entry and nothing else. Even
        // an old one matters when it arrives late: its segments stayed in storage, and in
        // memory, until it did.
        match envelope.decode::<TrackDeleted>() {
            Ok(deleted) => self.0.stop_serving(deleted.track_id),
            // The deletions group dead-letters it; one copy in the dead letters is enough.
            Err(error) => tracing::warn!(%error, "an unreadable track.deleted"),
        }
        Ok(())
    }
}

fn rejected(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::Rejected(error.to_string())
}

fn classify(error: StreamingError) -> HandlerError {
    match error {
        StreamingError::Store(corrupt @ StoreError::Corrupt(_)) => rejected(corrupt),
        other => HandlerError::Transient(other.to_string()),
    }
}
