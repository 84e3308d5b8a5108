//! The service's rules around the catalog: a track the catalog reports ready is accepted
//! before its event arrives; one it does not know is refused; a catalog that cannot be
//! asked is an outage, not a refusal.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kernel::{
    api::{AlbumRef, ArtistRef},
    caller::Caller,
    catalog::Catalog,
    db::SqlPool,
    engine::EngineUrl,
    grant::{Role, Tier},
};
use playlist::{
    PlaylistConfig, PlaylistService,
    domain::{PlaylistError, TrackChange},
};
use uuid::Uuid;

type TrackSummary = kernel::api::TrackSummary;

/// A catalog that knows some ready tracks, or is down.
#[derive(Default)]
struct KnownTracks {
    ready: Mutex<Vec<TrackSummary>>,
    down: Mutex<bool>,
}

#[async_trait]
impl Catalog for KnownTracks {
    async fn ready_tracks(
        &self,
        _caller: &Caller,
        ids: &[Uuid],
    ) -> Result<Vec<TrackSummary>, String> {
        if *self.down.lock().unwrap() {
            return Err("connection refused".into());
        }
        let ready = self.ready.lock().unwrap();
        Ok(ready.iter().filter(|t| ids.contains(&t.id)).cloned().collect())
    }
}

fn summary(title: &str) -> TrackSummary {
    TrackSummary {
        id: Uuid::now_v7(),
        title: title.into(),
        artist: ArtistRef { id: Uuid::now_v7(), name: "Artist".into() },
        album: AlbumRef { id: Uuid::now_v7(), title: "Album".into() },
        duration_ms: 1_000,
    }
}

fn caller() -> Caller {
    Caller {
        user_id: Uuid::now_v7(),
        session_id: Uuid::now_v7(),
        tier: Tier::Free,
        role: Role::User,
    }
}

#[tokio::test]
async fn tracks_the_projection_has_not_seen_are_asked_of_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("playlist.db").display());
    let pool = SqlPool::connect(&EngineUrl::new(url), "unused").await.unwrap();
    let store = playlist::store::open(pool).await.unwrap();
    let catalog = Arc::new(KnownTracks::default());
    let service = PlaylistService::new(store.clone(), catalog.clone(), PlaylistConfig::default());
    let owner = caller();
    let playlist = service.create(&owner, "Fresh", None, false).await.unwrap();

    let fresh = summary("Just Ready");
    catalog.ready.lock().unwrap().push(fresh.clone());
    let add = |ids: Vec<Uuid>| TrackChange::Add { track_ids: ids, position: None };
    service.change(&owner, playlist.id, None, add(vec![fresh.id])).await.unwrap();
    assert_eq!(
        store.summaries(&[fresh.id]).await.unwrap(),
        vec![playlist::domain::TrackSummary::from(fresh.clone())],
        "now projected"
    );
    let (entries, _) = service.tracks(&owner, playlist.id, 10, 0).await.unwrap();
    assert_eq!(entries[0].track, fresh.clone().into());

    let nowhere = Uuid::now_v7();
    let refused = service.change(&owner, playlist.id, None, add(vec![fresh.id, nowhere])).await;
    match refused {
        Err(PlaylistError::UnknownTracks(ids)) => assert_eq!(ids, nowhere.to_string()),
        other => panic!("expected unknown tracks, got {other:?}"),
    }
    let liked = service.like(&owner, nowhere).await;
    assert!(matches!(liked, Err(PlaylistError::NotFound("track"))), "{liked:?}");

    *catalog.down.lock().unwrap() = true;
    let outage = service.change(&owner, playlist.id, None, add(vec![Uuid::now_v7()])).await;
    assert!(matches!(outage, Err(PlaylistError::CatalogUnavailable(_))), "{outage:?}");
    let liked = service.like(&owner, Uuid::now_v7()).await;
    assert!(matches!(liked, Err(PlaylistError::CatalogUnavailable(_))), "an outage: {liked:?}");
    // Tracks already projected need no catalog.
    service.change(&owner, playlist.id, None, add(vec![fresh.id])).await.unwrap();
    let (entries, total) = service.tracks(&owner, playlist.id, 10, 0).await.unwrap();
    assert_eq!(total, 2);
    assert!(entries.iter().all(|entry| entry.track.id == fresh.id));
}
