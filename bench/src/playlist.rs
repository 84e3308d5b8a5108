//! Playlist latency at the size limit: seeds a 10,000-track playlist straight into a
//! playlist store (SQLite in a temporary directory, or the PostgreSQL URL given), then
//! times what a player and an editor do to it: reorders of random ranges to random places,
//! and page reads at random offsets.

use std::time::Instant;

use chrono::Utc;
use hdrhistogram::Histogram;
use kernel::{db::SqlPool, engine::EngineUrl};
use playlist::domain::{NewPlaylist, TrackChange, TrackSummary};
use uuid::Uuid;

/// A deterministic stream of numbers, so every run does the same work.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self, below: usize) -> usize {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % below.max(1)
    }
}

pub async fn run(
    tracks: usize,
    operations: usize,
    database: Option<String>,
) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let url = database
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("playlist.db").display()));
    let pool = SqlPool::connect(&EngineUrl::new(url), "tonearm_playlist_bench").await?;
    let store = playlist::store::open(pool).await?;

    let summaries: Vec<TrackSummary> = (0..500)
        .map(|index| TrackSummary {
            id: Uuid::now_v7(),
            title: format!("Track {index}"),
            artist_id: Uuid::nil(),
            artist_name: "Bench".into(),
            album_id: Uuid::nil(),
            album_title: "Bench".into(),
            duration_ms: 180_000,
        })
        .collect();
    store.upsert_summaries(&summaries).await?;
    let now = Utc::now();
    let new = NewPlaylist {
        id: Uuid::now_v7(),
        owner_id: Uuid::nil(),
        name: "Bench".into(),
        description: None,
        public: false,
        created_at: now,
    };
    let event = bus::Envelope::new(
        &bus::events::PlaylistCreated {
            playlist_id: new.id,
            owner_id: new.owner_id,
            name: new.name.clone(),
            public: false,
            created_at: now,
        },
        now,
    );
    let playlist = store.create_playlist(&new, &event).await?;
    // Each change records its `playlist.changed`, as the service's do.
    let changed = || {
        let at = Utc::now();
        let changed = bus::events::PlaylistChanged {
            playlist_id: new.id,
            owner_id: new.owner_id,
            name: new.name.clone(),
            public: false,
            change: bus::events::PlaylistChange::Tracks,
            changed_at: at,
        };
        bus::Envelope::new(&changed, at)
    };
    let seeding = Instant::now();
    let mut sequence = Sequence(7);
    let mut seeded = 0;
    while seeded < tracks {
        let batch = (tracks - seeded).min(100);
        let track_ids = (0..batch).map(|_| summaries[sequence.next(summaries.len())].id).collect();
        let change = TrackChange::Add { track_ids, position: None };
        store.change_tracks(playlist.id, None, &change, tracks, Utc::now(), &changed()).await?;
        seeded += batch;
    }
    let seeded_in = seeding.elapsed();

    let mut reorders = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut reads = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for _ in 0..operations {
        let range_length = 1 + sequence.next(10);
        let range_start = sequence.next(tracks - range_length);
        let insert_before = sequence.next(tracks + 1);
        let change = TrackChange::Reorder { range_start, range_length, insert_before };
        let started = Instant::now();
        store.change_tracks(playlist.id, None, &change, tracks, Utc::now(), &changed()).await?;
        reorders.saturating_record(started.elapsed().as_micros().max(1) as u64);

        let offset = sequence.next(tracks) as u32;
        let started = Instant::now();
        let (page, _) = store.entries(playlist.id, 100, offset).await?;
        reads.saturating_record(started.elapsed().as_micros().max(1) as u64);
        anyhow::ensure!(page.first().is_none_or(|entry| entry.position == u64::from(offset)));
    }
    let ms = |histogram: &Histogram<u64>, q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(format!(
        "playlist of {tracks} tracks (seeded in {:.1} s), {operations} of each:\n\
         reorder (1-10 tracks anywhere): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
         page read (100 entries at a random offset): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        seeded_in.as_secs_f64(),
        ms(&reorders, 0.5),
        ms(&reorders, 0.9),
        ms(&reorders, 0.99),
        reorders.max() as f64 / 1000.0,
        ms(&reads, 0.5),
        ms(&reads, 0.9),
        ms(&reads, 0.99),
        reads.max() as f64 / 1000.0,
    ))
}
