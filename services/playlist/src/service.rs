//! The playlist service's operations, with who may do what.

use std::{collections::HashSet, sync::Arc};

use bus::{
    Envelope,
    events::{
        PlaylistChange, PlaylistChanged, PlaylistCreated, PlaylistFollowed, PlaylistUnfollowed,
        SongLiked, SongUnliked,
    },
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kernel::caller::Caller;
use uuid::Uuid;

use kernel::catalog::Catalog;

use crate::{
    config::PlaylistConfig,
    domain::{
        Entry, Like, NewPlaylist, Playlist, PlaylistEdit, PlaylistError, TrackChange, TrackSummary,
        parse_snapshot_id, snapshot_id,
    },
    store::{ChangeError, PlaylistStore},
};

/// The consumer name under which projected catalog events are recorded.
pub const PROJECTION_CONSUMER: &str = "playlist.tracks";

/// The consumer name under which account deletions are recorded as applied.
pub const USERS_CONSUMER: &str = "playlist.users";

/// Most tracks one request may add, and most ids one `contains` may ask about.
pub const MAX_IDS_PER_REQUEST: usize = 100;

fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(now)
}

pub struct PlaylistService {
    store: Arc<dyn PlaylistStore>,
    catalog: Arc<dyn Catalog>,
    config: PlaylistConfig,
}

impl PlaylistService {
    pub fn new(
        store: Arc<dyn PlaylistStore>,
        catalog: Arc<dyn Catalog>,
        config: PlaylistConfig,
    ) -> Self {
        Self { store, catalog, config }
    }

    pub fn store(&self) -> &Arc<dyn PlaylistStore> {
        &self.store
    }

    pub async fn create(
        &self,
        caller: &Caller,
        name: &str,
        description: Option<String>,
        public: bool,
    ) -> Result<Playlist, PlaylistError> {
        let name = valid_name(name)?;
        let description = description.map(|d| valid_description(&d)).transpose()?;
        let at = now();
        let new = NewPlaylist {
            id: Uuid::now_v7(),
            owner_id: caller.user_id,
            name: name.clone(),
            description,
            public,
            created_at: at,
        };
        let created = PlaylistCreated {
            playlist_id: new.id,
            owner_id: new.owner_id,
            name,
            public,
            created_at: at,
        };
        Ok(self.store.create_playlist(&new, &Envelope::new(&created, at)).await?)
    }

    /// A playlist the caller may see, and whether the caller follows it.
    pub async fn playlist(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<(Playlist, bool), PlaylistError> {
        let playlist = self.visible(caller, id).await?;
        let followed =
            playlist.owner_id != caller.user_id && self.store.follows(caller.user_id, id).await?;
        Ok((playlist, followed))
    }

    pub async fn mine(
        &self,
        caller: &Caller,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<(Playlist, bool)>, u64), PlaylistError> {
        Ok(self.store.playlists_of(caller.user_id, limit, offset).await?)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: Uuid,
        mut edit: PlaylistEdit,
    ) -> Result<Playlist, PlaylistError> {
        let current = self.owned(caller, id).await?;
        edit.name = edit.name.as_deref().map(valid_name).transpose()?;
        edit.description = edit.description.as_deref().map(valid_description).transpose()?;
        let at = now();
        let changed = Playlist {
            name: edit.name.clone().unwrap_or(current.name.clone()),
            public: edit.public.unwrap_or(current.public),
            ..current
        };
        let event = changed_event(&changed, PlaylistChange::Details, at);
        self.store
            .update_playlist(id, &edit, at, &event)
            .await?
            .ok_or(PlaylistError::NotFound("playlist"))
    }

    pub async fn delete(&self, caller: &Caller, id: Uuid) -> Result<(), PlaylistError> {
        self.owned(caller, id).await?;
        self.store.delete_playlist(id).await?;
        Ok(())
    }

    /// Follows a public playlist; following one's own is a no-op.
    pub async fn follow(&self, caller: &Caller, id: Uuid) -> Result<(), PlaylistError> {
        let playlist = self.visible(caller, id).await?;
        if playlist.owner_id != caller.user_id {
            let at = now();
            let followed = PlaylistFollowed {
                playlist_id: id,
                owner_id: playlist.owner_id,
                user_id: caller.user_id,
                name: playlist.name,
                followed_at: at,
            };
            self.store.follow(caller.user_id, id, at, &Envelope::new(&followed, at)).await?;
        }
        Ok(())
    }

    pub async fn unfollow(&self, caller: &Caller, id: Uuid) -> Result<(), PlaylistError> {
        self.visible(caller, id).await?;
        let at = now();
        let unfollowed =
            PlaylistUnfollowed { playlist_id: id, user_id: caller.user_id, unfollowed_at: at };
        self.store.unfollow(caller.user_id, id, &Envelope::new(&unfollowed, at)).await?;
        Ok(())
    }

    pub async fn tracks(
        &self,
        caller: &Caller,
        id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Entry>, u64), PlaylistError> {
        self.visible(caller, id).await?;
        Ok(self.store.entries(id, limit, offset).await?)
    }

    /// Changes the track list (the owner only); returns the new snapshot id.
    pub async fn change(
        &self,
        caller: &Caller,
        id: Uuid,
        snapshot: Option<&str>,
        change: TrackChange,
    ) -> Result<String, PlaylistError> {
        let playlist = self.owned(caller, id).await?;
        let expected = match snapshot {
            None => None,
            Some(text) => {
                Some(parse_snapshot_id(text).ok_or_else(|| PlaylistError::Stale(text.to_owned()))?)
            }
        };
        if let TrackChange::Add { track_ids, .. } = &change {
            if track_ids.is_empty() || track_ids.len() > MAX_IDS_PER_REQUEST {
                return Err(PlaylistError::Invalid {
                    field: "track_ids",
                    reason: format!("must hold 1 to {MAX_IDS_PER_REQUEST} ids"),
                });
            }
            self.ensure_known(caller, track_ids).await?;
        }
        let at = now();
        let event = changed_event(&playlist, PlaylistChange::Tracks, at);
        let changed = self
            .store
            .change_tracks(id, expected, &change, self.config.max_tracks, at, &event)
            .await;
        match changed {
            Ok(version) => Ok(snapshot_id(version)),
            Err(ChangeError::NotFound) => Err(PlaylistError::NotFound("playlist")),
            Err(ChangeError::Stale) => {
                Err(PlaylistError::Stale(snapshot.unwrap_or_default().to_owned()))
            }
            Err(ChangeError::Position(error)) => Err(error.into()),
            Err(ChangeError::Full(_)) => Err(PlaylistError::Full),
            Err(ChangeError::UnknownTracks(ids)) => Err(unknown(&ids)),
            Err(ChangeError::Store(error)) => Err(error.into()),
        }
    }

    /// Likes a track (idempotent: the first like's time stays).
    pub async fn like(&self, caller: &Caller, track_id: Uuid) -> Result<(), PlaylistError> {
        match self.ensure_known(caller, &[track_id]).await {
            Err(PlaylistError::UnknownTracks(_)) => return Err(PlaylistError::NotFound("track")),
            other => other?,
        }
        let at = now();
        let event = SongLiked { user_id: caller.user_id, track_id, liked_at: at };
        self.store.like(caller.user_id, track_id, at, &Envelope::new(&event, at)).await?;
        Ok(())
    }

    pub async fn unlike(&self, caller: &Caller, track_id: Uuid) -> Result<(), PlaylistError> {
        let at = now();
        let event = SongUnliked { user_id: caller.user_id, track_id, unliked_at: at };
        self.store.unlike(caller.user_id, track_id, &Envelope::new(&event, at)).await?;
        Ok(())
    }

    pub async fn likes(
        &self,
        caller: &Caller,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Like>, u64), PlaylistError> {
        Ok(self.store.likes(caller.user_id, limit, offset).await?)
    }

    /// For each id, in order, whether the caller likes it.
    pub async fn contains(
        &self,
        caller: &Caller,
        ids: &[Uuid],
    ) -> Result<Vec<bool>, PlaylistError> {
        if ids.is_empty() || ids.len() > MAX_IDS_PER_REQUEST {
            return Err(PlaylistError::Invalid {
                field: "ids",
                reason: format!("must list 1 to {MAX_IDS_PER_REQUEST} track ids"),
            });
        }
        let liked: HashSet<Uuid> =
            self.store.liked_among(caller.user_id, ids).await?.into_iter().collect();
        Ok(ids.iter().map(|id| liked.contains(id)).collect())
    }

    pub async fn apply_published(
        &self,
        event_id: Uuid,
        summary: &TrackSummary,
    ) -> Result<(), PlaylistError> {
        Ok(self.store.apply_published(PROJECTION_CONSUMER, event_id, summary).await?)
    }

    pub async fn apply_deleted(&self, event_id: Uuid, track_id: Uuid) -> Result<(), PlaylistError> {
        Ok(self.store.apply_deleted(PROJECTION_CONSUMER, event_id, track_id, now()).await?)
    }

    /// An account is gone: its playlists (and their followers' follows), its follows and
    /// its likes go with it.
    pub async fn forget_user(&self, event_id: Uuid, user_id: Uuid) -> Result<(), PlaylistError> {
        Ok(self.store.forget_user(USERS_CONSUMER, event_id, user_id).await?)
    }

    /// Makes sure every id is in the projection, asking the catalog about the rest.
    async fn ensure_known(&self, caller: &Caller, ids: &[Uuid]) -> Result<(), PlaylistError> {
        let known: HashSet<Uuid> =
            self.store.summaries(ids).await?.into_iter().map(|summary| summary.id).collect();
        let mut missing: Vec<Uuid> = ids.iter().copied().filter(|id| !known.contains(id)).collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let ready = self
            .catalog
            .ready_tracks(caller, &missing)
            .await
            .map_err(PlaylistError::CatalogUnavailable)?
            .into_iter()
            .map(TrackSummary::from)
            .collect::<Vec<_>>();
        self.store.upsert_summaries(&ready).await?;
        let found: HashSet<Uuid> = ready.iter().map(|summary| summary.id).collect();
        let unknown_ids: Vec<Uuid> = missing.into_iter().filter(|id| !found.contains(id)).collect();
        if unknown_ids.is_empty() { Ok(()) } else { Err(unknown(&unknown_ids)) }
    }

    /// A playlist the caller may read: public, or the caller's own. Someone else's private
    /// playlist does not exist as far as the caller can tell.
    async fn visible(&self, caller: &Caller, id: Uuid) -> Result<Playlist, PlaylistError> {
        match self.store.playlist(id).await? {
            Some(playlist) if playlist.public || playlist.owner_id == caller.user_id => {
                Ok(playlist)
            }
            _ => Err(PlaylistError::NotFound("playlist")),
        }
    }

    /// A playlist the caller may change: its own (403 for someone's public one).
    async fn owned(&self, caller: &Caller, id: Uuid) -> Result<Playlist, PlaylistError> {
        let playlist = self.visible(caller, id).await?;
        if playlist.owner_id == caller.user_id || caller.is_admin() {
            Ok(playlist)
        } else {
            Err(PlaylistError::NotYours)
        }
    }
}

/// `playlist.changed` for a playlist as it is after the change.
fn changed_event(playlist: &Playlist, change: PlaylistChange, at: DateTime<Utc>) -> Envelope {
    let changed = PlaylistChanged {
        playlist_id: playlist.id,
        owner_id: playlist.owner_id,
        name: playlist.name.clone(),
        public: playlist.public,
        change,
        changed_at: at,
    };
    Envelope::new(&changed, at)
}

fn unknown(ids: &[Uuid]) -> PlaylistError {
    PlaylistError::UnknownTracks(ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", "))
}

fn valid_name(name: &str) -> Result<String, PlaylistError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(PlaylistError::Invalid {
            field: "name",
            reason: "must be 1 to 200 characters".into(),
        });
    }
    Ok(name.to_owned())
}

fn valid_description(description: &str) -> Result<String, PlaylistError> {
    if description.chars().count() > 1_000 {
        return Err(PlaylistError::Invalid {
            field: "description",
            reason: "must be at most 1,000 characters".into(),
        });
    }
    Ok(description.trim().to_owned())
}
