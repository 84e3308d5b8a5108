//! Search latency on a large catalog: seeds tracks straight into a catalog store (SQLite
//! in a temporary directory, or the database URL given), then times searches that a
//! listener would type: prefixes, typos, two-word queries. A database seeded by an earlier
//! run with the same URL is searched as it is, or seeded further if that run stopped early.

use std::{sync::Arc, time::Instant};

use catalog::{
    CatalogConfig, CatalogService,
    domain::{AudioFormat, NewTrack, TrackSort},
};
use hdrhistogram::Histogram;
use kernel::{db::SqlPool, engine::EngineUrl};
use uuid::Uuid;

/// A deterministic stream of numbers, so every run searches the same catalog.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self, below: usize) -> usize {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % below.max(1)
    }
}

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ra", "ne", "to", "sa", "vi", "do", "re", "fa", "lu", "be", "zo", "ti", "ma",
    "no", "si", "pe", "qu", "ar", "el", "on", "us",
];

fn word(sequence: &mut Sequence) -> String {
    (0..2 + sequence.next(3)).map(|_| SYLLABLES[sequence.next(SYLLABLES.len())]).collect()
}

fn phrase(sequence: &mut Sequence, vocabulary: &[String], words: usize) -> String {
    (0..words)
        .map(|_| vocabulary[sequence.next(vocabulary.len())].clone())
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run(
    tracks: usize,
    queries: usize,
    database: Option<String>,
) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let url =
        database.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("catalog.db").display()));
    let pool = SqlPool::connect(&EngineUrl::new(url), "tonearm_catalog_bench").await?;
    let store = catalog::store::open(pool).await?;
    let objects = objects::Objects::connect(&objects::StorageConfig::default(), dir.path()).await?;
    let service = Arc::new(CatalogService::new(store.clone(), objects, CatalogConfig::default()));

    let mut sequence = Sequence(42);
    let vocabulary: Vec<String> = (0..3_000).map(|_| word(&mut sequence)).collect();
    let artists: Vec<String> = (0..5_000).map(|_| phrase(&mut sequence, &vocabulary, 2)).collect();
    // Seeded tracks are uploaded by nobody (the nil id), who sees them all.
    let (_, already) = store.tracks(TrackSort::Recent, Uuid::nil(), 1, 0).await?;
    let seed = already < tracks as u64;
    let seeding = Instant::now();
    for index in 0..tracks {
        // The catalog is drawn in full either way, so that the queries after it are the same.
        let title_words = 1 + sequence.next(4);
        let title = phrase(&mut sequence, &vocabulary, title_words);
        let artist_name = artists[sequence.next(artists.len())].clone();
        let album_title = phrase(&mut sequence, &vocabulary, 2);
        // Tracks are seeded in order, so an interrupted seeding picks up where it stopped.
        if index < already as usize {
            continue;
        }
        let new = NewTrack {
            id: Uuid::now_v7(),
            title,
            artist_name,
            album_title,
            track_number: None,
            disc_number: None,
            year: None,
            genre: None,
            duration_ms: 180_000,
            content_hash: format!("{index:064}"),
            format: AudioFormat::Mp3,
            size_bytes: 1,
            uploaded_by: Uuid::nil(),
            created_at: chrono::Utc::now(),
        };
        let event = bus::Envelope::new(
            &bus::events::TrackUploaded {
                track_id: new.id,
                source_key: format!("tracks/{}/original.mp3", new.id),
                format: "mp3".to_owned(),
                uploaded_at: new.created_at,
            },
            new.created_at,
        );
        let track = store.create_track(&new, &event).await?;
        service.reindex(&track).await?;
    }
    let seeded_in = seeding.elapsed();

    let histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3);
    let mut latency = histogram()?;
    let mut by_kind = [histogram()?, histogram()?, histogram()?];
    let mut found = 0;
    for _ in 0..queries {
        let mut typed = vocabulary[sequence.next(vocabulary.len())].clone();
        let kind = sequence.next(3);
        match kind {
            // A prefix, as typed so far.
            0 => typed.truncate(3 + sequence.next(2)),
            // A typo: one letter dropped.
            1 => {
                let at = sequence.next(typed.len());
                typed.remove(at);
            }
            // Two words.
            _ => typed = format!("{typed} {}", &vocabulary[sequence.next(vocabulary.len())][..3]),
        }
        let started = Instant::now();
        let results = service.search(&typed, catalog::service::Sections::ALL, 20, 0).await?;
        let micros = started.elapsed().as_micros().max(1) as u64;
        latency.saturating_record(micros);
        by_kind[kind].saturating_record(micros);
        found += usize::from(!results.tracks.items.is_empty());
    }
    let ms = |histogram: &Histogram<u64>, q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let kinds: Vec<String> = ["prefixes", "typos", "two words"]
        .iter()
        .zip(&by_kind)
        .map(|(name, h)| format!("{name} p50 {:.2} / p99 {:.2} ms", ms(h, 0.5), ms(h, 0.99)))
        .collect();
    let seeded = if seed {
        format!("{} seeded in {:.0} s", tracks as u64 - already, seeded_in.as_secs_f64())
    } else {
        format!("{already} seeded before")
    };
    Ok(format!(
        "search over {tracks} tracks ({seeded}): {queries} queries, {found} with results, \
         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({})",
        ms(&latency, 0.5),
        ms(&latency, 0.9),
        ms(&latency, 0.99),
        latency.max() as f64 / 1000.0,
        kinds.join("; ")
    ))
}
