//! One contract for every `CatalogStore` adapter: each case below runs once on SQLite and
//! once on PostgreSQL (`store_contract::sqlite::*`, `store_contract::postgres::*`), each
//! time on a fresh database.

use std::sync::Arc;

use bus::{
    Envelope, Event,
    events::{
        RenditionInfo, TrackDeleted, TrackPublished, TrackTranscoded, TrackUploaded,
        TranscodeOutcome,
    },
    outbox::OutboxStore,
};
use catalog::{
    domain::{
        AudioFormat, NewTrack, Track, TrackEdit, TrackSort, TrackStatus,
        search::{Field, Posting, trigrams},
    },
    store::{CatalogStore, StoreError},
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

macro_rules! store_contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = super::StoreFixture::sqlite().await;
                    super::$case(fixture.store()).await;
                    fixture.finish().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = super::StoreFixture::postgres().await;
                    super::$case(fixture.store()).await;
                    fixture.finish().await;
                }
            )*
        }
    };
}

store_contract!(
    tracks_are_created_and_read_back,
    duplicate_hashes_conflict,
    tracks_are_found_by_hash,
    tracks_are_sorted_and_paged,
    tracks_are_edited_and_moved,
    concurrent_edits_and_deletions_all_succeed,
    deleting_records_the_event_and_prunes_empty_albums_and_artists,
    albums_and_artists_are_listed_in_order,
    unready_tracks_are_listed_to_their_uploader_alone,
    an_uploaders_tracks_are_found_and_disowned,
    the_outbox_drains,
    uploads_are_announced_with_the_track,
    a_ready_transcode_is_applied_once_and_published,
    a_failed_transcode_keeps_its_reason,
    a_result_for_a_deleted_track_changes_nothing,
    indexed_words_are_found_by_prefix_and_by_trigrams,
    tracks_are_read_by_word_and_field_in_pages,
    postings_are_read_word_by_word,
);

/// A store on a database of its own, removed again by [`StoreFixture::finish`].
pub(crate) struct StoreFixture {
    store: Arc<dyn CatalogStore>,
    database: testkit::TestDatabase,
}

impl StoreFixture {
    pub(crate) async fn sqlite() -> Self {
        Self::open(testkit::TestDatabase::sqlite().await).await
    }

    pub(crate) async fn postgres() -> Self {
        Self::open(testkit::TestDatabase::postgres().await).await
    }

    async fn open(database: testkit::TestDatabase) -> Self {
        let store = catalog::store::open(database.pool().clone())
            .await
            .unwrap_or_else(|error| panic!("cannot migrate the test database: {error}"));
        Self { store, database }
    }

    pub(crate) fn store(&self) -> Arc<dyn CatalogStore> {
        Arc::clone(&self.store)
    }

    /// Drops the store, then the database (a failed test leaves it for a look).
    pub(crate) async fn finish(self) {
        drop(self.store);
        self.database.finish().await;
    }
}

/// Now at the millisecond precision the service keeps.
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::milliseconds(1)).expect("truncate to milliseconds")
}

pub(crate) fn new_track(title: &str, artist: &str, album: &str) -> NewTrack {
    NewTrack {
        id: Uuid::now_v7(),
        title: title.to_owned(),
        artist_name: artist.to_owned(),
        album_title: album.to_owned(),
        track_number: Some(1),
        disc_number: Some(1),
        year: Some(1964),
        genre: Some("Jazz".to_owned()),
        duration_ms: 187_000,
        content_hash: testkit::unique("sha256"),
        format: AudioFormat::Flac,
        size_bytes: 24_000_000,
        uploaded_by: Uuid::now_v7(),
        created_at: now(),
    }
}

pub(crate) async fn stored(store: &dyn CatalogStore, new: NewTrack) -> Track {
    store.create_track(&new, &uploaded(&new)).await.expect("create a track")
}

/// A track stored and made ready, as a finished transcode leaves it.
pub(crate) async fn ready(store: &dyn CatalogStore, new: NewTrack) -> Track {
    let track = stored(store, new).await;
    let outcome = TranscodeOutcome::Ready {
        renditions: ladder(),
        loudness_lufs: None,
        duration_ms: track.duration_ms,
    };
    store
        .apply_transcode("catalog.test", Uuid::now_v7(), &transcoded(track.id, outcome), &published)
        .await
        .expect("apply a transcode")
        .expect("the track is ready")
}

fn uploaded(new: &NewTrack) -> Envelope {
    let event = TrackUploaded {
        track_id: new.id,
        source_key: format!("tracks/{}/original.flac", new.id),
        format: "flac".to_owned(),
        uploaded_at: new.created_at,
    };
    Envelope::new(&event, new.created_at)
}

fn transcoded(track_id: Uuid, outcome: TranscodeOutcome) -> TrackTranscoded {
    TrackTranscoded { track_id, outcome, finished_at: now() }
}

fn ladder() -> Vec<RenditionInfo> {
    [64, 128, 256]
        .into_iter()
        .map(|bitrate_kbps| RenditionInfo { bitrate_kbps, codec: "mp4a.40.2".to_owned() })
        .collect()
}

/// What the catalog service publishes for a ready track, reduced to what the test checks.
fn published(track: &Track) -> Envelope {
    let event = TrackPublished {
        track_id: track.id,
        title: track.title.clone(),
        artist: bus::events::ArtistRef { id: track.artist.id, name: track.artist.name.clone() },
        album: bus::events::AlbumRef { id: track.album.0, title: track.album.1.clone() },
        duration_ms: track.duration_ms,
        published_at: now(),
        genre: track.genre.clone(),
    };
    Envelope::new(&event, now())
}

async fn uploads_are_announced_with_the_track(store: Arc<dyn CatalogStore>) {
    let track = stored(store.as_ref(), new_track("So What", "Miles Davis", "Kind of Blue")).await;
    let events = pending(store.as_ref(), track.id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, TrackUploaded::TYPE);
    let event: TrackUploaded = events[0].decode().unwrap();
    assert_eq!(event.source_key, format!("tracks/{}/original.flac", track.id));
    assert!(track.renditions.is_empty());
    assert_eq!(track.status, TrackStatus::Processing);
}

async fn a_ready_transcode_is_applied_once_and_published(store: Arc<dyn CatalogStore>) {
    let track =
        stored(store.as_ref(), new_track("Blue in Green", "Miles Davis", "Kind of Blue")).await;
    let result = transcoded(
        track.id,
        TranscodeOutcome::Ready {
            renditions: ladder(),
            loudness_lufs: Some(-14.25),
            duration_ms: 337_500,
        },
    );
    let event_id = Uuid::now_v7();
    let ready = store
        .apply_transcode("catalog.test", event_id, &result, &published)
        .await
        .unwrap()
        .expect("the track is updated");
    assert_eq!(ready.status, TrackStatus::Ready);
    assert_eq!(ready.renditions, ladder());
    assert_eq!(ready.loudness_lufs, Some(-14.25));
    assert_eq!(ready.duration_ms, 337_500, "the decoded duration replaces the tagged one");
    assert_eq!(store.track(track.id).await.unwrap(), Some(ready.clone()));

    let again = store.apply_transcode("catalog.test", event_id, &result, &published).await;
    assert_eq!(again.unwrap(), None, "a redelivered result is recognised");
    let announced: Vec<String> =
        pending(store.as_ref(), track.id).await.into_iter().map(|event| event.event_type).collect();
    assert_eq!(announced, [TrackUploaded::TYPE, TrackPublished::TYPE], "published once");
}

async fn a_failed_transcode_keeps_its_reason(store: Arc<dyn CatalogStore>) {
    let track =
        stored(store.as_ref(), new_track("Flamenco Sketches", "Miles Davis", "Kind of Blue")).await;
    let reason = "the file is not decodable audio: Invalid data found".to_owned();
    let result = transcoded(track.id, TranscodeOutcome::Failed { error: reason.clone() });
    let failed = store
        .apply_transcode("catalog.test", Uuid::now_v7(), &result, &published)
        .await
        .unwrap()
        .expect("the track is updated");
    assert_eq!(failed.status, TrackStatus::Failed);
    assert_eq!(failed.error, Some(reason));
    assert!(failed.renditions.is_empty());
    let types: Vec<String> =
        pending(store.as_ref(), track.id).await.into_iter().map(|e| e.event_type).collect();
    assert_eq!(types, [TrackUploaded::TYPE], "a failed track is not published");
}

async fn a_result_for_a_deleted_track_changes_nothing(store: Arc<dyn CatalogStore>) {
    let track = stored(store.as_ref(), new_track("All Blues", "Miles Davis", "Kind of Blue")).await;
    store.delete_track(track.id, &deleted(track.id)).await.unwrap();
    let result = transcoded(track.id, TranscodeOutcome::Failed { error: "late".into() });
    let applied = store.apply_transcode("catalog.test", Uuid::now_v7(), &result, &published).await;
    assert_eq!(applied.unwrap(), None);
    assert_eq!(store.track(track.id).await.unwrap(), None);
}

fn deleted(track_id: Uuid) -> Envelope {
    Envelope::new(&TrackDeleted { track_id, deleted_at: now() }, now())
}

async fn pending(store: &dyn CatalogStore, key: Uuid) -> Vec<Envelope> {
    let key = key.to_string();
    let events = OutboxStore::pending(store, 1_000).await.expect("read the outbox");
    events.into_iter().filter(|event| event.key == key).collect()
}

fn titles(tracks: &[Track]) -> Vec<&str> {
    tracks.iter().map(|track| track.title.as_str()).collect()
}

async fn tracks_are_created_and_read_back(store: Arc<dyn CatalogStore>) {
    let new = new_track("Sinnerman", "Nina Simone", "Pastel Blues");
    let track = stored(store.as_ref(), new.clone()).await;
    assert_eq!(track.id, new.id);
    assert_eq!(track.title, "Sinnerman");
    assert_eq!(track.artist.name, "Nina Simone");
    assert_eq!(track.album.1, "Pastel Blues");
    assert_eq!(track.track_number, Some(1));
    assert_eq!(track.disc_number, Some(1));
    assert_eq!(track.year, Some(1964));
    assert_eq!(track.genre.as_deref(), Some("Jazz"));
    assert_eq!(track.duration_ms, new.duration_ms);
    assert_eq!(track.content_hash, new.content_hash);
    assert_eq!(track.format, AudioFormat::Flac);
    assert_eq!(track.size_bytes, new.size_bytes);
    assert_eq!(track.status, TrackStatus::Processing);
    assert_eq!(track.error, None);
    assert_eq!(track.loudness_lufs, None);
    assert_eq!(track.uploaded_by, new.uploaded_by);
    assert_eq!(track.created_at, new.created_at);
    assert_eq!(store.track(new.id).await.unwrap(), Some(track.clone()));
    assert_eq!(store.track(Uuid::now_v7()).await.unwrap(), None);

    // The same artist and album, spelled differently, are found rather than created again.
    let mut again = new_track("Be My Husband", "nina simone ", " PASTEL blues");
    again.track_number = Some(2);
    let second = ready(store.as_ref(), again).await;
    assert_eq!(second.artist, track.artist, "one artist, whatever the case and spacing");
    assert_eq!(second.album, track.album, "one album");
    let (artists, total) = store.artists(10, 0).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(artists[0].artist, track.artist);
    let (albums, total) = store.albums(10, 0).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(albums[0].tracks, 1, "ready tracks only");
    assert_eq!(albums[0].album.year, Some(1964));

    // The same album title under another artist is another album.
    let cover = stored(store.as_ref(), new_track("Sinnerman", "Hozier", "Pastel Blues")).await;
    assert_ne!(cover.artist.id, track.artist.id);
    assert_ne!(cover.album.0, track.album.0);
}

async fn duplicate_hashes_conflict(store: Arc<dyn CatalogStore>) {
    let first =
        ready(store.as_ref(), new_track("Feeling Good", "Nina Simone", "I Put a Spell on You"))
            .await;
    let mut second = new_track("Feeling Good (copy)", "Someone Else", "Elsewhere");
    second.content_hash = first.content_hash.clone();
    let error = store
        .create_track(&second, &uploaded(&second))
        .await
        .expect_err("the content is stored already");
    assert!(matches!(error, StoreError::Conflict), "expected Conflict, got {error:?}");
    assert_eq!(store.track(second.id).await.unwrap(), None);
    let (artists, total) = store.artists(10, 0).await.unwrap();
    assert_eq!(total, 1, "the refused track's artist was rolled back with it: {artists:?}");
    let (_, total) = store.albums(10, 0).await.unwrap();
    assert_eq!(total, 1, "and its album");
}

async fn tracks_are_found_by_hash(store: Arc<dyn CatalogStore>) {
    let track = stored(store.as_ref(), new_track("Sinnerman", "Nina Simone", "Pastel Blues")).await;
    assert_eq!(store.track_by_hash(&track.content_hash).await.unwrap(), Some(track));
    assert_eq!(store.track_by_hash("sha256-nothing-like-it").await.unwrap(), None);
}

async fn tracks_are_sorted_and_paged(store: Arc<dyn CatalogStore>) {
    let start = now();
    for (seconds, title) in [(0, "beta"), (1, "Alpha"), (2, "gamma"), (3, "Delta")] {
        let mut new = new_track(title, "Nina Simone", "Pastel Blues");
        new.created_at = start + TimeDelta::seconds(seconds);
        ready(store.as_ref(), new).await;
    }
    let anyone = Uuid::now_v7();

    let (recent, total) = store.tracks(TrackSort::Recent, anyone, 10, 0).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(titles(&recent), ["Delta", "gamma", "Alpha", "beta"], "newest first");
    let (by_title, total) = store.tracks(TrackSort::Title, anyone, 10, 0).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(titles(&by_title), ["Alpha", "beta", "Delta", "gamma"], "case-insensitively");

    let (page, total) = store.tracks(TrackSort::Title, anyone, 2, 1).await.unwrap();
    assert_eq!(total, 4, "the total counts every track, not the page");
    assert_eq!(titles(&page), ["beta", "Delta"]);
    let (page, total) = store.tracks(TrackSort::Recent, anyone, 2, 3).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(titles(&page), ["beta"]);
    let (page, _) = store.tracks(TrackSort::Recent, anyone, 2, 10).await.unwrap();
    assert!(page.is_empty());
}

/// Writers queue up behind each other instead of failing: on SQLite a transaction that
/// read before it wrote cannot wait for a lock another writer took meanwhile.
async fn concurrent_edits_and_deletions_all_succeed(store: Arc<dyn CatalogStore>) {
    let mut tracks = Vec::new();
    for n in 0..16 {
        tracks.push(ready(&*store, new_track(&format!("Take {n}"), "Band", "Sessions")).await);
    }
    let writes = tracks.iter().enumerate().map(|(n, track)| {
        let (store, id) = (store.clone(), track.id);
        tokio::spawn(async move {
            if n % 2 == 0 {
                store.delete_track(id, &deleted(id)).await.map(|track| track.is_some())
            } else {
                let edit = TrackEdit { title: Some(format!("Edited {n}")), ..TrackEdit::default() };
                store.update_track(id, &edit, now(), &published).await.map(|track| track.is_some())
            }
        })
    });
    for write in futures::future::join_all(writes).await {
        assert!(write.unwrap().expect("a concurrent write fails"), "the track was there");
    }
    let (left, total) = store.tracks(TrackSort::Title, Uuid::now_v7(), 100, 0).await.unwrap();
    assert_eq!(total, 8);
    assert!(left.iter().all(|track| track.title.starts_with("Edited")), "{:?}", titles(&left));
}

async fn tracks_are_edited_and_moved(store: Arc<dyn CatalogStore>) {
    let track = ready(store.as_ref(), new_track("Sinerman", "Nina Simone", "Pastel Blues")).await;
    let later = now() + TimeDelta::seconds(5);

    let edit = TrackEdit {
        title: Some("Sinnerman".to_owned()),
        genre: Some("Soul".to_owned()),
        year: Some(1965),
        track_number: Some(10),
        ..TrackEdit::default()
    };
    let edited = store.update_track(track.id, &edit, later, &published).await.unwrap().unwrap();
    assert_eq!(edited.title, "Sinnerman");
    assert_eq!(edited.genre.as_deref(), Some("Soul"));
    assert_eq!(edited.year, Some(1965));
    assert_eq!(edited.track_number, Some(10));
    assert_eq!(edited.artist, track.artist, "still the same artist");
    assert_eq!(edited.album, track.album, "on the same album");
    assert_eq!(edited.created_at, track.created_at);
    assert_eq!(store.track(track.id).await.unwrap(), Some(edited.clone()));
    // Read sides learn the new metadata: it is published again with the edit.
    let republished: Vec<TrackPublished> = pending(store.as_ref(), track.id)
        .await
        .into_iter()
        .filter(|event| event.event_type == TrackPublished::TYPE)
        .map(|event| event.decode().unwrap())
        .collect();
    assert_eq!(republished.len(), 2, "once when ready, once when edited");
    assert_eq!(republished[1].title, "Sinnerman");
    assert_eq!(republished[1].genre.as_deref(), Some("Soul"));

    // Another album title moves the track to that album, under its artist.
    let edit =
        TrackEdit { album_title: Some("Live at Montreux".to_owned()), ..TrackEdit::default() };
    let moved = store.update_track(track.id, &edit, later, &published).await.unwrap().unwrap();
    assert_eq!(moved.album.1, "Live at Montreux");
    assert_ne!(moved.album.0, track.album.0);
    assert_eq!(moved.artist, track.artist);
    assert_eq!(moved.title, "Sinnerman", "the rest is kept");
    assert_eq!(store.album(track.album.0).await.unwrap(), None, "the emptied album is gone");
    let (album, tracks) = store.album(moved.album.0).await.unwrap().unwrap();
    assert_eq!(album.artist, track.artist);
    assert_eq!(tracks, vec![moved.clone()]);

    // Another artist moves it to that artist's album of the same title.
    let edit = TrackEdit { artist_name: Some("Hozier".to_owned()), ..TrackEdit::default() };
    let covered = store.update_track(track.id, &edit, later, &published).await.unwrap().unwrap();
    assert_eq!(covered.artist.name, "Hozier");
    assert_eq!(covered.album.1, "Live at Montreux");
    assert_ne!(covered.album.0, moved.album.0);
    let (album, _) = store.album(covered.album.0).await.unwrap().unwrap();
    assert_eq!(album.artist, covered.artist);
    assert_eq!(store.artist(track.artist.id).await.unwrap(), None, "the emptied artist is gone");
    let (_, total) = store.artists(10, 0).await.unwrap();
    assert_eq!(total, 1);

    // Both at once, onto an existing artist's existing album (matched case-insensitively).
    let other =
        ready(store.as_ref(), new_track("Feeling Good", "Nina Simone", "I Put a Spell on You"))
            .await;
    let edit = TrackEdit {
        artist_name: Some("NINA SIMONE".to_owned()),
        album_title: Some("i put a spell on you".to_owned()),
        ..TrackEdit::default()
    };
    let back = store.update_track(track.id, &edit, later, &published).await.unwrap().unwrap();
    assert_eq!(back.artist, other.artist);
    assert_eq!(back.album, other.album);
    let (_, total) = store.artists(10, 0).await.unwrap();
    assert_eq!(total, 1, "Hozier left with nothing is gone");

    assert_eq!(
        store.update_track(Uuid::now_v7(), &TrackEdit::default(), later, &published).await.unwrap(),
        None
    );
}

async fn deleting_records_the_event_and_prunes_empty_albums_and_artists(
    store: Arc<dyn CatalogStore>,
) {
    let first = ready(store.as_ref(), new_track("Sinnerman", "Nina Simone", "Pastel Blues")).await;
    let second =
        ready(store.as_ref(), new_track("Be My Husband", "Nina Simone", "Pastel Blues")).await;
    let single =
        ready(store.as_ref(), new_track("Work Song", "Nina Simone", "Forbidden Fruit")).await;
    let lonely = ready(store.as_ref(), new_track("Take Me to Church", "Hozier", "Hozier")).await;

    let event = deleted(first.id);
    assert_eq!(store.delete_track(first.id, &event).await.unwrap(), Some(first.clone()));
    assert_eq!(store.track(first.id).await.unwrap(), None);
    let mut events = pending(store.as_ref(), first.id).await;
    events.retain(|event| event.event_type == TrackDeleted::TYPE);
    assert_eq!(events, vec![event], "the track.deleted event waits in the outbox");
    assert_eq!(events[0].event_type, TrackDeleted::TYPE);
    assert_eq!(events[0].payload["track_id"], first.id.to_string());
    let (_, tracks) =
        store.album(first.album.0).await.unwrap().expect("the album keeps its other track");
    assert_eq!(tracks, vec![second.clone()]);

    store.delete_track(single.id, &deleted(single.id)).await.unwrap().unwrap();
    assert_eq!(store.album(single.album.0).await.unwrap(), None, "its only track went");
    assert!(
        store.artist(single.artist.id).await.unwrap().is_some(),
        "the artist has another album"
    );

    store.delete_track(lonely.id, &deleted(lonely.id)).await.unwrap().unwrap();
    assert_eq!(store.album(lonely.album.0).await.unwrap(), None);
    assert_eq!(store.artist(lonely.artist.id).await.unwrap(), None, "the artist has nothing left");

    let (artists, total) = store.artists(10, 0).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(artists[0].albums, 1);

    let nothing = Uuid::now_v7();
    assert_eq!(store.delete_track(nothing, &deleted(nothing)).await.unwrap(), None);
    assert!(pending(store.as_ref(), nothing).await.is_empty(), "no event for no track");
}

async fn albums_and_artists_are_listed_in_order(store: Arc<dyn CatalogStore>) {
    let mut ids = Vec::new();
    for (title, disc, number) in [("c", 2, 1), ("b", 1, 2), ("a", 1, 1), ("d", 2, 2)] {
        let mut new = new_track(title, "Nina Simone", "Pastel Blues");
        new.disc_number = Some(disc);
        new.track_number = Some(number);
        ids.push(ready(store.as_ref(), new).await.album.0);
    }
    let (album, tracks) = store.album(ids[0]).await.unwrap().unwrap();
    assert_eq!(album.title, "Pastel Blues");
    assert_eq!(album.artist.name, "Nina Simone");
    assert_eq!(titles(&tracks), ["a", "b", "c", "d"], "by disc, then track number");
    assert_eq!(store.album(Uuid::now_v7()).await.unwrap(), None);

    for (album, year) in [
        ("Wild Is the Wind", Some(1966)),
        ("broadway-blues-ballads", Some(1964)),
        ("Baltimore", Some(1978)),
        ("Anthology", Some(1964)),
    ] {
        let mut new = new_track("x", "nina simone", album);
        new.year = year;
        ready(store.as_ref(), new).await;
    }
    let artist_id = store
        .track_by_hash(
            &ready(store.as_ref(), new_track("y", "Aretha Franklin", "Lady Soul"))
                .await
                .content_hash,
        )
        .await
        .unwrap()
        .unwrap()
        .artist
        .id;

    let (nina, albums) = store.artist(album.artist.id).await.unwrap().unwrap();
    assert_eq!(nina, album.artist);
    let album_titles: Vec<_> = albums.iter().map(|album| album.title.as_str()).collect();
    assert_eq!(
        album_titles,
        ["Anthology", "broadway-blues-ballads", "Pastel Blues", "Wild Is the Wind", "Baltimore"],
        "by year, then title"
    );
    let (aretha, albums) = store.artist(artist_id).await.unwrap().unwrap();
    assert_eq!(aretha.name, "Aretha Franklin");
    assert_eq!(albums.len(), 1);
    assert_eq!(store.artist(Uuid::now_v7()).await.unwrap(), None);

    let (albums, total) = store.albums(10, 0).await.unwrap();
    assert_eq!(total, 6);
    let listed: Vec<_> = albums.iter().map(|s| (s.album.title.as_str(), s.tracks)).collect();
    assert_eq!(
        listed,
        [
            ("Anthology", 1),
            ("Baltimore", 1),
            ("broadway-blues-ballads", 1),
            ("Lady Soul", 1),
            ("Pastel Blues", 4),
            ("Wild Is the Wind", 1),
        ],
        "by title, case-insensitively"
    );
    let (page, total) = store.albums(2, 4).await.unwrap();
    assert_eq!(total, 6);
    assert_eq!(
        page.iter().map(|s| s.album.title.as_str()).collect::<Vec<_>>(),
        ["Pastel Blues", "Wild Is the Wind"]
    );

    let (artists, total) = store.artists(10, 0).await.unwrap();
    assert_eq!(total, 2);
    let listed: Vec<_> = artists.iter().map(|s| (s.artist.name.as_str(), s.albums)).collect();
    assert_eq!(listed, [("Aretha Franklin", 1), ("Nina Simone", 5)]);
    let (page, total) = store.artists(1, 1).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(page[0].artist.name, "Nina Simone");
}

/// A track that is not ready (still processing, or failed) is listed to its uploader
/// alone, and its album and artist to nobody until one of their tracks is ready.
async fn unready_tracks_are_listed_to_their_uploader_alone(store: Arc<dyn CatalogStore>) {
    let playable = ready(store.as_ref(), new_track("Playable", "Known", "Out Now")).await;
    let pending = stored(store.as_ref(), new_track("Pending", "Newcomer", "Coming Soon")).await;
    let broken = stored(store.as_ref(), new_track("Broken", "Newcomer", "Coming Soon")).await;
    let failed = TranscodeOutcome::Failed { error: "the file could not be read".into() };
    store
        .apply_transcode("catalog.test", Uuid::now_v7(), &transcoded(broken.id, failed), &published)
        .await
        .unwrap()
        .unwrap();

    let (seen, total) = store.tracks(TrackSort::Title, Uuid::now_v7(), 10, 0).await.unwrap();
    assert_eq!((titles(&seen), total), (vec!["Playable"], 1), "anyone else");
    let (seen, total) = store.tracks(TrackSort::Title, pending.uploaded_by, 10, 0).await.unwrap();
    assert_eq!((titles(&seen), total), (vec!["Pending", "Playable"], 2));

    let (albums, total) = store.albums(10, 0).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(albums[0].album.id, playable.album.0);
    let (artists, total) = store.artists(10, 0).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(artists[0].artist.id, playable.artist.id);
    let (_, albums) = store.artist(pending.artist.id).await.unwrap().unwrap();
    assert!(albums.is_empty(), "no album of the newcomer is out yet");

    let out = ready(store.as_ref(), new_track("Out at Last", "Newcomer", "Coming Soon")).await;
    let (albums, _) = store.albums(10, 0).await.unwrap();
    let listed: Vec<_> = albums.iter().map(|s| (s.album.title.as_str(), s.tracks)).collect();
    assert_eq!(listed, [("Coming Soon", 1), ("Out Now", 1)], "counting ready tracks");
    assert_eq!(store.artist(out.artist.id).await.unwrap().unwrap().1.len(), 1);
}

async fn an_uploaders_tracks_are_found_and_disowned(store: Arc<dyn CatalogStore>) {
    let mine = new_track("Mine", "Ada", "Firsts");
    let uploader = mine.uploaded_by;
    let mut also_mine = new_track("Also Mine", "Ada", "Firsts");
    also_mine.uploaded_by = uploader;
    let first = ready(store.as_ref(), mine).await;
    let second = stored(store.as_ref(), also_mine).await;
    let other = stored(store.as_ref(), new_track("Theirs", "Bob", "Elsewhere")).await;

    let mut found: Vec<Uuid> =
        store.tracks_uploaded_by(uploader).await.unwrap().iter().map(|t| t.id).collect();
    found.sort();
    assert_eq!(found, [first.id, second.id]);
    assert_eq!(store.disown_tracks(uploader).await.unwrap(), 2);
    assert_eq!(store.disown_tracks(uploader).await.unwrap(), 0, "nothing left to disown");
    assert!(store.tracks_uploaded_by(uploader).await.unwrap().is_empty());
    assert_eq!(store.track(first.id).await.unwrap().unwrap().uploaded_by, Uuid::nil());
    assert_eq!(store.track(other.id).await.unwrap().unwrap().uploaded_by, other.uploaded_by);
}

async fn the_outbox_drains(store: Arc<dyn CatalogStore>) {
    let one = stored(store.as_ref(), new_track("one", "Nina Simone", "Pastel Blues")).await;
    let two = stored(store.as_ref(), new_track("two", "Nina Simone", "Pastel Blues")).await;
    let uploads = OutboxStore::pending(store.as_ref(), 10).await.unwrap();
    let ids: Vec<Uuid> = uploads.iter().map(|event| event.id).collect();
    assert_eq!(ids.len(), 2, "each upload was announced");
    store.mark_published(&ids, now() - TimeDelta::seconds(60)).await.unwrap();
    assert_eq!(store.prune_published(now() - TimeDelta::seconds(30)).await.unwrap(), 2);

    let mut events = Vec::new();
    for track in [one, two] {
        let event = deleted(track.id);
        store.delete_track(track.id, &event).await.unwrap().unwrap();
        events.push(event);
    }
    assert_eq!(OutboxStore::pending(store.as_ref(), 10).await.unwrap(), events, "in order");
    assert_eq!(OutboxStore::pending(store.as_ref(), 1).await.unwrap(), events[..1]);

    let published_at = now();
    store.mark_published(&[events[0].id], published_at).await.unwrap();
    assert_eq!(OutboxStore::pending(store.as_ref(), 10).await.unwrap(), events[1..]);
    store.mark_published(&[events[1].id], published_at).await.unwrap();
    assert!(OutboxStore::pending(store.as_ref(), 10).await.unwrap().is_empty());

    assert_eq!(store.prune_published(published_at).await.unwrap(), 0, "nothing older");
    assert_eq!(store.prune_published(published_at + TimeDelta::seconds(1)).await.unwrap(), 2);
}

/// A stored track indexed under these words.
async fn indexed(store: &dyn CatalogStore, words: &[(&str, Field)]) -> Uuid {
    let track = stored(store, new_track("Indexed", "Someone", "Something")).await;
    let words: Vec<(String, Field)> =
        words.iter().map(|(word, field)| ((*word).to_owned(), *field)).collect();
    store.index_track(track.id, &words).await.expect("index a track");
    track.id
}

fn owned(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

async fn indexed_words_are_found_by_prefix_and_by_trigrams(store: Arc<dyn CatalogStore>) {
    indexed(&*store, &[("love", Field::Title), ("lover", Field::Title)]).await;
    indexed(&*store, &[("lovely", Field::Album), ("glove", Field::Artist), ("lo", Field::Title)])
        .await;

    let words = store.words_with_prefix("lov", 10).await.unwrap();
    assert_eq!(words, ["love", "lovely", "lover"], "distinct, in order");
    assert_eq!(store.words_with_prefix("lov", 2).await.unwrap(), ["love", "lovely"]);
    assert!(store.words_with_prefix("lovx", 10).await.unwrap().is_empty());

    let similar = store.words_sharing_trigrams(&trigrams("lve"), 1, 2..=4, 10).await.unwrap();
    assert_eq!(similar, ["love", "lo"], "most shared first; lovely, lover and glove are too long");
    let similar = store.words_sharing_trigrams(&trigrams("lve"), 2, 2..=6, 10).await.unwrap();
    assert_eq!(similar, ["love"], "the others share one trigram");
}

async fn tracks_are_read_by_word_and_field_in_pages(store: Arc<dyn CatalogStore>) {
    let mut both = Vec::new();
    for _ in 0..3 {
        both.push(indexed(&*store, &[("love", Field::Title), ("lover", Field::Title)]).await);
    }
    let lover_only = indexed(&*store, &[("lover", Field::Title)]).await;
    let in_album = indexed(&*store, &[("love", Field::Album)]).await;
    both.sort();

    let words = owned(&["lover", "love"]);
    let all = store.tracks_with_words(&words, Field::Title, 100, 0).await.unwrap();
    let mut lovers = [both.clone(), vec![lover_only]].concat();
    lovers.sort();
    assert_eq!(all, [both.clone(), lovers].concat(), "by word, then track, once per word");

    let page = store.tracks_with_words(&words, Field::Title, 2, 2).await.unwrap();
    assert_eq!(page, all[2..4]);
    let album = store.tracks_with_words(&owned(&["love"]), Field::Album, 10, 0).await.unwrap();
    assert_eq!(album, [in_album]);
    assert!(store.tracks_with_words(&[], Field::Title, 10, 0).await.unwrap().is_empty());
}

async fn postings_are_read_word_by_word(store: Arc<dyn CatalogStore>) {
    let nina = indexed(&*store, &[("feeling", Field::Title), ("nina", Field::Artist)]).await;
    let album = indexed(&*store, &[("feeling", Field::Album), ("good", Field::Title)]).await;
    let artist = indexed(&*store, &[("feeling", Field::Artist)]).await;
    let mut feeling = vec![(nina, Field::Title), (album, Field::Album), (artist, Field::Artist)];
    feeling.sort_by_key(|(track, _)| *track);

    let by_track = |mut posting: Posting| {
        posting.occurrences.sort_by_key(|(track, _)| *track);
        posting
    };
    let mut postings: Vec<Posting> = store
        .postings(&owned(&["nina", "feeling", "absent"]), 100)
        .await
        .unwrap()
        .into_iter()
        .map(by_track)
        .collect();
    postings.sort_by(|a, b| b.word.cmp(&a.word));
    let posting = |word: &str, occurrences: &[(Uuid, Field)]| Posting {
        word: word.to_owned(),
        occurrences: occurrences.to_vec(),
    };
    assert_eq!(
        postings,
        [
            posting("nina", &[(nina, Field::Artist)]),
            posting("feeling", &feeling),
            posting("absent", &[])
        ],
        "one a word, with every occurrence"
    );
    let first: Vec<Posting> =
        store.postings(&owned(&["feeling"]), 2).await.unwrap().into_iter().map(by_track).collect();
    assert_eq!(first, [posting("feeling", &feeling[..2])]);
    assert!(store.postings(&[], 100).await.unwrap().is_empty());
}
