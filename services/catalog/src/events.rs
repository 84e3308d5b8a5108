//! The events the catalog consumes: streaming's transcode results, and deleted accounts,
//! whose uploads it settles.

use std::sync::Arc;

use async_trait::async_trait;
use bus::{
    Envelope,
    consumer::{Handler, HandlerError},
    events::{TrackTranscoded, UserDeleted},
};

use crate::{CatalogService, domain::CatalogError, store::StoreError};

/// The consumer group the catalog reads `track.transcoded` in.
pub const TRANSCODE_GROUP: &str = "catalog";

/// The consumer group the catalog reads `user.deleted` in.
pub const USERS_GROUP: &str = "catalog.users";

/// Applies `track.transcoded`: the track becomes ready (and is published) or failed.
pub struct TranscodeResults(pub Arc<CatalogService>);

#[async_trait]
impl Handler for TranscodeResults {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let transcoded: TrackTranscoded =
            envelope.decode().map_err(|error| HandlerError::Rejected(error.to_string()))?;
        self.0.apply_transcode(envelope.id, &transcoded).await.map_err(classify)
    }
}

/// Applies `user.deleted`: see [`CatalogService::forget_uploader`].
pub struct UserDeletions(pub Arc<CatalogService>);

#[async_trait]
impl Handler for UserDeletions {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let deleted: UserDeleted =
            envelope.decode().map_err(|error| HandlerError::Rejected(error.to_string()))?;
        self.0.forget_uploader(deleted.user_id).await.map_err(classify)
    }
}

fn classify(error: CatalogError) -> HandlerError {
    match error {
        // Retrying cannot repair a row that does not decode; anything else may pass.
        CatalogError::Store(corrupt @ StoreError::Corrupt(_)) => {
            HandlerError::Rejected(corrupt.to_string())
        }
        other => HandlerError::Transient(other.to_string()),
    }
}
