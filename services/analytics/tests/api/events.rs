//! The consumers of catalog and account deletions, end to end on the embedded engines:
//! plays reported through the service, relayed from its outbox to the warehouse, then
//! `track.deleted` and `user.deleted` delivered (and redelivered) to their handlers. The
//! adapters themselves are held to the contracts of `store_contract` and
//! `warehouse`.

use std::sync::Arc;

use analytics::{
    AnalyticsConfig, AnalyticsService,
    domain::{PlayReport, Window},
    events::{Deleted, Plays, Published, UserDeletions},
    warehouse::{Warehouse, embedded::EmbeddedWarehouse},
};
use async_trait::async_trait;
use bus::{
    Envelope,
    consumer::{BatchHandler, Handler, HandlerError},
    events::{AlbumRef, ArtistRef, TrackDeleted, TrackPublished, UserDeleted},
};
use chrono::{TimeDelta, Utc};
use kernel::{
    api::TrackSummary,
    caller::Caller,
    catalog::Catalog,
    db::SqlPool,
    grant::{Role, Tier},
};
use uuid::Uuid;

/// A catalog that knows nothing: every track here is published through the projection.
struct NoCatalog;

#[async_trait]
impl Catalog for NoCatalog {
    async fn ready_tracks(&self, _: &Caller, _: &[Uuid]) -> Result<Vec<TrackSummary>, String> {
        Ok(Vec::new())
    }
}

struct Fixture {
    service: Arc<AnalyticsService>,
    database: testkit::TestDatabase,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let database = testkit::TestDatabase::sqlite().await;
        let store = analytics::store::open(database.pool().clone()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let warehouse =
            EmbeddedWarehouse::open(&dir.path().join("warehouse.db"), 16).await.unwrap();
        warehouse.migrate().await.unwrap();
        let warehouse: Arc<dyn Warehouse> = Arc::new(warehouse);
        let service = Arc::new(AnalyticsService::new(
            store,
            warehouse,
            Arc::new(NoCatalog),
            AnalyticsConfig::default(),
        ));
        Self { service, database, _dir: dir }
    }

    async fn publish(&self, title: &str) -> Uuid {
        let track_id = Uuid::now_v7();
        let published = TrackPublished {
            track_id,
            title: title.into(),
            artist: ArtistRef { id: Uuid::now_v7(), name: "Artist".into() },
            album: AlbumRef { id: Uuid::now_v7(), title: "Album".into() },
            duration_ms: 180_000,
            published_at: Utc::now(),
            genre: None,
        };
        let envelope = Envelope::new(&published, Utc::now());
        Published(self.service.clone()).handle(&envelope).await.unwrap();
        track_id
    }

    /// Reports plays as `caller`, then relays the outbox to the warehouse as the plays
    /// consumer would.
    async fn play(&self, caller: &Caller, tracks: &[Uuid]) {
        let reports: Vec<PlayReport> = tracks
            .iter()
            .enumerate()
            .map(|(n, &track_id)| PlayReport {
                id: None,
                track_id,
                played_ms: 60_000,
                started_at: Some(Utc::now() - TimeDelta::minutes(10 + n as i64)),
                context: None,
            })
            .collect();
        assert_eq!(self.service.report_plays(caller, &reports).await.unwrap(), tracks.len() as u64);
        let pending = self.service.store().pending(1_000).await.unwrap();
        let rejected = Plays(self.service.clone()).handle_batch(&pending).await.unwrap();
        assert!(rejected.is_empty(), "{rejected:?}");
        let ids: Vec<Uuid> = pending.iter().map(|envelope| envelope.id).collect();
        self.service.store().mark_published(&ids, Utc::now()).await.unwrap();
    }

    async fn accepted_plays_of(&self, user_id: Uuid) -> i64 {
        let SqlPool::Sqlite(pool) = self.database.pool() else { unreachable!() };
        sqlx::query_scalar("SELECT COUNT(*) FROM accepted_plays WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// History's titles and total, and top tracks' titles and total.
    async fn answers(&self, caller: &Caller) -> ((Vec<String>, u64), (Vec<String>, u64)) {
        let (items, total) = self.service.history(caller, 10, 0).await.unwrap();
        let history = (items.into_iter().map(|item| item.track.title).collect(), total);
        let (items, total) = self.service.top_tracks(Window::Day, 10, 0).await.unwrap();
        let top = (items.into_iter().map(|item| item.track.title).collect(), total);
        (history, top)
    }
}

fn listener() -> Caller {
    Caller {
        user_id: Uuid::now_v7(),
        session_id: Uuid::now_v7(),
        tier: Tier::Free,
        role: Role::User,
    }
}

fn titles(titles: &[&str]) -> Vec<String> {
    titles.iter().map(|title| (*title).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_track_leaves_history_and_charts_pages_and_totals_alike() {
    let fixture = Fixture::new().await;
    let (doomed, kept) = (fixture.publish("Doomed").await, fixture.publish("Kept").await);
    let (ada, bob) = (listener(), listener());
    fixture.play(&ada, &[doomed]).await;
    fixture.play(&bob, &[doomed, doomed, kept]).await;

    let deleted =
        Envelope::new(&TrackDeleted { track_id: doomed, deleted_at: Utc::now() }, Utc::now());
    let handler = Deleted(fixture.service.clone());
    handler.handle(&deleted).await.unwrap();
    // Ada played nothing else: nothing is listed, and nothing is counted.
    assert_eq!(fixture.answers(&ada).await, ((vec![], 0), (titles(&["Kept"]), 1)));
    assert_eq!(fixture.answers(&bob).await, ((titles(&["Kept"]), 1), (titles(&["Kept"]), 1)));

    // Redelivered, it changes nothing.
    handler.handle(&deleted).await.unwrap();
    assert_eq!(fixture.answers(&bob).await, ((titles(&["Kept"]), 1), (titles(&["Kept"]), 1)));
    fixture.database.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_leaves_no_history_and_its_plays_still_count() {
    let fixture = Fixture::new().await;
    let (first, second) = (fixture.publish("First").await, fixture.publish("Second").await);
    let (ada, bob) = (listener(), listener());
    fixture.play(&ada, &[first, first, second]).await;
    fixture.play(&bob, &[second]).await;
    let top_before = fixture.service.top_tracks(Window::Day, 10, 0).await.unwrap();
    assert_eq!(top_before.1, 2);

    let deleted =
        Envelope::new(&UserDeleted { user_id: ada.user_id, deleted_at: Utc::now() }, Utc::now());
    let handler = UserDeletions(fixture.service.clone());
    handler.handle(&deleted).await.unwrap();
    let check = || async {
        assert_eq!(fixture.service.history(&ada, 10, 0).await.unwrap(), (vec![], 0));
        assert_eq!(fixture.accepted_plays_of(ada.user_id).await, 0);
        let (bobs, total) = fixture.service.history(&bob, 10, 0).await.unwrap();
        assert_eq!((bobs.len(), total), (1, 1));
        assert_eq!(fixture.accepted_plays_of(bob.user_id).await, 1);
        // Charts count the plays as before, listeners included.
        assert_eq!(fixture.service.top_tracks(Window::Day, 10, 0).await.unwrap(), top_before);
    };
    check().await;

    // Redelivered, it changes nothing.
    handler.handle(&deleted).await.unwrap();
    check().await;

    // An event of another type goes to the dead letters.
    let wrong =
        Envelope::new(&TrackDeleted { track_id: first, deleted_at: Utc::now() }, Utc::now());
    assert!(matches!(handler.handle(&wrong).await, Err(HandlerError::Rejected(_))));
    fixture.database.finish().await;
}
