//! The events the playlist service consumes: the catalog's published and deleted tracks,
//! which keep its projection of track summaries, and deleted accounts, whose playlists,
//! follows and likes go with them.

use std::sync::Arc;

use async_trait::async_trait;
use bus::{
    Envelope,
    consumer::{Handler, HandlerError},
    events::{TrackDeleted, TrackPublished, UserDeleted},
};

use crate::{
    PlaylistService,
    domain::{PlaylistError, TrackSummary},
    store::StoreError,
};

/// The consumer groups, one per topic.
pub const PUBLISHED_GROUP: &str = "playlist.published";
pub const DELETED_GROUP: &str = "playlist.deleted";
pub const USERS_GROUP: &str = "playlist.users";

/// `track.published`: the track joins the projection.
pub struct Published(pub Arc<PlaylistService>);

#[async_trait]
impl Handler for Published {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let published: TrackPublished =
            envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
        let summary = TrackSummary {
            id: published.track_id,
            title: published.title,
            artist_id: published.artist.id,
            artist_name: published.artist.name,
            album_id: published.album.id,
            album_title: published.album.title,
            duration_ms: published.duration_ms,
        };
        self.0.apply_published(envelope.id, &summary).await.map_err(classify)
    }
}

/// `track.deleted`: the track leaves the projection, every playlist and every like.
pub struct Deleted(pub Arc<PlaylistService>);

#[async_trait]
impl Handler for Deleted {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let deleted: TrackDeleted =
            envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
        self.0.apply_deleted(envelope.id, deleted.track_id).await.map_err(classify)
    }
}

/// `user.deleted`: the account's playlists, follows and likes go.
pub struct UserDeletions(pub Arc<PlaylistService>);

#[async_trait]
impl Handler for UserDeletions {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let deleted: UserDeleted =
            envelope.decode().map_err(|e| HandlerError::Rejected(e.to_string()))?;
        self.0.forget_user(envelope.id, deleted.user_id).await.map_err(classify)
    }
}

fn classify(error: PlaylistError) -> HandlerError {
    match error {
        PlaylistError::Store(corrupt @ StoreError::Corrupt(_)) => {
            HandlerError::Rejected(corrupt.to_string())
        }
        other => HandlerError::Transient(other.to_string()),
    }
}
