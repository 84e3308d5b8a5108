//! Load generator for Tonearm: drives one HTTP endpoint at a fixed concurrency for a fixed
//! time, or pushes events through the bus, and reports throughput and latency percentiles.
//! Also times transcodes against the ffmpeg command line, GETs a list of URLs (media
//! segments) from any server, and soaks a running server in a mixed load while watching
//! its memory.

mod als;
mod analytics;
mod drive;
mod events;
mod live;
mod playlist;
mod random;
mod recommendations;
mod search;
mod soak;
mod transcode;
mod urls;
mod voice;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Drive Tonearm's API and report throughput and latency")]
struct Args {
    /// What to measure.
    scenario: Scenario,
    /// Base URL of a running gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent clients, each signed in as its own listener.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// How long to measure, after a short warm-up.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// `events`: the bus to measure (`kafka://…`); an embedded log in a temporary
    /// directory when unset.
    #[arg(long)]
    bus: Option<String>,
    /// `events`: how many events to push through.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// `events`: the size of each event in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// `events`: events per publish call (default 500); `analytics`: plays per
    /// `record_plays` call (default 5,000 embedded, 10,000 ClickHouse).
    #[arg(long)]
    batch: Option<usize>,
    /// `search`: tracks in the catalog; `playlist`: tracks in the playlist (at most 10,000).
    #[arg(long, default_value_t = 100_000)]
    tracks: usize,
    /// `search`: searches to time; `playlist`: reorders and page reads to time (default
    /// 2,000 each); `analytics`: times each chart query is timed (default 200).
    #[arg(long)]
    queries: Option<usize>,
    /// `analytics`: `embedded` (SQLite in a temporary directory) or
    /// `clickhouse://host:8123[/database]`; without a database, a fresh one is made and
    /// dropped afterwards.
    #[arg(long, default_value = "embedded")]
    warehouse: String,
    /// `analytics`: the order plays are loaded in.
    #[arg(long, value_enum, default_value_t = analytics::Arrival::Played)]
    arrival: analytics::Arrival,
    /// `analytics`: plays to load before the queries.
    #[arg(long, default_value_t = 10_000_000)]
    plays: usize,
    /// `search`, `playlist`, `recommendations`: a database URL (PostgreSQL, or a SQLite file) to use instead of
    /// a temporary SQLite file; `search` reuses a catalog an earlier run seeded there;
    /// `analytics`: the same for the ClickHouse adapter's ledger of counted plays.
    #[arg(long)]
    database: Option<String>,
    /// `urls`: a file of URLs, one a line, that the clients cycle through.
    #[arg(long)]
    urls: Option<std::path::PathBuf>,
    /// `transcode`: timed runs of each side per input.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// `transcode`: lengths of the generated inputs in seconds, each made as MP3 and FLAC.
    #[arg(long, value_delimiter = ',', default_values_t = [30, 180])]
    lengths: Vec<u32>,
    /// `soak`: seconds between samples of the server's memory.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// `soak`: the server's process id, whose VmRSS is sampled from `/proc` besides
    /// `/metrics`.
    #[arg(long)]
    pid: Option<u32>,
    /// `voice`: the models directory (default: where `tonearm models fetch` puts them).
    #[arg(long)]
    models: Option<std::path::PathBuf>,
    /// `voice`: a Python with faster-whisper, timed on the same clip for comparison;
    /// `als`: one with `implicit`, trained on the same matrix.
    #[arg(long)]
    reference: Option<std::path::PathBuf>,
    /// `als`, `recommendations`: users, tracks and interactions per user of the generated
    /// data.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    #[arg(long, default_value_t = 50_000)]
    items: usize,
    #[arg(long, default_value_t = 50)]
    per_user: usize,
    /// `me`: send the requests straight to this service (the auth service's base URL)
    /// instead of through `--url`, with the identity the gateway would prove (signed with
    /// `--secret`), to measure what the gateway adds.
    #[arg(long)]
    direct: Option<String>,
    /// `me --direct`: the deployment's `internal.identity_secret`.
    #[arg(long)]
    secret: Option<String>,
    /// `live`: live streams to hold open, shared by the followers.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// `live`: listeners following the one whose presence changes.
    #[arg(long, default_value_t = 1_000)]
    followers: usize,
    /// `live`: presence updates timed to every stream.
    #[arg(long, default_value_t = 30)]
    updates: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    /// `GET /v1/me` with a bearer token: token check, session check, rate limit, handler.
    Me,
    /// `POST /v1/auth/login`: argon2id verification, session creation, token signing.
    Login,
    /// The event bus: publish → consume throughput and latency.
    Events,
    /// Catalog search latency on a large catalog.
    Search,
    /// Reorders and page reads in a playlist at its size limit.
    Playlist,
    /// Transcode speed: Tonearm's probe and package against the ffmpeg CLI, same ladder.
    Transcode,
    /// GETs of the URLs in `--urls` (e.g. signed media segments), bodies read whole.
    Urls,
    /// Analytics warehouse: plays/s into an adapter, then chart and history latency.
    Analytics,
    /// A long mixed load on a running server, sampling its memory: does the RSS plateau?
    Soak,
    /// Whisper's real-time factor (batched and not), the voice's speed, peak memory.
    Voice,
    /// Recommendation training time (ALS), against the `implicit` library.
    Als,
    /// Recommendations and similar tracks served over HTTP from a seeded store.
    Recommendations,
    /// Live streams held open (server memory per stream) and presence fan-out latency.
    Live,
}

const PASSWORD: &str = "benchmark password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Scenario::Analytics = args.scenario {
        let summary = analytics::run(analytics::AnalyticsArgs {
            warehouse: args.warehouse.clone(),
            plays: args.plays,
            batch: args.batch,
            queries: args.queries.unwrap_or(200),
            arrival: args.arrival,
            database: args.database.clone(),
        })
        .await?;
        print_line(&summary);
        return Ok(());
    }
    let queries = args.queries.unwrap_or(2_000);
    if let Scenario::Playlist = args.scenario {
        let tracks = args.tracks.min(10_000);
        print_line(&playlist::run(tracks, queries, args.database.clone()).await?);
        return Ok(());
    }
    if let Scenario::Search = args.scenario {
        print_line(&search::run(args.tracks, queries, args.database.clone()).await?);
        return Ok(());
    }
    if let Scenario::Transcode = args.scenario {
        let repeat = args.repeat.max(1);
        print_line(
            &transcode::run(transcode::TranscodeArgs { repeat, lengths: args.lengths }).await?,
        );
        return Ok(());
    }
    if let Scenario::Urls = args.scenario {
        let file = args.urls.clone().context("`urls` needs --urls FILE")?;
        let (concurrency, seconds) = (args.concurrency, args.seconds);
        print_line(&urls::run(urls::UrlsArgs { file, concurrency, seconds }).await?);
        return Ok(());
    }
    if let Scenario::Soak = args.scenario {
        let outcome = soak::run(soak::SoakArgs {
            url: args.url.clone(),
            concurrency: args.concurrency,
            seconds: args.seconds,
            sample_every: Duration::from_secs(args.sample_secs.max(1)),
            pid: args.pid,
        })
        .await?;
        print_line(&outcome.summary);
        if outcome.failures > 0 {
            bail!("{} requests met a 5xx answer or a transport error", outcome.failures);
        }
        return Ok(());
    }
    if let Scenario::Als = args.scenario {
        let summary = als::run(als::AlsArgs {
            users: args.users,
            items: args.items,
            per_user: args.per_user,
            reference: args.reference.clone(),
        })
        .await?;
        print_line(&summary);
        return Ok(());
    }
    if let Scenario::Recommendations = args.scenario {
        let summary = recommendations::run(recommendations::RecommendationsArgs {
            users: args.users,
            items: args.items,
            per_user: args.per_user,
            concurrency: args.concurrency,
            seconds: args.seconds,
            database: args.database.clone(),
        })
        .await?;
        print_line(&summary);
        return Ok(());
    }
    if let Scenario::Live = args.scenario {
        let summary = live::run(live::LiveArgs {
            url: args.url.clone(),
            connections: args.connections,
            followers: args.followers,
            updates: args.updates,
            pid: args.pid,
        })
        .await?;
        print_line(&summary);
        return Ok(());
    }
    if let Scenario::Voice = args.scenario {
        let summary = voice::run(voice::VoiceArgs {
            models: args.models.clone(),
            repeat: args.repeat.max(1),
            reference: args.reference.clone(),
        })
        .await?;
        print_line(&summary);
        return Ok(());
    }
    if let Scenario::Events = args.scenario {
        let summary = events::run(events::EventsArgs {
            url: args.bus.clone(),
            events: args.events,
            size: args.size,
            batch: args.batch.unwrap_or(500),
        })
        .await?;
        print_line(&summary);
        return Ok(());
    }
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut listeners = Vec::with_capacity(args.concurrency);
    for index in 0..args.concurrency {
        let email = format!("bench-{run}-{index}@example.com");
        let response = client
            .post(format!("{}/v1/auth/register", args.url))
            .json(&json!({"email": email, "password": PASSWORD, "display_name": "Bench"}))
            .send()
            .await
            .context("registering a listener")?;
        if !response.status().is_success() {
            bail!("register answered {}: {}", response.status(), response.text().await?);
        }
        let body: Value = response.json().await?;
        let token = body["access_token"].as_str().context("no access token")?.to_owned();
        listeners.push((email, token));
    }
    let direct = match (&args.direct, &args.secret) {
        (Some(url), Some(secret)) => Some((url.trim_end_matches('/').to_owned(), secret.clone())),
        (Some(_), None) => bail!("--direct needs --secret (the deployment's identity secret)"),
        _ => None,
    };

    let warm_up = Duration::from_secs(2);
    let measure = Duration::from_secs(args.seconds);
    let (histogram, failures) = drive::drive(listeners.len(), warm_up, measure, |index| {
        let (email, token) = listeners[index].clone();
        let (client, url, scenario) = (client.clone(), args.url.clone(), args.scenario);
        if let (Scenario::Me, Some((direct, secret))) = (scenario, direct.clone()) {
            let headers = proven_identity(&token, &secret);
            return Box::new(move || client.get(format!("{direct}/v1/me")).headers(headers.clone()))
                as Box<dyn FnMut() -> reqwest::RequestBuilder + Send>;
        }
        Box::new(move || match scenario {
            Scenario::Login => client
                .post(format!("{url}/v1/auth/login"))
                .json(&json!({"email": email, "password": PASSWORD})),
            Scenario::Me
            | Scenario::Events
            | Scenario::Search
            | Scenario::Playlist
            | Scenario::Transcode
            | Scenario::Urls
            | Scenario::Analytics
            | Scenario::Soak
            | Scenario::Voice
            | Scenario::Als
            | Scenario::Recommendations
            | Scenario::Live => client.get(format!("{url}/v1/me")).bearer_auth(&token),
        })
    })
    .await?;
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    report(
        &args,
        histogram.len(),
        failures,
        measure,
        [ms(0.5), ms(0.9), ms(0.99), histogram.max() as f64 / 1000.0],
    );
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_line(line: &str) {
    println!("{line}");
}

/// The identity headers the gateway would send for the holder of `token`, with the proof
/// a service alone requires (valid for a minute: longer than a run).
fn proven_identity(token: &str, secret: &str) -> reqwest::header::HeaderMap {
    use base64::Engine as _;
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(|payload| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default();
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, claim) in [
        (kernel::caller::USER_ID, "sub"),
        (kernel::caller::SESSION_ID, "sid"),
        (kernel::caller::TIER, "tier"),
        (kernel::caller::ROLE, "role"),
    ] {
        if let Some(Ok(value)) = claims[claim].as_str().map(reqwest::header::HeaderValue::from_str)
        {
            headers.insert(name, value);
        }
    }
    let key = kernel::internal::InternalKey::new(secret.to_owned().into());
    key.prove_now(&mut headers);
    headers
}

fn report(args: &Args, ok: u64, failures: u64, measured: Duration, [p50, p90, p99, max]: [f64; 4]) {
    let throughput = ok as f64 / measured.as_secs_f64();
    print_line(&format!(
        "{:?}: {} clients, {} s: {ok} ok, {failures} failed, {throughput:.0} req/s, \
         p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
        args.scenario, args.concurrency, args.seconds
    ));
}
