//! Analytics warehouse throughput and chart latency: loads a month of synthetic plays into
//! one warehouse adapter (embedded SQLite in a temporary directory, or a fresh ClickHouse
//! database) through `Warehouse::record_plays`, the call the `song.played` consumer makes,
//! then times the reads the API serves: top tracks, the hourly play series and a
//! listener's history.

use std::{path::Path, sync::Arc, time::Instant};

use analytics::{
    domain::{Bucketing, DAY_MS, PlayFact, Window, is_stream},
    warehouse::{Warehouse, clickhouse::ClickHouseWarehouse, embedded::EmbeddedWarehouse},
};
use anyhow::Context;
use hdrhistogram::Histogram;
use kernel::{db::SqlPool, engine::EngineUrl};
use uuid::{Builder, Uuid};

use crate::random::SplitMix as Random;

const TRACKS: usize = 20_000;
const USERS: usize = 50_000;
const DAYS: i64 = 30;
/// Plays shorter than this never count as streams (`domain::is_stream`), whatever the track.
const STREAM_MS: u64 = 30_000;
/// The share of plays skipped before they count as a stream.
const SKIPPED: f64 = 0.25;
const TOP_LIMIT: u32 = 20;
const HISTORY_LIMIT: u32 = 50;
/// The rate is reported separately up to here: the rollups are small while it lasts.
const FIRST_PLAYS: usize = 1_000_000;
/// How late a play may reach the warehouse when plays arrive as they are played.
const LATENESS_MS: i64 = 5 * 60_000;

/// The order plays reach the warehouse in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arrival {
    /// As the `song.played` consumer sees them: in the order they were played, each up to
    /// five minutes late.
    Played,
    /// A backfill in no order: every play at a random time of the 30 days.
    Shuffled,
}

impl Arrival {
    /// When the `index`-th of `total` plays was played; all fall in the 30 days to `now_ms`.
    fn played_at_ms(self, random: &mut Random, index: usize, total: usize, now_ms: i64) -> i64 {
        let month = DAYS * DAY_MS;
        match self {
            Self::Played => {
                let span = month - LATENESS_MS;
                let on_time = now_ms - span
                    + (index as i128 * i128::from(span) / total.max(1) as i128) as i64;
                on_time - random.below(LATENESS_MS as u64) as i64
            }
            Self::Shuffled => now_ms - random.below(month as u64) as i64,
        }
    }
}

#[derive(Debug)]
pub struct AnalyticsArgs {
    /// `embedded`, or `clickhouse://host:port[/database]`.
    pub warehouse: String,
    pub plays: usize,
    pub batch: Option<usize>,
    pub queries: usize,
    pub arrival: Arrival,
    /// The ledger of the ClickHouse adapter: a PostgreSQL URL instead of a temporary SQLite
    /// file.
    pub database: Option<String>,
}

/// The catalog and audience the plays are drawn from.
struct Population {
    tracks: Vec<(Uuid, u64)>,
    /// Cumulative Zipf weights (s = 1) by popularity rank: track 0 is played most, track
    /// 1 half as often, track k 1/(k+1) as often.
    popularity: Vec<f64>,
    users: Vec<Uuid>,
}

impl Population {
    fn new(random: &mut Random) -> Self {
        let tracks =
            (0..TRACKS).map(|_| (random.uuid_v4(), 120_000 + random.below(300_000))).collect();
        let mut total = 0.0;
        let popularity = (1..=TRACKS)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        let users = (0..USERS).map(|_| random.uuid_v4()).collect();
        Self { tracks, popularity, users }
    }

    fn track(&self, random: &mut Random) -> (Uuid, u64) {
        let total = self.popularity.last().copied().unwrap_or(1.0);
        let target = random.unit() * total;
        let rank = self.popularity.partition_point(|&weight| weight <= target);
        self.tracks[rank.min(TRACKS - 1)]
    }

    fn user(&self, random: &mut Random) -> Uuid {
        self.users[random.below(USERS as u64) as usize]
    }

    /// One play at `played_at_ms`. `salt` changes the play ids from run to run, and nothing
    /// else, so a ledger kept in PostgreSQL never sees a repeat.
    fn play(&self, random: &mut Random, played_at_ms: i64, salt: u128) -> PlayFact {
        let (track_id, duration_ms) = self.track(random);
        let user_id = self.user(random);
        let played_ms = if random.unit() < SKIPPED {
            1_000 + random.below(STREAM_MS - 1_000)
        } else {
            STREAM_MS + random.below(duration_ms - STREAM_MS + 1)
        };
        let bytes = (random.next_u128() ^ salt).to_be_bytes();
        let mut tail = [0_u8; 10];
        tail.copy_from_slice(&bytes[..10]);
        PlayFact {
            play_id: Builder::from_unix_timestamp_millis(played_at_ms as u64, &tail).into_uuid(),
            user_id,
            track_id,
            played_at_ms,
            played_ms,
            stream: is_stream(played_ms, duration_ms),
        }
    }
}

/// A ClickHouse database this run made, dropped at the end.
struct Scratch {
    http: String,
    database: String,
}

impl Scratch {
    async fn drop_database(&self) -> anyhow::Result<()> {
        let response = reqwest::Client::new()
            .post(&self.http)
            .body(format!("DROP DATABASE IF EXISTS {}", self.database))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "{}", response.text().await?);
        Ok(())
    }
}

/// Splits `clickhouse://host:port[/database]` and, when it names no database, gives it
/// a fresh one to drop afterwards: the adapter would otherwise use `tonearm_analytics`.
fn clickhouse_target(url: &str) -> anyhow::Result<(String, Option<Scratch>)> {
    let rest = url.strip_prefix("clickhouse://").context("not a clickhouse:// URL")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.trim_matches('/').is_empty() {
        return Ok((url.to_owned(), None));
    }
    anyhow::ensure!(!authority.contains('@'), "name the database when the URL has a user");
    let database = format!("tonearm_bench_{}", Uuid::now_v7().simple());
    let host =
        if authority.contains(':') { authority.to_owned() } else { format!("{authority}:8123") };
    let scratch = Scratch { http: format!("http://{host}/"), database: database.clone() };
    Ok((format!("clickhouse://{authority}/{database}"), Some(scratch)))
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?)
}

fn record(histogram: &mut Histogram<u64>, started: Instant) {
    histogram.saturating_record((started.elapsed().as_micros() as u64).max(1));
}

fn latencies(name: &str, histogram: &Histogram<u64>) -> String {
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "{name}: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(0.5),
        ms(0.95),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    )
}

/// The process's peak resident set, from the kernel; none where there is no `/proc`.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn size_mib(dir: &Path) -> f64 {
    let bytes: u64 = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    bytes as f64 / (1024.0 * 1024.0)
}

pub async fn run(args: AnalyticsArgs) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let (warehouse, name, batch, scratch): (Arc<dyn Warehouse>, String, usize, Option<Scratch>) =
        if args.warehouse == "embedded" {
            // The writer's page cache the ingest figures in docs/benchmarks.md had.
            let warehouse = EmbeddedWarehouse::open(&dir.path().join("warehouse.db"), 256).await?;
            (Arc::new(warehouse), "embedded".into(), args.batch.unwrap_or(5_000), None)
        } else {
            let (url, scratch) = clickhouse_target(&args.warehouse)?;
            let ledger = args
                .database
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("ledger.db").display()));
            let pool = SqlPool::connect(&EngineUrl::new(ledger), analytics::DATABASE_NAME).await?;
            analytics::store::open(pool.clone()).await?;
            let warehouse = ClickHouseWarehouse::connect(&url, pool)
                .await
                .with_context(|| format!("connecting to {}", EngineUrl::new(&url).redacted()))?;
            let name = format!("ClickHouse ({})", EngineUrl::new(&url).redacted());
            (Arc::new(warehouse), name, args.batch.unwrap_or(10_000), scratch)
        };
    let result = measure(warehouse.as_ref(), &name, batch, &args).await;
    if let Some(scratch) = scratch {
        scratch.drop_database().await.context("dropping the benchmark database")?;
    }
    let mut summary = result?;
    if args.warehouse == "embedded" {
        summary
            .push_str(&format!("; warehouse on disk {:.0} MiB with its WAL", size_mib(dir.path())));
    }
    Ok(summary)
}

async fn measure(
    warehouse: &dyn Warehouse,
    name: &str,
    batch: usize,
    args: &AnalyticsArgs,
) -> anyhow::Result<String> {
    warehouse.migrate().await?;
    let batch = batch.max(1);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut random = Random(2026);
    let population = Population::new(&mut random);
    let salt = Uuid::new_v4().as_u128();

    // Generating a batch takes a few milliseconds; only the calls are timed.
    let mut loading = std::time::Duration::ZERO;
    let mut first = None;
    let mut loaded = 0;
    let mut plays = Vec::with_capacity(batch);
    while loaded < args.plays {
        plays.clear();
        let size = batch.min(args.plays - loaded);
        plays.extend((loaded..loaded + size).map(|index| {
            let played_at_ms = args.arrival.played_at_ms(&mut random, index, args.plays, now_ms);
            population.play(&mut random, played_at_ms, salt)
        }));
        let started = Instant::now();
        let new = warehouse.record_plays(&plays).await?;
        loading += started.elapsed();
        anyhow::ensure!(new == size as u64, "{new} of {size} plays counted as new");
        let before = loaded;
        loaded += size;
        if loaded >= FIRST_PLAYS && first.is_none() {
            first = Some((loaded, loading));
        }
        if loaded / FIRST_PLAYS != before / FIRST_PLAYS {
            eprintln!(
                "{loaded} plays in {:.1} s, {:.0} plays/s",
                loading.as_secs_f64(),
                loaded as f64 / loading.as_secs_f64()
            );
        }
    }
    let arrival = match args.arrival {
        Arrival::Played => "in the order played",
        Arrival::Shuffled => "in random time order",
    };
    let rate = |plays: usize, seconds: f64| plays as f64 / seconds;
    let mut ingest = format!(
        "ingest, batches of {batch}, {arrival}: {loaded} plays in {:.1} s, {:.0} plays/s",
        loading.as_secs_f64(),
        rate(loaded, loading.as_secs_f64())
    );
    if let Some((plays, took)) = first.filter(|&(plays, _)| plays < loaded) {
        ingest.push_str(&format!(
            "; first {plays} in {:.1} s, {:.0} plays/s",
            took.as_secs_f64(),
            rate(plays, took.as_secs_f64())
        ));
    }

    let day_from = Window::Day.start_ms(now_ms);
    let week_from = Window::Week.start_ms(now_ms);
    let most_played = population.tracks[0].0;
    let (mut top_day, mut top_week, mut series, mut history) =
        (histogram()?, histogram()?, histogram()?, histogram()?);
    // Interleaved, so each query meets the caches as the others leave them.
    for _ in 0..args.queries {
        let started = Instant::now();
        let (page, _) = warehouse.top_tracks(day_from, TOP_LIMIT, 0).await?;
        record(&mut top_day, started);
        anyhow::ensure!(
            page.first().is_some_and(|top| top.track_id == most_played),
            "the most played track is not first over 24 hours"
        );

        let started = Instant::now();
        let (page, _) = warehouse.top_tracks(week_from, TOP_LIMIT, 0).await?;
        record(&mut top_week, started);
        anyhow::ensure!(page.len() == TOP_LIMIT as usize, "a 7-day chart of {}", page.len());

        let started = Instant::now();
        let points = warehouse.play_series(Bucketing::Hour, day_from, now_ms).await?;
        record(&mut series, started);
        anyhow::ensure!(points.len() <= 24, "{} hourly points in 24 hours", points.len());

        let user = population.user(&mut random);
        let started = Instant::now();
        warehouse.history(user, HISTORY_LIMIT, 0).await?;
        record(&mut history, started);
    }
    let queries = args.queries;
    let rss = peak_rss_mib().map_or_else(String::new, |mib| format!("peak RSS {mib:.0} MiB"));
    Ok(format!(
        "analytics, {name} warehouse: {loaded} plays of {TRACKS} tracks (Zipf, s = 1) by {USERS} \
         users over {DAYS} days, {queries} of each query\n\
         {ingest}\n\
         {}\n{}\n{}\n{}\n\
         {rss}",
        latencies("top tracks 24h (20)", &top_day),
        latencies("top tracks 7d (20)", &top_week),
        latencies("play series by hour, 24h", &series),
        latencies(&format!("history of a random user ({HISTORY_LIMIT})"), &history),
    ))
}
