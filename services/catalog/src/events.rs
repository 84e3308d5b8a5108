//! The events the catalog consumes: streaming's transcode results.

use std::sync::Arc;

use async_trait::async_trait;
use bus::{
    Envelope,
    consumer::{Handler, HandlerError},
    events::TrackTranscoded,
};

use crate::{CatalogService, domain::CatalogError, store::StoreError};

/// The consumer group the catalog reads `track.transcoded` in.
pub const TRANSCODE_GROUP: &str = "catalog";

/// Applies `track.transcoded`: the track becomes ready (and is published) or failed.
pub struct TranscodeResults(pub Arc<CatalogService>);

#[async_trait]
impl Handler for TranscodeResults {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let transcoded: TrackTranscoded =
            envelope.decode().map_err(|error| HandlerError::Rejected(error.to_string()))?;
        self.0.apply_transcode(envelope.id, &transcoded).await.map_err(|error| match error {
            // Retrying cannot repair a row that does not decode; anything else may pass.
            CatalogError::Store(corrupt @ StoreError::Corrupt(_)) => {
                HandlerError::Rejected(corrupt.to_string())
            }
            other => HandlerError::Transient(other.to_string()),
        })
    }
}
