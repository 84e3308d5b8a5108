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

fn rejected(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::Rejected(error.to_string())
}

fn classify(error: StreamingError) -> HandlerError {
    match error {
        StreamingError::Store(corrupt @ StoreError::Corrupt(_)) => rejected(corrupt),
        other => HandlerError::Transient(other.to_string()),
    }
}
