//! One contract for every `PlaylistStore` adapter: each case below runs once on SQLite and
//! once on PostgreSQL (`store_contract::sqlite::*`, `store_contract::postgres::*`), each
//! time on a fresh database.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use bus::{
    Envelope, Event,
    events::{PlaylistCreated, SongLiked, SongUnliked},
    outbox::OutboxStore,
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kernel::db::SqlPool;
use playlist::{
    domain::{
        Like, MAX_TRACKS, NewPlaylist, Playlist, PlaylistEdit, PositionError, TrackChange,
        TrackSummary, positions::GAP,
    },
    store::{ChangeError, PlaylistStore, StoreError},
};
use uuid::Uuid;

macro_rules! store_contract {
    (
        stores: [$($case:ident),* $(,)?],
        fixtures: [$($raw:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            store_contract!(@engine sqlite; [$($case),*]; [$($raw),*]);
        }

        mod postgres {
            store_contract!(@engine postgres; [$($case),*]; [$($raw),*]);
        }
    };
    (@engine $engine:ident; [$($case:ident),*]; [$($raw:ident),*]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture = super::StoreFixture::$engine().await;
                super::$case(fixture.store()).await;
                fixture.finish().await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $raw() {
                let fixture = super::StoreFixture::$engine().await;
                super::$raw(&fixture).await;
                fixture.finish().await;
            }
        )*
    };
}

store_contract!(
    stores: [
        playlists_are_created_read_updated_and_deleted,
        playlists_of_lists_own_and_followed_newest_first,
        a_deleted_users_playlists_follows_and_likes_go,
        tracks_are_added_at_the_end_and_at_a_position,
        positions_are_removed,
        ranges_are_reordered,
        a_stale_version_changes_nothing,
        unknown_tracks_are_listed_and_change_nothing,
        a_full_playlist_takes_no_more,
        summaries_are_inserted_or_replaced,
        published_and_deleted_tracks_apply_once_per_event,
        a_like_keeps_its_first_time_and_records_one_event,
        likes_are_listed_newest_first,
        the_outbox_drains,
        concurrent_changes_to_one_playlist_each_land_once,
    ],
    fixtures: [
        a_reorder_writes_only_the_moved_rows,
        inserting_where_the_gap_is_used_up_renumbers,
        renumbering_onto_keys_in_use_keeps_the_order,
    ],
);

/// A store on a database of its own, removed again by [`StoreFixture::finish`].
struct StoreFixture {
    store: Arc<dyn PlaylistStore>,
    database: testkit::TestDatabase,
}

impl StoreFixture {
    async fn sqlite() -> Self {
        Self::open(testkit::TestDatabase::sqlite().await).await
    }

    async fn postgres() -> Self {
        Self::open(testkit::TestDatabase::postgres().await).await
    }

    async fn open(database: testkit::TestDatabase) -> Self {
        let store = playlist::store::open(database.pool().clone())
            .await
            .unwrap_or_else(|error| panic!("cannot migrate the test database: {error}"));
        Self { store, database }
    }

    fn store(&self) -> Arc<dyn PlaylistStore> {
        Arc::clone(&self.store)
    }

    /// Each track's sort key in a playlist, in order, read behind the store's back.
    async fn sort_keys(&self, playlist_id: Uuid) -> Vec<(Uuid, i64)> {
        let sql = "SELECT track_id, sort_key FROM playlist_entries
                   WHERE playlist_id = $1 ORDER BY sort_key";
        match self.database.pool() {
            SqlPool::Sqlite(pool) => sqlx::query_as(sql).bind(playlist_id).fetch_all(pool).await,
            SqlPool::Postgres(pool) => sqlx::query_as(sql).bind(playlist_id).fetch_all(pool).await,
        }
        .unwrap_or_else(|error| panic!("cannot read sort keys: {error}"))
    }

    /// Gives a track's entry another sort key, behind the store's back.
    async fn set_sort_key(&self, playlist_id: Uuid, track_id: Uuid, key: i64) {
        let sql = "UPDATE playlist_entries SET sort_key = $3
                   WHERE playlist_id = $1 AND track_id = $2";
        let updated = match self.database.pool() {
            SqlPool::Sqlite(pool) => sqlx::query(sql)
                .bind(playlist_id)
                .bind(track_id)
                .bind(key)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
            SqlPool::Postgres(pool) => sqlx::query(sql)
                .bind(playlist_id)
                .bind(track_id)
                .bind(key)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()),
        }
        .unwrap_or_else(|error| panic!("cannot set a sort key: {error}"));
        assert_eq!(updated, 1, "one entry of {track_id}");
    }

    /// Drops the store, then the database (a failed test leaves it for a look).
    async fn finish(self) {
        drop(self.store);
        self.database.finish().await;
    }
}

const CONSUMER: &str = "playlist.test";

/// Now at the millisecond precision the service keeps.
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::milliseconds(1)).expect("truncate to milliseconds")
}

fn secs(seconds: i64) -> TimeDelta {
    TimeDelta::seconds(seconds)
}

/// A summary of a track no other test knows, `n` naming it.
fn track(n: usize) -> TrackSummary {
    TrackSummary {
        id: Uuid::now_v7(),
        title: format!("Track {n}"),
        artist_id: Uuid::now_v7(),
        artist_name: format!("Artist {n}"),
        album_id: Uuid::now_v7(),
        album_title: format!("Album {n}"),
        duration_ms: 180_000 + u64::try_from(n).unwrap(),
    }
}

/// `count` new tracks, put in the projection.
async fn published(store: &dyn PlaylistStore, count: usize) -> Vec<TrackSummary> {
    let tracks: Vec<TrackSummary> = (0..count).map(track).collect();
    store.upsert_summaries(&tracks).await.unwrap();
    tracks
}

fn ids(tracks: &[TrackSummary]) -> Vec<Uuid> {
    tracks.iter().map(|track| track.id).collect()
}

fn new_playlist(owner_id: Uuid, name: &str, created_at: DateTime<Utc>) -> NewPlaylist {
    NewPlaylist {
        id: Uuid::now_v7(),
        owner_id,
        name: name.to_owned(),
        description: Some(format!("{name}, described")),
        public: true,
        created_at,
    }
}

fn created_event(new: &NewPlaylist) -> Envelope {
    let event = PlaylistCreated {
        playlist_id: new.id,
        owner_id: new.owner_id,
        name: new.name.clone(),
        public: new.public,
        created_at: new.created_at,
    };
    Envelope::new(&event, new.created_at)
}

async fn created(store: &dyn PlaylistStore, owner_id: Uuid, at: DateTime<Utc>) -> Playlist {
    let new = new_playlist(owner_id, "Mix", at);
    store.create_playlist(&new, &created_event(&new)).await.unwrap()
}

async fn playlist(store: &dyn PlaylistStore, id: Uuid) -> Playlist {
    store.playlist(id).await.unwrap().unwrap_or_else(|| panic!("playlist {id} exists"))
}

async fn change(store: &dyn PlaylistStore, playlist_id: Uuid, change: TrackChange) -> i64 {
    store
        .change_tracks(playlist_id, None, &change, MAX_TRACKS, now(), &any_event())
        .await
        .unwrap_or_else(|error| panic!("{change:?}: {error:?}"))
}

async fn add(
    store: &dyn PlaylistStore,
    playlist_id: Uuid,
    track_ids: &[Uuid],
    position: Option<usize>,
) -> i64 {
    change(store, playlist_id, TrackChange::Add { track_ids: track_ids.to_vec(), position }).await
}

fn reorder(range_start: usize, range_length: usize, insert_before: usize) -> TrackChange {
    TrackChange::Reorder { range_start, range_length, insert_before }
}

/// The playlist's tracks in order, checking that the entries are ranked 0..n-1 and that
/// the stored total is their number.
async fn order(store: &dyn PlaylistStore, playlist_id: Uuid) -> Vec<Uuid> {
    let (entries, total) = store.entries(playlist_id, 20_000, 0).await.unwrap();
    let positions: Vec<u64> = entries.iter().map(|entry| entry.position).collect();
    let ranks: Vec<u64> = (0..entries.len() as u64).collect();
    assert_eq!(positions, ranks, "positions are ranks");
    assert_eq!(total, entries.len() as u64, "the total counts the entries");
    assert_eq!(playlist(store, playlist_id).await.tracks_total, total);
    entries.into_iter().map(|entry| entry.track.id).collect()
}

/// The tracks of `all` at `indices`, in that order.
fn picked(all: &[Uuid], indices: &[usize]) -> Vec<Uuid> {
    indices.iter().map(|index| all[*index]).collect()
}

async fn pending(store: &dyn PlaylistStore) -> Vec<Envelope> {
    OutboxStore::pending(store, 1_000).await.expect("read the outbox")
}

async fn playlists_are_created_read_updated_and_deleted(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let t0 = now();
    let owner = Uuid::now_v7();
    let new = new_playlist(owner, "Road trip", t0);
    let event = created_event(&new);
    let made = store.create_playlist(&new, &event).await.unwrap();
    let expected = Playlist {
        id: new.id,
        owner_id: owner,
        name: "Road trip".to_owned(),
        description: Some("Road trip, described".to_owned()),
        public: true,
        version: 0,
        tracks_total: 0,
        created_at: t0,
        updated_at: t0,
    };
    assert_eq!(made, expected);
    assert_eq!(playlist(store, new.id).await, expected, "read back as created");
    assert_eq!(pending(store).await, std::slice::from_ref(&event), "playlist.created recorded");
    assert_eq!(pending(store).await[0].event_type, PlaylistCreated::TYPE);
    assert_eq!(store.playlist(Uuid::now_v7()).await.unwrap(), None);

    let again = NewPlaylist { name: "Another".to_owned(), ..new.clone() };
    let error = store.create_playlist(&again, &created_event(&again)).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict), "{error:?}");
    assert_eq!(pending(store).await, [event], "no event for a refused playlist");

    let private = NewPlaylist { description: None, public: false, ..new_playlist(owner, "B", t0) };
    let made = store.create_playlist(&private, &created_event(&private)).await.unwrap();
    assert_eq!((made.description, made.public), (None, false));

    let tracks = published(store, 2).await;
    add(store, new.id, &ids(&tracks), None).await;
    let t1 = t0 + secs(60);
    let renamed = PlaylistEdit { name: Some("Night drive".to_owned()), ..PlaylistEdit::default() };
    let updated = store.update_playlist(new.id, &renamed, t1, &any_event()).await.unwrap().unwrap();
    let changed = playlist(store, new.id).await;
    assert_eq!(updated, changed);
    assert_eq!(
        (updated.name.as_str(), updated.description.as_deref(), updated.public),
        ("Night drive", Some("Road trip, described"), true),
        "only the name changes"
    );
    assert_eq!((updated.version, updated.tracks_total, updated.updated_at), (1, 2, t1));
    let edit = PlaylistEdit {
        name: None,
        description: Some("Songs for the night".to_owned()),
        public: Some(false),
    };
    let updated =
        store.update_playlist(new.id, &edit, t1 + secs(1), &any_event()).await.unwrap().unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.description.as_deref(), updated.public, updated.version),
        ("Night drive", Some("Songs for the night"), false, 1),
        "the version stays"
    );
    assert_eq!(updated.created_at, t0);
    assert_eq!(store.update_playlist(Uuid::now_v7(), &edit, t1, &any_event()).await.unwrap(), None);

    let follower = Uuid::now_v7();
    store.follow(follower, new.id, t1, &any_event()).await.unwrap();
    assert!(store.delete_playlist(new.id).await.unwrap());
    assert_eq!(store.playlist(new.id).await.unwrap(), None);
    assert_eq!(store.entries(new.id, 10, 0).await.unwrap(), (Vec::new(), 0), "entries go too");
    assert!(!store.follows(follower, new.id).await.unwrap(), "and follows");
    assert!(!store.delete_playlist(new.id).await.unwrap(), "nothing left to delete");
    assert_eq!(playlist(store, private.id).await.name, "B", "the other playlist stays");
}

/// A deleted account's playlists go, with their entries and followers; so do its own
/// follows and likes. Everyone else's stay. A redelivered event changes nothing more.
async fn a_deleted_users_playlists_follows_and_likes_go(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let t0 = now();
    let (gone, stays) = (Uuid::now_v7(), Uuid::now_v7());
    let theirs = created(store, gone, t0).await;
    let kept = created(store, stays, t0).await;
    store.follow(stays, theirs.id, t0, &any_event()).await.unwrap();
    store.follow(gone, kept.id, t0, &any_event()).await.unwrap();
    let track = published(store, 1).await[0].id;
    for user in [gone, stays] {
        store.like(user, track, t0, &liked_event(user, track, t0)).await.unwrap();
    }

    let event = Uuid::now_v7();
    store.forget_user("playlist.test", event, gone).await.unwrap();
    store.forget_user("playlist.test", event, gone).await.unwrap();
    assert_eq!(store.playlist(theirs.id).await.unwrap(), None);
    assert!(!store.follows(stays, theirs.id).await.unwrap(), "its followers' follows go");
    assert_eq!(store.playlists_of(stays, 10, 0).await.unwrap().1, 1, "only their own left");
    assert!(!store.follows(gone, kept.id).await.unwrap());
    assert_eq!(store.likes(gone, 10, 0).await.unwrap().1, 0);
    assert_eq!(store.likes(stays, 10, 0).await.unwrap().1, 1, "another user's like stays");
    assert_eq!(playlist(store, kept.id).await.owner_id, stays);
}

async fn playlists_of_lists_own_and_followed_newest_first(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let t0 = now();
    let (me, friend) = (Uuid::now_v7(), Uuid::now_v7());
    let mine_old = created(store, me, t0).await;
    let mine_new = created(store, me, t0 + secs(20)).await;
    let theirs_a = created(store, friend, t0 - secs(100)).await;
    let theirs_b = created(store, friend, t0 + secs(40)).await;
    let unfollowed = created(store, friend, t0 + secs(50)).await;

    store.follow(me, theirs_a.id, t0 + secs(10), &any_event()).await.unwrap();
    store.follow(me, theirs_a.id, t0 + secs(90), &any_event()).await.unwrap();
    store.follow(me, theirs_b.id, t0 + secs(30), &any_event()).await.unwrap();
    store.follow(me, mine_old.id, t0 + secs(60), &any_event()).await.unwrap();
    store.follow(me, Uuid::now_v7(), t0, &any_event()).await.unwrap();
    assert!(store.follows(me, theirs_a.id).await.unwrap());
    assert!(!store.follows(me, unfollowed.id).await.unwrap());
    assert!(!store.follows(friend, theirs_a.id).await.unwrap(), "owning is not following");

    let listed = |page: Vec<(Playlist, bool)>| -> Vec<(Uuid, bool)> {
        page.into_iter().map(|(playlist, followed)| (playlist.id, followed)).collect()
    };
    let (page, total) = store.playlists_of(me, 10, 0).await.unwrap();
    assert_eq!(
        listed(page.clone()),
        [(theirs_b.id, true), (mine_new.id, false), (theirs_a.id, true), (mine_old.id, false)],
        "by creation or by the first follow, newest first; one's own listed once"
    );
    assert_eq!(total, 4);
    assert_eq!(page[1].0, mine_new, "whole playlists");
    let (page, total) = store.playlists_of(me, 2, 1).await.unwrap();
    assert_eq!(listed(page), [(mine_new.id, false), (theirs_a.id, true)]);
    assert_eq!(total, 4);

    store.unfollow(me, theirs_b.id, &any_event()).await.unwrap();
    store.unfollow(me, theirs_b.id, &any_event()).await.unwrap();
    let (page, total) = store.playlists_of(me, 10, 0).await.unwrap();
    assert_eq!(listed(page), [(mine_new.id, false), (theirs_a.id, true), (mine_old.id, false)]);
    assert_eq!(total, 3);

    // Made private, a followed playlist is its owner's alone; made public again, it is
    // listed to its followers again.
    let private = PlaylistEdit { public: Some(false), ..PlaylistEdit::default() };
    store
        .update_playlist(theirs_a.id, &private, t0 + secs(95), &any_event())
        .await
        .unwrap()
        .unwrap();
    let (page, total) = store.playlists_of(me, 10, 0).await.unwrap();
    assert_eq!((listed(page), total), (vec![(mine_new.id, false), (mine_old.id, false)], 2));
    let (_, total) = store.playlists_of(friend, 10, 0).await.unwrap();
    assert_eq!(total, 3, "the owner still has it");
    let public = PlaylistEdit { public: Some(true), ..PlaylistEdit::default() };
    store
        .update_playlist(theirs_a.id, &public, t0 + secs(96), &any_event())
        .await
        .unwrap()
        .unwrap();
    let (_, total) = store.playlists_of(me, 10, 0).await.unwrap();
    assert_eq!(total, 3);

    let (page, total) = store.playlists_of(friend, 10, 0).await.unwrap();
    assert_eq!(
        listed(page),
        [(unfollowed.id, false), (theirs_b.id, false), (theirs_a.id, false)],
        "another user's list"
    );
    assert_eq!(total, 3);
    assert_eq!(store.playlists_of(Uuid::now_v7(), 10, 0).await.unwrap(), (Vec::new(), 0));
}

async fn tracks_are_added_at_the_end_and_at_a_position(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let t0 = now();
    let list = created(store, Uuid::now_v7(), t0).await;
    let tracks = published(store, 7).await;
    let t = ids(&tracks);
    assert!(order(store, list.id).await.is_empty());

    let added_at = t0 + secs(5);
    let add = TrackChange::Add { track_ids: t[..3].to_vec(), position: None };
    assert_eq!(
        store.change_tracks(list.id, None, &add, MAX_TRACKS, added_at, &any_event()).await.unwrap(),
        1
    );
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 1, 2]));
    let read = playlist(store, list.id).await;
    assert_eq!((read.version, read.tracks_total, read.updated_at), (1, 3, added_at));

    assert_eq!(self::add(store, list.id, &t[3..5], Some(1)).await, 2);
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 3, 4, 1, 2]));
    assert_eq!(self::add(store, list.id, &t[5..6], Some(5)).await, 3, "at the length: the end");
    assert_eq!(self::add(store, list.id, &t[6..7], Some(0)).await, 4);
    assert_eq!(self::add(store, list.id, &t[0..1], Some(2)).await, 5, "a track twice");
    let expected = picked(&t, &[6, 0, 0, 3, 4, 1, 2, 5]);
    assert_eq!(order(store, list.id).await, expected);

    let (entries, total) = store.entries(list.id, 3, 2).await.unwrap();
    assert_eq!(total, 8);
    let page: Vec<(u64, Uuid)> = entries.iter().map(|e| (e.position, e.track.id)).collect();
    assert_eq!(page, [(2, t[0]), (3, t[3]), (4, t[4])], "positions count from the offset");
    assert_eq!(entries[1].track, tracks[3], "the summary comes with the entry");
    assert_eq!(entries[1].added_at, entries[2].added_at, "added together");
    let (first, _) = store.entries(list.id, 2, 0).await.unwrap();
    assert_eq!(first[1].added_at, added_at);
    assert_eq!(store.entries(list.id, 5, 8).await.unwrap(), (Vec::new(), 8));

    let past = TrackChange::Add { track_ids: t[..1].to_vec(), position: Some(9) };
    let error = store
        .change_tracks(list.id, None, &past, MAX_TRACKS, now(), &any_event())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ChangeError::Position(PositionError::PastEnd { position: 9, len: 8 })),
        "{error:?}"
    );
    assert_eq!(playlist(store, list.id).await.version, 5, "a refused change bumps nothing");
    assert_eq!(order(store, list.id).await, expected);
}

async fn positions_are_removed(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let list = created(store, Uuid::now_v7(), now()).await;
    let t = ids(&published(store, 6).await);
    add(store, list.id, &t, None).await;

    let removed = TrackChange::Remove { positions: vec![4, 0, 2, 4] };
    assert_eq!(change(store, list.id, removed).await, 2);
    assert_eq!(order(store, list.id).await, picked(&t, &[1, 3, 5]));
    assert_eq!(change(store, list.id, TrackChange::Remove { positions: vec![2] }).await, 3);
    assert_eq!(order(store, list.id).await, picked(&t, &[1, 3]));

    for (positions, expected) in [
        (vec![2], PositionError::PastEnd { position: 2, len: 2 }),
        (vec![0, 7], PositionError::PastEnd { position: 7, len: 2 }),
        (Vec::new(), PositionError::Empty),
    ] {
        let change = TrackChange::Remove { positions };
        let error =
            store.change_tracks(list.id, None, &change, MAX_TRACKS, now(), &any_event()).await;
        assert!(
            matches!(&error, Err(ChangeError::Position(found)) if *found == expected),
            "{change:?}: {error:?}"
        );
    }
    assert_eq!(playlist(store, list.id).await.version, 3);
    assert_eq!(order(store, list.id).await, picked(&t, &[1, 3]), "nothing removed");

    assert_eq!(change(store, list.id, TrackChange::Remove { positions: vec![1, 0] }).await, 4);
    assert!(order(store, list.id).await.is_empty());
    add(store, list.id, &t[..2], None).await;
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 1]), "an emptied list fills again");
}

async fn ranges_are_reordered(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let list = created(store, Uuid::now_v7(), now()).await;
    let t = ids(&published(store, 6).await);
    add(store, list.id, &t, None).await;

    assert_eq!(change(store, list.id, reorder(0, 1, 3)).await, 2, "the first before the fourth");
    assert_eq!(order(store, list.id).await, picked(&t, &[1, 2, 0, 3, 4, 5]));
    assert_eq!(change(store, list.id, reorder(4, 2, 0)).await, 3, "the last two to the front");
    assert_eq!(order(store, list.id).await, picked(&t, &[4, 5, 1, 2, 0, 3]));
    assert_eq!(change(store, list.id, reorder(1, 3, 6)).await, 4, "a range to the end");
    assert_eq!(order(store, list.id).await, picked(&t, &[4, 0, 3, 5, 1, 2]));
    assert_eq!(change(store, list.id, reorder(2, 2, 3)).await, 5, "into itself: no move");
    assert_eq!(order(store, list.id).await, picked(&t, &[4, 0, 3, 5, 1, 2]));

    for (change, expected) in [
        (reorder(5, 2, 0), PositionError::RangeOutside { start: 5, end: 7, len: 6 }),
        (reorder(0, 1, 7), PositionError::PastEnd { position: 7, len: 6 }),
        (reorder(0, 0, 3), PositionError::RangeOutside { start: 0, end: 0, len: 6 }),
    ] {
        let error =
            store.change_tracks(list.id, None, &change, MAX_TRACKS, now(), &any_event()).await;
        assert!(
            matches!(&error, Err(ChangeError::Position(found)) if *found == expected),
            "{change:?}: {error:?}"
        );
    }
    assert_eq!(playlist(store, list.id).await.version, 5);
    assert_eq!(order(store, list.id).await, picked(&t, &[4, 0, 3, 5, 1, 2]));
}

async fn a_stale_version_changes_nothing(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let list = created(store, Uuid::now_v7(), now()).await;
    let t = ids(&published(store, 4).await);
    add(store, list.id, &t[..2], None).await;
    let before = playlist(store, list.id).await;
    assert_eq!(before.version, 1);

    for expected_version in [0, 2, 17] {
        for change in [
            TrackChange::Add { track_ids: t[2..].to_vec(), position: Some(0) },
            TrackChange::Remove { positions: vec![0] },
            reorder(1, 1, 0),
        ] {
            let error = store
                .change_tracks(
                    list.id,
                    Some(expected_version),
                    &change,
                    MAX_TRACKS,
                    now(),
                    &any_event(),
                )
                .await
                .unwrap_err();
            assert!(
                matches!(error, ChangeError::Stale),
                "{expected_version} {change:?}: {error:?}"
            );
        }
    }
    assert_eq!(playlist(store, list.id).await, before, "version and time unchanged");
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 1]), "entries unchanged");

    let at = now() + secs(1);
    let added = TrackChange::Add { track_ids: t[2..3].to_vec(), position: Some(0) };
    assert_eq!(
        store.change_tracks(list.id, Some(1), &added, MAX_TRACKS, at, &any_event()).await.unwrap(),
        2
    );
    assert_eq!(order(store, list.id).await, picked(&t, &[2, 0, 1]));
    let error = store
        .change_tracks(list.id, Some(1), &reorder(0, 1, 3), MAX_TRACKS, at, &any_event())
        .await;
    assert!(matches!(error, Err(ChangeError::Stale)), "the old snapshot is stale now: {error:?}");
    assert_eq!(
        store
            .change_tracks(list.id, Some(2), &reorder(0, 1, 3), MAX_TRACKS, at, &any_event())
            .await
            .unwrap(),
        3
    );
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 1, 2]));

    let missing = Uuid::now_v7();
    for expected_version in [None, Some(0)] {
        let error = store
            .change_tracks(missing, expected_version, &added, MAX_TRACKS, at, &any_event())
            .await
            .unwrap_err();
        assert!(matches!(error, ChangeError::NotFound), "{error:?}");
    }
}

async fn unknown_tracks_are_listed_and_change_nothing(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let list = created(store, Uuid::now_v7(), now()).await;
    let t = ids(&published(store, 3).await);
    add(store, list.id, &t[..1], None).await;
    let before = playlist(store, list.id).await;

    let (ghost, phantom) = (Uuid::now_v7(), Uuid::now_v7());
    let change =
        TrackChange::Add { track_ids: vec![t[1], ghost, t[2], phantom, ghost], position: Some(0) };
    let error = store
        .change_tracks(list.id, None, &change, MAX_TRACKS, now(), &any_event())
        .await
        .unwrap_err();
    match error {
        ChangeError::UnknownTracks(unknown) => assert_eq!(unknown, [ghost, phantom]),
        other => panic!("expected unknown tracks, got {other:?}"),
    }
    assert_eq!(playlist(store, list.id).await, before, "the version bump is rolled back");
    assert_eq!(order(store, list.id).await, picked(&t, &[0]), "nothing added");

    store.upsert_summaries(&[TrackSummary { id: ghost, ..track(9) }]).await.unwrap();
    let change = TrackChange::Add { track_ids: vec![ghost, t[1]], position: None };
    let error =
        store.change_tracks(list.id, Some(1), &change, MAX_TRACKS, now(), &any_event()).await;
    assert_eq!(error.unwrap(), 2, "known once projected");
    assert_eq!(order(store, list.id).await, vec![t[0], ghost, t[1]]);
}

async fn a_full_playlist_takes_no_more(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let list = created(store, Uuid::now_v7(), now()).await;
    let t = ids(&published(store, 5).await);
    let add =
        |track_ids: &[Uuid]| TrackChange::Add { track_ids: track_ids.to_vec(), position: None };

    assert_eq!(
        store.change_tracks(list.id, None, &add(&t[..2]), 3, now(), &any_event()).await.unwrap(),
        1
    );
    let error = store
        .change_tracks(list.id, None, &add(&t[2..4]), 3, now(), &any_event())
        .await
        .unwrap_err();
    assert!(matches!(error, ChangeError::Full(3)), "{error:?}");
    assert_eq!(playlist(store, list.id).await.version, 1);
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 1]));

    assert_eq!(
        store.change_tracks(list.id, None, &add(&t[2..3]), 3, now(), &any_event()).await.unwrap(),
        2
    );
    let error = store
        .change_tracks(list.id, None, &add(&t[3..4]), 3, now(), &any_event())
        .await
        .unwrap_err();
    assert!(matches!(error, ChangeError::Full(3)), "{error:?}");
    let unknown = add(&[Uuid::now_v7()]);
    let error =
        store.change_tracks(list.id, None, &unknown, 3, now(), &any_event()).await.unwrap_err();
    assert!(matches!(error, ChangeError::Full(3)), "full whatever the tracks: {error:?}");
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 1, 2]));

    let moved = store.change_tracks(list.id, None, &reorder(0, 1, 3), 3, now(), &any_event()).await;
    assert_eq!(moved.unwrap(), 3, "a full list still reorders");
    let removed = TrackChange::Remove { positions: vec![0] };
    assert_eq!(
        store.change_tracks(list.id, None, &removed, 3, now(), &any_event()).await.unwrap(),
        4
    );
    assert_eq!(
        store.change_tracks(list.id, None, &add(&t[4..5]), 3, now(), &any_event()).await.unwrap(),
        5
    );
    assert_eq!(order(store, list.id).await, picked(&t, &[2, 0, 4]));
}

async fn summaries_are_inserted_or_replaced(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let tracks = published(store, 3).await;
    let mut found = store.summaries(&[tracks[2].id, Uuid::now_v7(), tracks[0].id]).await.unwrap();
    found.sort_by_key(|summary| summary.id);
    assert_eq!(found, [tracks[0].clone(), tracks[2].clone()], "only those projected");
    assert!(store.summaries(&[]).await.unwrap().is_empty());

    let renamed = TrackSummary {
        title: "Renamed".to_owned(),
        album_title: "Reissue".to_owned(),
        duration_ms: 1,
        ..tracks[1].clone()
    };
    let later = TrackSummary { title: "Renamed again".to_owned(), ..renamed.clone() };
    let fresh = track(7);
    store.upsert_summaries(&[renamed, fresh.clone(), later.clone()]).await.unwrap();
    store.upsert_summaries(&[]).await.unwrap();
    let mut found = store.summaries(&[tracks[1].id, fresh.id, tracks[1].id]).await.unwrap();
    found.sort_by_key(|summary| summary.id);
    assert_eq!(found, [later, fresh], "replaced by the last of the batch; each once");

    let many: Vec<TrackSummary> = (0..600).map(track).collect();
    store.upsert_summaries(&many).await.unwrap();
    let found = store.summaries(&ids(&many)).await.unwrap();
    let found: HashSet<Uuid> = found.iter().map(|summary| summary.id).collect();
    assert_eq!(found, ids(&many).into_iter().collect(), "more than one statement's worth");
}

async fn published_and_deleted_tracks_apply_once_per_event(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let t0 = now();
    let summary = track(1);
    let published_event = Uuid::now_v7();
    store.apply_published(CONSUMER, published_event, &summary).await.unwrap();
    let changed = TrackSummary { title: "Changed".to_owned(), ..summary.clone() };
    store.apply_published(CONSUMER, published_event, &changed).await.unwrap();
    assert_eq!(
        store.summaries(&[summary.id]).await.unwrap(),
        std::slice::from_ref(&summary),
        "redelivery"
    );
    store.apply_published("other.consumer", published_event, &changed).await.unwrap();
    assert_eq!(store.summaries(&[summary.id]).await.unwrap(), std::slice::from_ref(&changed));
    store.apply_published(CONSUMER, Uuid::now_v7(), &summary).await.unwrap();
    assert_eq!(store.summaries(&[summary.id]).await.unwrap(), std::slice::from_ref(&summary));

    let doomed = summary.id;
    let t = ids(&published(store, 3).await);
    let (one, two, spared) = (
        created(store, Uuid::now_v7(), t0).await,
        created(store, Uuid::now_v7(), t0).await,
        created(store, Uuid::now_v7(), t0).await,
    );
    add(store, one.id, &[t[0], doomed, t[1], doomed, t[2]], None).await;
    add(store, two.id, &[doomed], None).await;
    add(store, two.id, &[t[0]], None).await;
    add(store, spared.id, &t, None).await;
    let (fan, other_fan) = (Uuid::now_v7(), Uuid::now_v7());
    for (user, track_id) in [(fan, doomed), (fan, t[0]), (other_fan, doomed)] {
        let liked = SongLiked { user_id: user, track_id, liked_at: t0 };
        assert!(store.like(user, track_id, t0, &Envelope::new(&liked, t0)).await.unwrap());
    }
    let drained: Vec<Uuid> = pending(store).await.iter().map(|event| event.id).collect();
    store.mark_published(&drained, t0).await.unwrap();

    let deleted_at = t0 + secs(30);
    let deletion = Uuid::now_v7();
    store.apply_deleted(CONSUMER, deletion, doomed, deleted_at).await.unwrap();
    assert!(store.summaries(&[doomed]).await.unwrap().is_empty(), "the summary goes");
    assert_eq!(order(store, one.id).await, picked(&t, &[0, 1, 2]), "from every playlist");
    assert_eq!(order(store, two.id).await, picked(&t, &[0]));
    let (one_now, two_now) = (playlist(store, one.id).await, playlist(store, two.id).await);
    assert_eq!((one_now.version, one_now.tracks_total, one_now.updated_at), (2, 3, deleted_at));
    assert_eq!((two_now.version, two_now.tracks_total, two_now.updated_at), (3, 1, deleted_at));
    let spared_now = playlist(store, spared.id).await;
    assert_eq!((spared_now.version, spared_now.tracks_total), (1, 3), "not holding it: untouched");
    let (likes, total) = store.likes(fan, 10, 0).await.unwrap();
    let liked: Vec<Uuid> = likes.iter().map(|like| like.track.id).collect();
    assert_eq!((liked, total), (vec![t[0]], 1), "and from likes");
    assert!(store.liked_among(other_fan, &[doomed]).await.unwrap().is_empty());
    assert!(pending(store).await.is_empty(), "a deletion announces nothing");

    // Published again (by a later event), a redelivery of the old deletion changes nothing.
    store.apply_published(CONSUMER, Uuid::now_v7(), &summary).await.unwrap();
    add(store, two.id, &[doomed], Some(0)).await;
    store.apply_deleted(CONSUMER, deletion, doomed, deleted_at + secs(1)).await.unwrap();
    assert_eq!(store.summaries(&[doomed]).await.unwrap(), std::slice::from_ref(&summary));
    assert_eq!(order(store, two.id).await, vec![doomed, t[0]]);
    assert_eq!(playlist(store, two.id).await.version, 4);

    let other = Uuid::now_v7();
    store.apply_deleted(CONSUMER, other, doomed, deleted_at + secs(2)).await.unwrap();
    assert_eq!(order(store, two.id).await, picked(&t, &[0]));
    assert_eq!(playlist(store, two.id).await.version, 5);
    store.apply_deleted(CONSUMER, Uuid::now_v7(), Uuid::now_v7(), deleted_at).await.unwrap();
    assert_eq!(playlist(store, two.id).await.version, 5, "an unknown track changes nothing");
}

fn liked_event(user_id: Uuid, track_id: Uuid, at: DateTime<Utc>) -> Envelope {
    Envelope::new(&SongLiked { user_id, track_id, liked_at: at }, at)
}

fn unliked_event(user_id: Uuid, track_id: Uuid, at: DateTime<Utc>) -> Envelope {
    Envelope::new(&SongUnliked { user_id, track_id, unliked_at: at }, at)
}

async fn a_like_keeps_its_first_time_and_records_one_event(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let t0 = now();
    let user = Uuid::now_v7();
    let song = published(store, 1).await.remove(0);

    let first = liked_event(user, song.id, t0);
    assert!(store.like(user, song.id, t0, &first).await.unwrap(), "new");
    let again = liked_event(user, song.id, t0 + secs(9));
    assert!(!store.like(user, song.id, t0 + secs(9), &again).await.unwrap(), "already liked");
    assert_eq!(
        store.likes(user, 10, 0).await.unwrap(),
        (vec![Like { track: song.clone(), liked_at: t0 }], 1),
        "the first like's time stays"
    );
    assert_eq!(pending(store).await, std::slice::from_ref(&first), "one song.liked");
    assert_eq!(store.liked_among(user, &[song.id]).await.unwrap(), [song.id]);

    let gone = unliked_event(user, song.id, t0 + secs(20));
    assert!(store.unlike(user, song.id, &gone).await.unwrap());
    let twice = unliked_event(user, song.id, t0 + secs(21));
    assert!(!store.unlike(user, song.id, &twice).await.unwrap(), "nothing left to unlike");
    assert_eq!(pending(store).await, [first.clone(), gone.clone()], "one song.unliked");
    assert_eq!(pending(store).await[1].event_type, SongUnliked::TYPE);
    assert_eq!(store.likes(user, 10, 0).await.unwrap(), (Vec::new(), 0));
    assert!(store.liked_among(user, &[song.id]).await.unwrap().is_empty());

    let later = t0 + secs(60);
    let relike = liked_event(user, song.id, later);
    assert!(store.like(user, song.id, later, &relike).await.unwrap(), "liked anew");
    assert_eq!(store.likes(user, 10, 0).await.unwrap().0[0].liked_at, later);
    assert_eq!(pending(store).await, [first, gone, relike]);
}

async fn likes_are_listed_newest_first(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let t0 = now();
    let (user, other) = (Uuid::now_v7(), Uuid::now_v7());
    let songs = published(store, 5).await;
    let at = [t0 + secs(3), t0 + secs(1), t0 + secs(5), t0 + secs(1), t0 + secs(2)];
    for (song, at) in songs.iter().zip(at) {
        assert!(store.like(user, song.id, at, &liked_event(user, song.id, at)).await.unwrap());
    }
    let event = liked_event(other, songs[0].id, t0);
    assert!(store.like(other, songs[0].id, t0, &event).await.unwrap());

    let (likes, total) = store.likes(user, 10, 0).await.unwrap();
    let listed: Vec<(Uuid, DateTime<Utc>)> =
        likes.iter().map(|like| (like.track.id, like.liked_at)).collect();
    // Tracks 1 and 3 were liked at the same time: the smaller id first.
    let (tie_first, tie_second) = if songs[1].id < songs[3].id { (1, 3) } else { (3, 1) };
    let expected: Vec<(Uuid, DateTime<Utc>)> =
        [2, 0, 4, tie_first, tie_second].iter().map(|n| (songs[*n].id, at[*n])).collect();
    assert_eq!((listed, total), (expected.clone(), 5));
    assert_eq!(likes[0].track, songs[2], "with the summary");

    let (page, total) = store.likes(user, 2, 3).await.unwrap();
    let listed: Vec<(Uuid, DateTime<Utc>)> =
        page.iter().map(|like| (like.track.id, like.liked_at)).collect();
    assert_eq!((listed, total), (expected[3..].to_vec(), 5));
    assert_eq!(store.likes(other, 10, 0).await.unwrap().1, 1);
    assert_eq!(store.likes(Uuid::now_v7(), 10, 0).await.unwrap(), (Vec::new(), 0));

    let unliked = Uuid::now_v7();
    let mut among =
        store.liked_among(user, &[songs[4].id, unliked, songs[1].id, songs[4].id]).await.unwrap();
    among.sort();
    let mut expected = vec![songs[1].id, songs[4].id];
    expected.sort();
    assert_eq!(among, expected, "each liked one once");
    assert_eq!(store.liked_among(other, &ids(&songs)).await.unwrap(), [songs[0].id]);
    assert!(store.liked_among(user, &[]).await.unwrap().is_empty());
}

async fn the_outbox_drains(store: Arc<dyn PlaylistStore>) {
    let store = store.as_ref();
    let t0 = now();
    let new = new_playlist(Uuid::now_v7(), "First", t0);
    let first = created_event(&new);
    store.create_playlist(&new, &first).await.unwrap();
    let user = Uuid::now_v7();
    let song = published(store, 1).await.remove(0);
    let second = liked_event(user, song.id, t0);
    store.like(user, song.id, t0, &second).await.unwrap();
    let events = vec![first, second];

    assert_eq!(OutboxStore::pending(store, 10).await.unwrap(), events, "in order");
    assert_eq!(OutboxStore::pending(store, 1).await.unwrap(), events[..1]);

    let published_at = now();
    store.mark_published(&[events[0].id], published_at).await.unwrap();
    assert_eq!(OutboxStore::pending(store, 10).await.unwrap(), events[1..]);
    store.mark_published(&[events[1].id], published_at).await.unwrap();
    store.mark_published(&[events[1].id], published_at + secs(9)).await.unwrap();
    assert!(OutboxStore::pending(store, 10).await.unwrap().is_empty());

    assert_eq!(store.prune_published(published_at).await.unwrap(), 0, "nothing older");
    assert_eq!(store.prune_published(published_at + secs(1)).await.unwrap(), 1);
    assert_eq!(store.prune_published(published_at + secs(10)).await.unwrap(), 1);
    assert_eq!(store.prune_published(published_at + secs(10)).await.unwrap(), 0);
}

/// What one of the concurrent clients did: each change with its result.
type Outcome = Vec<(TrackChange, Result<i64, String>)>;

async fn concurrent_changes_to_one_playlist_each_land_once(store: Arc<dyn PlaylistStore>) {
    const CLIENTS: usize = 20;
    const APPENDS: usize = 3;
    let list_id = created(store.as_ref(), Uuid::now_v7(), now()).await.id;
    let seed = ids(&published(store.as_ref(), 10).await);
    add(store.as_ref(), list_id, &seed, None).await;
    let own: Vec<Vec<Uuid>> =
        (0..CLIENTS).map(|_| (0..APPENDS).map(|n| track(n).id).collect::<Vec<Uuid>>()).collect();
    let all: Vec<TrackSummary> =
        own.iter().flatten().map(|id| TrackSummary { id: *id, ..track(0) }).collect();
    store.upsert_summaries(&all).await.unwrap();

    let start = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = own
        .iter()
        .cloned()
        .enumerate()
        .map(|(n, tracks)| {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                let mut outcome: Outcome = Vec::new();
                start.wait().await;
                for track_id in tracks {
                    // Some clients send the snapshot they read; others change whatever is.
                    let expected = match n % 5 {
                        1 => Some(store.playlist(list_id).await.unwrap().unwrap().version),
                        _ => None,
                    };
                    let add = TrackChange::Add { track_ids: vec![track_id], position: None };
                    let result = store
                        .change_tracks(list_id, expected, &add, MAX_TRACKS, now(), &any_event())
                        .await;
                    outcome.push((add, result.map_err(|error| format!("{error:?}"))));
                    if n % 4 == 0 {
                        let moved = reorder(0, 2, 7);
                        let result = store
                            .change_tracks(list_id, None, &moved, MAX_TRACKS, now(), &any_event())
                            .await;
                        outcome.push((moved, result.map_err(|error| format!("{error:?}"))));
                    }
                }
                outcome
            })
        })
        .collect();

    let mut versions = Vec::new();
    let mut added = Vec::new();
    let mut stale = Vec::new();
    for client in clients {
        for (change, result) in client.await.unwrap() {
            match (change, result) {
                (TrackChange::Add { track_ids, .. }, Ok(version)) => {
                    versions.push(version);
                    added.extend(track_ids);
                }
                (_, Ok(version)) => versions.push(version),
                (TrackChange::Add { track_ids, .. }, Err(error)) if error == "Stale" => {
                    stale.extend(track_ids)
                }
                (change, Err(error)) => panic!("{change:?} failed: {error}"),
            }
        }
    }

    versions.sort_unstable();
    let expected_versions: Vec<i64> = (2..2 + versions.len() as i64).collect();
    assert_eq!(versions, expected_versions, "every change got a version of its own");
    let read = playlist(store.as_ref(), list_id).await;
    assert_eq!(read.version, 1 + versions.len() as i64, "every change bumped once");
    assert_eq!(added.len() + stale.len(), CLIENTS * APPENDS);
    let unconditional = (0..CLIENTS).filter(|n| n % 5 != 1).count() * APPENDS;
    assert!(added.len() >= unconditional, "changes without a snapshot all land");

    let listed = order(store.as_ref(), list_id).await;
    assert_eq!(listed.len(), seed.len() + added.len(), "each landed add once, nothing else");
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for track_id in &listed {
        *counts.entry(*track_id).or_default() += 1;
    }
    for track_id in seed.iter().chain(&added) {
        assert_eq!(counts.get(track_id), Some(&1), "{track_id} listed once");
    }
    for track_id in &stale {
        assert_eq!(counts.get(track_id), None, "a stale add left nothing behind");
    }
}

async fn a_reorder_writes_only_the_moved_rows(fixture: &StoreFixture) {
    const TRACKS: usize = 2_000;
    let store = fixture.store();
    let store = store.as_ref();
    let list = created(store, Uuid::now_v7(), now()).await;
    let t = ids(&published(store, TRACKS).await);
    add(store, list.id, &t, None).await;
    let before = fixture.sort_keys(list.id).await;
    let expected: Vec<(Uuid, i64)> =
        t.iter().copied().zip((1..=TRACKS as i64).map(|n| n * GAP)).collect();
    assert_eq!(before, expected, "appended with the full gap");

    assert_eq!(change(store, list.id, reorder(1_500, 5, 10)).await, 2);
    let after: HashMap<Uuid, i64> = fixture.sort_keys(list.id).await.into_iter().collect();
    let moved: HashSet<Uuid> = t[1_500..1_505].iter().copied().collect();
    for (track_id, key) in &before {
        if moved.contains(track_id) {
            assert!((10 * GAP..11 * GAP).contains(&after[track_id]), "moved between 9 and 10");
        } else {
            assert_eq!(after[track_id], *key, "an unmoved entry keeps its key");
        }
    }
    let mut expected: Vec<Uuid> = t.clone();
    let range: Vec<Uuid> = expected.drain(1_500..1_505).collect();
    expected.splice(10..10, range);
    assert_eq!(order(store, list.id).await, expected);

    // A move towards the end writes the moved rows only, too.
    let before: HashMap<Uuid, i64> = fixture.sort_keys(list.id).await.into_iter().collect();
    assert_eq!(change(store, list.id, reorder(0, 3, TRACKS)).await, 3);
    let after: HashMap<Uuid, i64> = fixture.sort_keys(list.id).await.into_iter().collect();
    let changed: HashSet<Uuid> =
        before.iter().filter(|(id, key)| after[*id] != **key).map(|(id, _)| *id).collect();
    assert_eq!(changed, expected[..3].iter().copied().collect(), "only the three moved");
    expected.rotate_left(3);
    assert_eq!(order(store, list.id).await, expected);
}

async fn inserting_where_the_gap_is_used_up_renumbers(fixture: &StoreFixture) {
    let store = fixture.store();
    let store = store.as_ref();
    let list = created(store, Uuid::now_v7(), now()).await;
    let t = ids(&published(store, 40).await);
    add(store, list.id, &t[..2], None).await;
    let mut model = t[..2].to_vec();
    let last_key = |keys: &[(Uuid, i64)]| keys.iter().find(|(id, _)| *id == t[1]).map(|k| k.1);
    let first_last_key = last_key(&fixture.sort_keys(list.id).await);
    assert_eq!(first_last_key, Some(2 * GAP));

    // Each insert halves the gap before the last entry: about twenty fit before it is used
    // up and the list is renumbered; then it goes on.
    for (n, track_id) in t[2..30].iter().enumerate() {
        add(store, list.id, &[*track_id], Some(model.len() - 1)).await;
        model.insert(model.len() - 1, *track_id);
        assert_eq!(order(store, list.id).await, model, "after {} inserts", n + 1);
    }
    let keys = fixture.sort_keys(list.id).await;
    assert_ne!(last_key(&keys), first_last_key, "the list was renumbered");
    assert!(keys.windows(2).all(|pair| pair[0].1 < pair[1].1));

    // The same at the front, where keys go below zero, a few at a time.
    for chunk in t[30..].chunks(3) {
        add(store, list.id, chunk, Some(0)).await;
        model.splice(0..0, chunk.iter().copied());
        assert_eq!(order(store, list.id).await, model);
    }
    assert_eq!(playlist(store, list.id).await.version, 1 + 28 + 4);
}

async fn renumbering_onto_keys_in_use_keeps_the_order(fixture: &StoreFixture) {
    let store = fixture.store();
    let store = store.as_ref();
    let list = created(store, Uuid::now_v7(), now()).await;
    let t = ids(&published(store, 5).await);
    add(store, list.id, &t[..4], None).await;

    // Keys with no room between the first two, and renumbered keys that others hold now.
    let crowd = || async {
        for (track_id, key) in [(t[1], GAP + 1), (t[2], 2 * GAP), (t[3], 3 * GAP)] {
            fixture.set_sort_key(list.id, track_id, key).await;
        }
    };
    crowd().await;
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 1, 2, 3]));
    assert_eq!(change(store, list.id, reorder(3, 1, 1)).await, 2);
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 3, 1, 2]));
    let keys: Vec<i64> = fixture.sort_keys(list.id).await.iter().map(|(_, key)| *key).collect();
    assert_eq!(keys, [GAP, 2 * GAP, 3 * GAP, 4 * GAP], "renumbered");

    // Back to the first order (one key at a time, each free when taken), then crowded.
    for (track_id, key) in [(t[3], 5 * GAP), (t[1], 2 * GAP), (t[2], 3 * GAP), (t[3], 4 * GAP)] {
        fixture.set_sort_key(list.id, track_id, key).await;
    }
    crowd().await;
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 1, 2, 3]));
    assert_eq!(add(store, list.id, &t[4..5], Some(1)).await, 3);
    assert_eq!(order(store, list.id).await, picked(&t, &[0, 4, 1, 2, 3]));
    let keys: Vec<i64> = fixture.sort_keys(list.id).await.iter().map(|(_, key)| *key).collect();
    assert_eq!(keys, [GAP, 2 * GAP, 3 * GAP, 4 * GAP, 5 * GAP], "renumbered around the insert");
}

/// An event to record with a change; its content does not matter to the store.
fn any_event() -> Envelope {
    let at = now();
    let changed = bus::events::PlaylistChanged {
        playlist_id: Uuid::now_v7(),
        owner_id: Uuid::now_v7(),
        name: "Any".into(),
        public: true,
        change: bus::events::PlaylistChange::Tracks,
        changed_at: at,
    };
    Envelope::new(&changed, at)
}
