//! Soak: a long mixed load against a running `tonearm up`, to show whether the server's
//! memory levels off or keeps growing. A defect report saw resident memory go from 83 MB
//! idle to 265 MB after 14 minutes of mixed probes; every in-memory cache (sessions,
//! rate-limit windows, login throttles, rendered playlists, media segments) must be
//! bounded, so under a steady load the RSS should rise while they fill, then plateau.
//!
//! Setup: one listener uploads a few short generated WAV tracks, titled from a small
//! vocabulary so that searches find them, and waits until each is `ready`. Then each of
//! `--concurrency` clients signs up as its own listener and, until `--seconds` elapse,
//! does what players do, picked at random by weight: searches (whole words, prefixes,
//! typos, two words, unknown words), browses tracks, albums and artists page by page,
//! reads a track, streams one (signed master playlist, a media playlist, a segment, some
//! of them by `Range`), edits a playlist from creation to deletion, likes and unlikes,
//! reports plays and reads its history and the charts, signs up and signs in (new
//! sessions, throttle and rate-limit windows), and sends a share of bad requests
//! (malformed JSON, unknown and malformed ids, bad query parameters, bad tokens and
//! signatures, wrong passwords).
//!
//! Every `--sample-secs` it prints the requests so far and the server's memory:
//! `process_resident_memory_bytes` and every `memory_cache_bytes` / `memory_cache_entries`
//! series from `/metrics` ("-" when absent), and with `--pid` the VmRSS of that process
//! from `/proc`, with its anonymous part (heap, as opposed to mapped files). The summary
//! takes the anonymous part when `--pid` is given (the mapped database pages are the
//! system's to take back), else the RSS: its figure after warm-up, its maximum, its range
//! over the last quarter, and a verdict: a plateau when the last quarter's mean is within
//! 5 % of the third quarter's. Any 5xx answer or transport failure is counted, shown and
//! makes the command fail, after the summary.
//!
//! The server must be started with budgets that do not refuse the load, e.g.
//! `TONEARM_GATEWAY__RATE_LIMITS__FREE_PER_MINUTE=10000000`,
//! `TONEARM_GATEWAY__RATE_LIMITS__ANONYMOUS_PER_MINUTE=10000000`,
//! `TONEARM_GATEWAY__MEDIA_PER_IP_PER_SECOND=1000000`,
//! `TONEARM_GATEWAY__MEDIA_BURST_PER_IP=1000000` and
//! `TONEARM_AUTH__LOGIN_THROTTLE__MAX_FAILURES_PER_IP=1000000` (the wrong passwords come
//! from one address); answers refused with 429 are counted apart and reported.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{PASSWORD, print_line, random::SplitMix as Dice};

pub struct SoakArgs {
    /// Base URL of the running gateway.
    pub url: String,
    pub concurrency: usize,
    pub seconds: u64,
    pub sample_every: Duration,
    /// The server's process, whose VmRSS is read from `/proc` at each sample.
    pub pid: Option<u32>,
}

pub struct SoakOutcome {
    pub summary: String,
    /// Requests answered with a 5xx status or lost to a transport error.
    pub failures: u64,
}

/// Tracks uploaded for the clients to play; each lasts `TRACK_SECONDS + index` seconds.
const TRACKS: usize = 8;
const TRACK_SECONDS: u32 = 12;
/// Title words; artists and albums are made of the same words, so searches reach all three.
const WORDS: [&str; 12] = [
    "midnight", "river", "golden", "harbor", "velvet", "summer", "lantern", "orbit", "willow",
    "neon", "echo", "static",
];
const ARTISTS: [&str; 3] = ["Neon Willow", "Harbor Echo", "Velvet Orbit"];
const ALBUMS: [&str; 4] = ["Golden Static", "Summer Lantern", "Midnight River", "Echo Harbor"];
/// How long the uploads may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(300);
/// No request may hold a client past the end of the run by more than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A bound on each client's loop besides the clock.
const MAX_ACTIONS_PER_CLIENT: u64 = 100_000_000;
/// 5xx answers and transport failures described in the summary (all are counted).
const FAILURES_DESCRIBED: usize = 20;
/// The share of the run, from its start, after which RSS counts as warmed up.
const WARM_UP_SHARE: f64 = 0.1;
/// The plateau verdict: the last quarter's mean may exceed the third quarter's by this
/// share of it.
const PLATEAU_GROWTH: f64 = 0.05;

pub async fn run(args: SoakArgs) -> anyhow::Result<SoakOutcome> {
    let base = args.url.trim_end_matches('/').to_owned();
    let concurrency = args.concurrency.max(1);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let run = Uuid::now_v7().simple().to_string();
    // Naming the process up front catches a wrong pid (a shell around the server, say).
    let memory_sources = match args.pid {
        Some(pid) => {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .with_context(|| format!("--pid {pid}: no such process"))?;
            format!("/metrics and the VmRSS of pid {pid} ({})", name.trim())
        }
        None => "/metrics".to_owned(),
    };

    let seeding = Instant::now();
    let catalog = Arc::new(seed_catalog(&http, &base, &run).await?);
    let mut listeners = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        listeners.push(register(&http, &base, &format!("soak-{run}-{index}@example.com")).await?);
    }
    print_line(&format!(
        "soak: {} tracks ready and {concurrency} listeners signed up in {:.1} s; \
         {concurrency} clients for {} s, memory from {memory_sources} every {} s",
        catalog.len(),
        seeding.elapsed().as_secs_f64(),
        args.seconds,
        args.sample_every.as_secs(),
    ));

    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut workers = Vec::with_capacity(concurrency);
    for (index, listener) in listeners.into_iter().enumerate() {
        let mut player = Player {
            http: http.clone(),
            base: base.clone(),
            run: run.clone(),
            index,
            listener,
            catalog: catalog.clone(),
            dice: Dice(0x5eed_0000 + index as u64),
            sign_ups: 0,
            last_master_url: None,
            tally: Tally::default(),
            progress: progress.clone(),
        };
        workers.push(tokio::spawn(async move {
            player.play_until(deadline).await;
            player.tally
        }));
    }

    let sampler = Sampler { http: http.clone(), base: base.clone(), pid: args.pid, started };
    let mut samples = vec![sampler.take(&progress).await];
    print_line(&samples[0].line());
    let mut next = started + args.sample_every;
    while next < deadline {
        tokio::time::sleep_until(next.into()).await;
        let sample = sampler.take(&progress).await;
        print_line(&sample.line());
        samples.push(sample);
        next += args.sample_every;
    }
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(&worker.await?);
    }
    let last = sampler.take(&progress).await;
    print_line(&last.line());
    samples.push(last);

    let elapsed = started.elapsed();
    let failures = tally.failures();
    let described = progress.described.lock().map(|notes| notes.clone()).unwrap_or_default();
    let summary = summarise(&args, concurrency, elapsed, &tally, &samples, &described);
    Ok(SoakOutcome { summary, failures })
}

// --- Setup ----------------------------------------------------------------------------

/// A listener's credentials.
struct Listener {
    email: String,
    access_token: String,
}

/// An uploaded track, ready to play.
struct SeededTrack {
    id: String,
    title: String,
    duration_ms: u64,
    album_id: String,
    artist_id: String,
}

async fn register(http: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<Listener> {
    let response = http
        .post(format!("{base}/v1/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "display_name": "Soak"}))
        .send()
        .await
        .context("registering a listener")?;
    let body = successful_json(response, "registering a listener").await?;
    let access_token = body["access_token"].as_str().context("no access token")?.to_owned();
    Ok(Listener { email: email.to_owned(), access_token })
}

/// The body of a 2xx answer, or an error that says what was refused and why.
pub(crate) async fn successful_json(
    response: reqwest::Response,
    what: &str,
) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.text().await.with_context(|| format!("{what}: reading the answer"))?;
    if status == StatusCode::TOO_MANY_REQUESTS {
        bail!("{what}: 429, rate limited; start the server with raised budgets: {text}");
    }
    if !status.is_success() {
        bail!("{what}: {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))
}

/// Uploads the tracks (content already in the catalog, from an earlier run, is reused) and
/// waits until every one is ready.
async fn seed_catalog(
    http: &reqwest::Client,
    base: &str,
    run: &str,
) -> anyhow::Result<Vec<SeededTrack>> {
    let uploader = register(http, base, &format!("soak-{run}-uploader@example.com")).await?;
    let boundary = format!("soak-{run}");
    let mut ids = Vec::with_capacity(TRACKS);
    for index in 0..TRACKS {
        let (title, artist, album) = track_tags(index);
        let audio = tone_wav(TRACK_SECONDS + index as u32, index as u32);
        let fields = [("title", title.as_str()), ("artist", artist), ("album", album)];
        let body = multipart_upload(&boundary, &format!("soak-{index}.wav"), &audio, &fields);
        let response = http
            .post(format!("{base}/v1/tracks"))
            .bearer_auth(&uploader.access_token)
            .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .context("uploading a track")?;
        let accepted = successful_json(response, "uploading a track").await?;
        ids.push(accepted["id"].as_str().context("an upload answered no id")?.to_owned());
    }

    let deadline = Instant::now() + READY_WITHIN;
    let mut tracks = Vec::with_capacity(ids.len());
    for id in ids {
        loop {
            let response = http
                .get(format!("{base}/v1/tracks/{id}"))
                .bearer_auth(&uploader.access_token)
                .send()
                .await
                .context("reading an uploaded track")?;
            let track = successful_json(response, "reading an uploaded track").await?;
            match track["status"].as_str() {
                Some("ready") => {
                    tracks.push(SeededTrack {
                        id: id.clone(),
                        title: track["title"].as_str().unwrap_or_default().to_owned(),
                        duration_ms: track["duration_ms"].as_u64().unwrap_or(1_000).max(1),
                        album_id: track["album"]["id"].as_str().unwrap_or_default().to_owned(),
                        artist_id: track["artist"]["id"].as_str().unwrap_or_default().to_owned(),
                    });
                    break;
                }
                Some("processing") if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Some("processing") => bail!("track {id} still processing after {READY_WITHIN:?}"),
                _ => bail!("track {id} did not become ready: {track}"),
            }
        }
    }
    Ok(tracks)
}

/// Title, artist and album of the `index`th track: two vocabulary words, and an artist and
/// album that several tracks share.
fn track_tags(index: usize) -> (String, &'static str, &'static str) {
    let first = WORDS[(index * 5) % WORDS.len()];
    let second = WORDS[(index * 7 + 1) % WORDS.len()];
    let title = format!("{} {}", capitalised(first), capitalised(second));
    (title, ARTISTS[index % ARTISTS.len()], ALBUMS[index % ALBUMS.len()])
}

fn capitalised(word: &str) -> String {
    let mut letters = word.chars();
    letters.next().map(|first| first.to_uppercase().chain(letters).collect()).unwrap_or_default()
}

/// A mono 16-bit PCM WAV of `seconds` of two quiet tones whose pitch depends on `seed`, so
/// every seed is distinct content.
pub(crate) fn tone_wav(seconds: u32, seed: u32) -> Vec<u8> {
    let rate = 8_000_u32;
    let step = 0.05 * f64::from(seed + 1);
    let samples: Vec<i16> = (0..rate * seconds)
        .map(|index| {
            let at = f64::from(index);
            ((at * step).sin() * 3_000.0 + (at * step * 1.5).sin() * 1_000.0) as i16
        })
        .collect();
    ai::audio::wav(&samples, rate)
}

/// A `multipart/form-data` body: the text fields, then the audio as the `file` part.
pub(crate) fn multipart_upload(
    boundary: &str,
    file_name: &str,
    audio: &[u8],
    fields: &[(&str, &str)],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(audio.len() + 512);
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; \
             filename=\"{file_name}\"\r\ncontent-type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

// --- Load -----------------------------------------------------------------------------

/// What a client does next, and how often (weights out of their sum).
#[derive(Debug, Clone, Copy)]
enum Action {
    Search,
    Browse,
    ReadTrack,
    Stream,
    EditPlaylist,
    Likes,
    ReportPlay,
    Charts,
    Account,
    BadRequest,
}

const MIX: [(Action, u64); 10] = [
    (Action::Search, 18),
    (Action::Browse, 12),
    (Action::ReadTrack, 8),
    (Action::Stream, 16),
    (Action::EditPlaylist, 8),
    (Action::Likes, 8),
    (Action::ReportPlay, 12),
    (Action::Charts, 6),
    (Action::Account, 3),
    (Action::BadRequest, 9),
];

/// What a client does next, drawn by [`MIX`]'s weights.
fn action(dice: &mut Dice) -> Action {
    let total: u64 = MIX.iter().map(|(_, weight)| weight).sum();
    let mut roll = dice.below(total);
    for (action, weight) in MIX {
        if roll < weight {
            return action;
        }
        roll -= weight;
    }
    Action::Search
}

/// Counts of answers by outcome.
#[derive(Debug, Default, Clone, Copy)]
struct Outcomes {
    /// 1xx to 3xx.
    ok: u64,
    /// 4xx other than 429: expected for the bad requests.
    refused: u64,
    /// 429.
    limited: u64,
    server_errors: u64,
    transport_errors: u64,
}

impl Outcomes {
    fn add(&mut self, other: &Self) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.limited += other.limited;
        self.server_errors += other.server_errors;
        self.transport_errors += other.transport_errors;
    }

    fn total(&self) -> u64 {
        self.ok + self.refused + self.limited + self.server_errors + self.transport_errors
    }
}

/// Outcomes by request kind.
#[derive(Debug, Default)]
struct Tally(BTreeMap<&'static str, Outcomes>);

impl Tally {
    fn merge(&mut self, other: &Self) {
        for (kind, outcomes) in &other.0 {
            self.0.entry(kind).or_default().add(outcomes);
        }
    }

    fn all(&self) -> Outcomes {
        let mut all = Outcomes::default();
        for outcomes in self.0.values() {
            all.add(outcomes);
        }
        all
    }

    fn failures(&self) -> u64 {
        let all = self.all();
        all.server_errors + all.transport_errors
    }
}

/// What every client adds to as it goes, for the samples.
#[derive(Default)]
struct Progress {
    requests: AtomicU64,
    failures: AtomicU64,
    /// The first failures, described.
    described: Mutex<Vec<String>>,
}

/// A request's answer, its body read whole.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Option<Value> {
        if self.status.is_success() { serde_json::from_slice(&self.body).ok() } else { None }
    }

    fn text(&self) -> Option<&str> {
        if self.status.is_success() { std::str::from_utf8(&self.body).ok() } else { None }
    }
}

/// One client: a listener playing at random until the deadline.
struct Player {
    http: reqwest::Client,
    base: String,
    run: String,
    index: usize,
    listener: Listener,
    catalog: Arc<Vec<SeededTrack>>,
    dice: Dice,
    /// Listeners this client has signed up besides its own, for unique emails.
    sign_ups: u64,
    /// The signed master playlist URL of the last stream, to tamper with.
    last_master_url: Option<String>,
    tally: Tally,
    progress: Arc<Progress>,
}

impl Player {
    async fn play_until(&mut self, deadline: Instant) {
        let mut actions = 0;
        while Instant::now() < deadline && actions < MAX_ACTIONS_PER_CLIENT {
            actions += 1;
            match action(&mut self.dice) {
                Action::Search => self.search().await,
                Action::Browse => self.browse().await,
                Action::ReadTrack => self.read_track().await,
                Action::Stream => self.stream().await,
                Action::EditPlaylist => self.edit_playlist().await,
                Action::Likes => self.likes().await,
                Action::ReportPlay => self.report_play().await,
                Action::Charts => self.charts().await,
                Action::Account => self.account().await,
                Action::BadRequest => self.bad_request().await,
            }
        }
    }

    /// Sends a request, reads its answer whole and counts the outcome under `kind`.
    async fn call(
        &mut self,
        kind: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Option<Answer> {
        self.progress.requests.fetch_add(1, Ordering::Relaxed);
        let outcomes = self.tally.0.entry(kind).or_default();
        let request = match request.build() {
            Ok(request) => request,
            Err(error) => {
                outcomes.transport_errors += 1;
                self.note_failure(format!("{kind}: the request could not be built: {error}"));
                return None;
            }
        };
        let target = format!("{} {}", request.method(), request.url().path());
        let answer = match self.http.execute(request).await {
            Ok(response) => {
                let status = response.status();
                response.bytes().await.map(|body| Answer { status, body })
            }
            Err(error) => Err(error),
        };
        let outcomes = self.tally.0.entry(kind).or_default();
        match answer {
            Ok(answer) => {
                match answer.status.as_u16() {
                    100..=399 => outcomes.ok += 1,
                    429 => outcomes.limited += 1,
                    400..=499 => outcomes.refused += 1,
                    _ => {
                        outcomes.server_errors += 1;
                        let body = String::from_utf8_lossy(&answer.body);
                        let body: String = body.chars().take(300).collect();
                        self.note_failure(format!("{kind}: {target} → {}: {body}", answer.status));
                    }
                }
                Some(answer)
            }
            Err(error) => {
                outcomes.transport_errors += 1;
                self.note_failure(format!("{kind}: {target} → transport error: {error:#}"));
                None
            }
        }
    }

    fn note_failure(&self, description: String) {
        self.progress.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut described) = self.progress.described.lock()
            && described.len() < FAILURES_DESCRIBED
        {
            described.push(description);
        }
    }

    /// A request to the API as this listener.
    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.listener.access_token)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.api(reqwest::Method::GET, path)
    }

    fn track(&mut self) -> &SeededTrack {
        let index = self.dice.index(self.catalog.len());
        &self.catalog[index]
    }

    fn track_id(&mut self) -> String {
        self.track().id.clone()
    }

    fn page(&mut self) -> String {
        let limit = *self.dice.pick(&[5, 10, 20, 50, 100]);
        let offset = self.dice.below(TRACKS as u64 + 2);
        format!("limit={limit}&offset={offset}")
    }

    /// What a listener types: a word, its start, a typo, two words, or something unknown.
    fn search_terms(&mut self) -> String {
        let word = *self.dice.pick(&WORDS);
        match self.dice.below(6) {
            0 => word.to_owned(),
            1 => word[..3 + self.dice.index(2)].to_owned(),
            2 => typo(word, &mut self.dice),
            3 => {
                let other = *self.dice.pick(&WORDS);
                format!("{word}+{}", &other[..3])
            }
            4 => self.track().title.to_lowercase().replace(' ', "+"),
            _ => (0..5).map(|_| char::from(b'a' + self.dice.below(26) as u8)).collect(),
        }
    }

    async fn search(&mut self) {
        let mut path = format!("/v1/search?q={}", self.search_terms());
        if self.dice.percent(30) {
            let kinds = *self.dice.pick(&["track", "album", "artist", "track,album"]);
            path.push_str(&format!("&type={kinds}"));
        }
        if self.dice.percent(20) {
            path.push_str(&format!("&{}", self.page()));
        }
        self.call("search", self.get(&path)).await;
    }

    async fn browse(&mut self) {
        let page = self.page();
        match self.dice.below(6) {
            0 => {
                let sort = *self.dice.pick(&["recent", "title"]);
                self.call("list tracks", self.get(&format!("/v1/tracks?sort={sort}&{page}"))).await;
            }
            1 => {
                self.call("list albums", self.get(&format!("/v1/albums?{page}"))).await;
            }
            2 => {
                self.call("list artists", self.get(&format!("/v1/artists?{page}"))).await;
            }
            3 => {
                let album = self.track().album_id.clone();
                self.call("read album", self.get(&format!("/v1/albums/{album}"))).await;
            }
            4 => {
                let artist = self.track().artist_id.clone();
                self.call("read artist", self.get(&format!("/v1/artists/{artist}"))).await;
            }
            _ => {
                self.call("my playlists", self.get(&format!("/v1/me/playlists?{page}"))).await;
            }
        }
    }

    async fn read_track(&mut self) {
        let id = self.track_id();
        self.call("read track", self.get(&format!("/v1/tracks/{id}"))).await;
    }

    /// What a player does to start a track: the signed URL, the master playlist, one
    /// rendition's media playlist and one of its segments (a part of it, sometimes). Now
    /// and then DASH instead: the signed URL and the manifest.
    async fn stream(&mut self) {
        let id = self.track_id();
        if self.dice.percent(15) {
            let Some(answer) =
                self.call("dash url", self.get(&format!("/v1/tracks/{id}/dash"))).await
            else {
                return;
            };
            if let Some(url) =
                answer.json().and_then(|body| body["url"].as_str().map(str::to_owned))
            {
                self.call("dash manifest", self.http.get(url)).await;
            }
            return;
        }
        let Some(answer) =
            self.call("stream url", self.get(&format!("/v1/tracks/{id}/stream"))).await
        else {
            return;
        };
        let Some(master_url) =
            answer.json().and_then(|body| body["url"].as_str().map(str::to_owned))
        else {
            return;
        };
        self.last_master_url = Some(master_url.clone());
        let Some(master) = self.call("master playlist", self.http.get(&master_url)).await else {
            return;
        };
        let variants = playlist_uris(master.text().unwrap_or_default());
        if variants.is_empty() {
            return;
        }
        let media_url = resolve(&master_url, self.dice.pick(&variants).as_str());
        let Some(media) = self.call("media playlist", self.http.get(&media_url)).await else {
            return;
        };
        let files = playlist_uris(media.text().unwrap_or_default());
        if files.is_empty() {
            return;
        }
        let segment_url = resolve(&media_url, self.dice.pick(&files).as_str());
        if self.dice.percent(30) {
            let start = self.dice.below(256);
            let end = start + 1 + self.dice.below(16 * 1024);
            let request =
                self.http.get(&segment_url).header(header::RANGE, format!("bytes={start}-{end}"));
            self.call("segment range", request).await;
        } else {
            self.call("segment", self.http.get(&segment_url)).await;
        }
    }

    /// A playlist's life: created, filled, reordered, read, sometimes renamed and
    /// trimmed, then deleted.
    async fn edit_playlist(&mut self) {
        let name = format!("Soak {}", capitalised(self.dice.pick::<&str>(&WORDS)));
        let public = self.dice.percent(30);
        let create = self
            .api(reqwest::Method::POST, "/v1/playlists")
            .json(&json!({"name": name, "description": "made by the soak", "public": public}));
        let Some(created) = self.call("create playlist", create).await.and_then(|a| a.json())
        else {
            return;
        };
        let Some(id) = created["id"].as_str().map(str::to_owned) else { return };
        let mut snapshot = created["snapshot_id"].clone();
        let count = 2 + self.dice.index(5);
        let track_ids: Vec<String> = (0..count).map(|_| self.track_id()).collect();
        let path = format!("/v1/playlists/{id}/tracks");
        let add = self
            .api(reqwest::Method::POST, &path)
            .json(&json!({"track_ids": track_ids, "snapshot_id": snapshot}));
        if let Some(body) = self.call("add tracks", add).await.and_then(|a| a.json()) {
            snapshot = body["snapshot_id"].clone();
        }
        let range_start = self.dice.index(count);
        let insert_before = self.dice.index(count + 1);
        let reorder = self.api(reqwest::Method::PUT, &path).json(&json!({
            "range_start": range_start, "insert_before": insert_before, "range_length": 1,
            "snapshot_id": snapshot,
        }));
        if let Some(body) = self.call("reorder tracks", reorder).await.and_then(|a| a.json()) {
            snapshot = body["snapshot_id"].clone();
        }
        self.call("playlist tracks", self.get(&format!("{path}?limit=50"))).await;
        if self.dice.percent(30) {
            let rename = self
                .api(reqwest::Method::PATCH, &format!("/v1/playlists/{id}"))
                .json(&json!({"name": format!("{name} (edited)")}));
            self.call("rename playlist", rename).await;
            self.call("read playlist", self.get(&format!("/v1/playlists/{id}"))).await;
        }
        if self.dice.percent(20) {
            let remove = self
                .api(reqwest::Method::DELETE, &path)
                .json(&json!({"positions": [0], "snapshot_id": snapshot}));
            self.call("remove tracks", remove).await;
        }
        let delete = self.api(reqwest::Method::DELETE, &format!("/v1/playlists/{id}"));
        self.call("delete playlist", delete).await;
    }

    async fn likes(&mut self) {
        let id = self.track_id();
        let like = self.api(reqwest::Method::PUT, &format!("/v1/me/likes/{id}"));
        self.call("like", like).await;
        let page = self.page();
        self.call("likes", self.get(&format!("/v1/me/likes?{page}"))).await;
        if self.dice.percent(40) {
            let ids = [id.clone(), self.track_id(), self.track_id()].join(",");
            self.call("likes contain", self.get(&format!("/v1/me/likes/contains?ids={ids}"))).await;
        }
        if self.dice.percent(60) {
            let unlike = self.api(reqwest::Method::DELETE, &format!("/v1/me/likes/{id}"));
            self.call("unlike", unlike).await;
        }
    }

    /// A play (or a batch of offline ones) of part of a track, sometimes sent twice as a
    /// retry would be, then often the history.
    async fn report_play(&mut self) {
        let batch = if self.dice.percent(20) { 2 + self.dice.index(3) } else { 1 };
        let mut plays = Vec::with_capacity(batch);
        for _ in 0..batch {
            let track = self.track();
            let (track_id, duration_ms) = (track.id.clone(), track.duration_ms);
            let played_ms = 1 + self.dice.below(duration_ms);
            let minutes_ago = 1 + self.dice.below(600) as i64;
            let started_at = (Utc::now() - chrono::Duration::minutes(minutes_ago))
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            plays.push(json!({
                "id": Uuid::new_v4(), "track_id": track_id, "played_ms": played_ms,
                "started_at": started_at, "context": "soak",
            }));
        }
        let body = if batch == 1 { plays.remove(0) } else { Value::Array(plays) };
        let sends = if self.dice.percent(10) { 2 } else { 1 };
        for _ in 0..sends {
            let report = self.api(reqwest::Method::POST, "/v1/me/plays").json(&body);
            self.call("report play", report).await;
        }
        if self.dice.percent(50) {
            let page = self.page();
            self.call("history", self.get(&format!("/v1/me/history?{page}"))).await;
        }
    }

    async fn charts(&mut self) {
        if self.dice.percent(75) {
            let window = *self.dice.pick(&["1h", "24h", "7d", "30d"]);
            let page = self.page();
            let path = format!("/v1/analytics/top-tracks?window={window}&{page}");
            self.call("top tracks", self.get(&path)).await;
        } else {
            let interval = *self.dice.pick(&["hour", "day"]);
            let path = format!("/v1/analytics/plays?interval={interval}");
            self.call("play series", self.get(&path)).await;
        }
    }

    /// Sign-ups and sign-ins, each a new session (half of them signed out again), or a
    /// look at the account.
    async fn account(&mut self) {
        match self.dice.below(3) {
            0 => {
                self.sign_ups += 1;
                let email =
                    format!("soak-{}-{}-{}@example.com", self.run, self.index, self.sign_ups);
                let register = self
                    .http
                    .post(format!("{}/v1/auth/register", self.base))
                    .json(&json!({"email": email, "password": PASSWORD, "display_name": "Soak"}));
                let tokens = self.call("register", register).await.and_then(|a| a.json());
                self.use_session(tokens, "me (new listener)").await;
            }
            1 => {
                let login = self
                    .http
                    .post(format!("{}/v1/auth/login", self.base))
                    .json(&json!({"email": self.listener.email, "password": PASSWORD}));
                let tokens = self.call("login", login).await.and_then(|a| a.json());
                self.use_session(tokens, "me (new session)").await;
            }
            _ => {
                self.call("me", self.get("/v1/me")).await;
                self.call("sessions", self.get("/v1/me/sessions?limit=5")).await;
            }
        }
    }

    /// Uses a new session once, sometimes refreshes it, and signs half of them out.
    async fn use_session(&mut self, tokens: Option<Value>, kind: &'static str) {
        let Some(tokens) = tokens else { return };
        let access = tokens["access_token"].as_str().unwrap_or_default().to_owned();
        let mut refresh = tokens["refresh_token"].as_str().unwrap_or_default().to_owned();
        let me = self.http.get(format!("{}/v1/me", self.base)).bearer_auth(&access);
        self.call(kind, me).await;
        if self.dice.percent(30) {
            let request = self
                .http
                .post(format!("{}/v1/auth/refresh", self.base))
                .json(&json!({"refresh_token": refresh}));
            if let Some(body) = self.call("refresh", request).await.and_then(|a| a.json()) {
                refresh = body["refresh_token"].as_str().unwrap_or_default().to_owned();
            }
        }
        if self.dice.percent(50) {
            let logout = self
                .http
                .post(format!("{}/v1/auth/logout", self.base))
                .bearer_auth(&access)
                .json(&json!({"refresh_token": refresh}));
            self.call("logout", logout).await;
        }
    }

    /// A request the server must refuse with a 4xx, never a 5xx.
    async fn bad_request(&mut self) {
        let unknown = Uuid::now_v7();
        match self.dice.below(12) {
            0 => {
                let request = self
                    .api(reqwest::Method::POST, "/v1/playlists")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(r#"{"name": "half"#);
                self.call("bad: malformed json", request).await;
            }
            1 => {
                self.call("bad: unknown track", self.get(&format!("/v1/tracks/{unknown}"))).await;
            }
            2 => {
                let path = format!("/v1/playlists/{unknown}/tracks");
                self.call("bad: unknown playlist", self.get(&path)).await;
            }
            3 => {
                let path = *self.dice.pick(&[
                    "/v1/tracks/not-a-track",
                    "/v1/albums/42",
                    "/v1/artists/%00",
                ]);
                self.call("bad: malformed id", self.get(path)).await;
            }
            4 => {
                let path = *self.dice.pick(&[
                    "/v1/tracks?limit=many",
                    "/v1/tracks?sort=loudest",
                    "/v1/albums?limit=1000",
                    "/v1/artists?offset=-1",
                    "/v1/search?q=echo&type=song",
                    "/v1/analytics/top-tracks?window=fortnight",
                    "/v1/analytics/plays?interval=minute",
                    "/v1/me/likes/contains?ids=not-an-id",
                ]);
                self.call("bad: query", self.get(path)).await;
            }
            5 => {
                let token = tampered_token(&self.listener.access_token);
                let request = self.http.get(format!("{}/v1/me", self.base)).bearer_auth(token);
                self.call("bad: tampered token", request).await;
            }
            6 => {
                let token = *self.dice.pick(&["not.a.token", "", "eyJhbGciOiJub25lIn0.e30."]);
                let request =
                    self.http.get(format!("{}/v1/me/likes", self.base)).bearer_auth(token);
                self.call("bad: garbage token", request).await;
            }
            7 => {
                self.call("bad: no token", self.http.get(format!("{}/v1/me/history", self.base)))
                    .await;
            }
            8 => {
                let like = self.api(reqwest::Method::PUT, &format!("/v1/me/likes/{unknown}"));
                self.call("bad: like unknown track", like).await;
            }
            9 => {
                let body = if self.dice.percent(50) {
                    json!({"track_id": unknown, "played_ms": 1000})
                } else {
                    json!({"track_id": self.track_id(), "played_ms": "long"})
                };
                let report = self.api(reqwest::Method::POST, "/v1/me/plays").json(&body);
                self.call("bad: play", report).await;
            }
            10 => match self.last_master_url.clone() {
                Some(url) => {
                    self.call("bad: tampered signature", self.http.get(tampered_signature(&url)))
                        .await;
                }
                None => {
                    self.call("bad: unknown track", self.get(&format!("/v1/tracks/{unknown}")))
                        .await;
                }
            },
            _ => {
                // An address no one registered: a throttle window per email, as attackers make.
                let login = self.http.post(format!("{}/v1/auth/login", self.base)).json(
                    &json!({"email": format!("nobody-{unknown}@example.com"), "password": "wrong"}),
                );
                self.call("bad: wrong password", login).await;
            }
        }
    }
}

/// `word` with one letter dropped, doubled or two swapped: within one edit.
fn typo(word: &str, dice: &mut Dice) -> String {
    let mut letters: Vec<char> = word.chars().collect();
    let at = 1 + dice.index(letters.len() - 2);
    match dice.below(3) {
        0 => {
            letters.remove(at);
        }
        1 => letters.insert(at, letters[at]),
        _ => letters.swap(at, at + 1),
    }
    letters.into_iter().collect()
}

/// The token with a character in the middle of its signature changed.
fn tampered_token(token: &str) -> String {
    let mut characters: Vec<char> = token.chars().collect();
    let signature_start = token.rfind('.').map_or(0, |dot| dot + 1);
    let at = signature_start + (characters.len() - signature_start) / 2;
    if let Some(character) = characters.get_mut(at) {
        *character = if *character == 'A' { 'B' } else { 'A' };
    }
    characters.into_iter().collect()
}

/// The signed URL with its signature's first character changed.
fn tampered_signature(url: &str) -> String {
    match url.find("sig=") {
        Some(at) => {
            let start = at + "sig=".len();
            let flipped = if url[start..].starts_with('A') { "B" } else { "A" };
            format!("{}{flipped}{}", &url[..start], url.get(start + 1..).unwrap_or_default())
        }
        None => format!("{url}&sig=AAAA"),
    }
}

/// The URIs in an HLS playlist: its entries and its `EXT-X-MAP` init segment.
fn playlist_uris(playlist: &str) -> Vec<String> {
    let mut uris: Vec<String> = playlist
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    for line in playlist.lines().filter(|line| line.starts_with("#EXT-X-MAP:")) {
        if let Some(uri) = line.split('"').nth(1) {
            uris.push(uri.to_owned());
        }
    }
    uris
}

/// A playlist entry (`64k/index.m3u8?…`) as a URL, relative to the playlist's own.
fn resolve(base: &str, relative: &str) -> String {
    if relative.starts_with("http://") || relative.starts_with("https://") {
        return relative.to_owned();
    }
    let path = base.split('?').next().unwrap_or(base);
    let directory = &path[..path.rfind('/').map_or(path.len(), |slash| slash + 1)];
    format!("{directory}{relative}")
}

// --- Samples --------------------------------------------------------------------------

/// One cache's figures from `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
struct CacheFigures {
    bytes: Option<f64>,
    entries: Option<f64>,
}

/// The server's memory at one moment of the run.
struct Sample {
    elapsed: Duration,
    requests: u64,
    failures: u64,
    /// `process_resident_memory_bytes` from `/metrics`.
    metric_rss: Option<f64>,
    /// VmRSS from `/proc/<pid>/status`, in bytes.
    proc_rss: Option<f64>,
    /// RssAnon, the part of VmRSS that is not mapped files, in bytes.
    proc_anon: Option<f64>,
    caches: BTreeMap<String, CacheFigures>,
    /// Why `/metrics` could not be read, when it could not.
    metrics_error: Option<String>,
}

impl Sample {
    /// The RSS the summary judges by: the kernel's figure when `--pid` was given.
    fn rss(&self) -> Option<f64> {
        self.proc_rss.or(self.metric_rss)
    }

    fn line(&self) -> String {
        let mut line = format!(
            "{:>6.0} s {:>9} requests {:>4} failed  rss {}  vmrss {} (anon {})  caches",
            self.elapsed.as_secs_f64(),
            self.requests,
            self.failures,
            mebibytes(self.metric_rss),
            mebibytes(self.proc_rss),
            mebibytes(self.proc_anon),
        );
        if self.caches.is_empty() {
            line.push_str(" -");
        }
        for (cache, figures) in &self.caches {
            let entries = figures.entries.map_or_else(|| "-".to_owned(), |n| format!("{n:.0}"));
            line.push_str(&format!(" {cache}={}/{entries}", mebibytes(figures.bytes)));
        }
        if let Some(error) = &self.metrics_error {
            line.push_str(&format!("  (/metrics: {error})"));
        }
        line
    }
}

fn mebibytes(bytes: Option<f64>) -> String {
    bytes.map_or_else(|| "-".to_owned(), |bytes| format!("{:.1} MiB", bytes / 1_048_576.0))
}

struct Sampler {
    http: reqwest::Client,
    base: String,
    pid: Option<u32>,
    started: Instant,
}

impl Sampler {
    async fn take(&self, progress: &Progress) -> Sample {
        let mut sample = Sample {
            elapsed: self.started.elapsed(),
            requests: progress.requests.load(Ordering::Relaxed),
            failures: progress.failures.load(Ordering::Relaxed),
            metric_rss: None,
            proc_rss: self.pid.and_then(|pid| process_status_bytes(pid, "VmRSS:")),
            proc_anon: self.pid.and_then(|pid| process_status_bytes(pid, "RssAnon:")),
            caches: BTreeMap::new(),
            metrics_error: None,
        };
        match self.metrics().await {
            Ok(text) => {
                for (name, cache, value) in text.lines().filter_map(metric_line) {
                    match (name, cache) {
                        ("process_resident_memory_bytes", _) => sample.metric_rss = Some(value),
                        ("memory_cache_bytes", Some(cache)) => {
                            let figures = sample.caches.entry(cache).or_default();
                            figures.bytes = Some(figures.bytes.unwrap_or(0.0) + value);
                        }
                        ("memory_cache_entries", Some(cache)) => {
                            let figures = sample.caches.entry(cache).or_default();
                            figures.entries = Some(figures.entries.unwrap_or(0.0) + value);
                        }
                        _ => {}
                    }
                }
            }
            Err(error) => sample.metrics_error = Some(format!("{error:#}")),
        }
        sample
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        let response = self.http.get(format!("{}/metrics", self.base)).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{status}");
        }
        Ok(text)
    }
}

/// A Prometheus text line's metric name, `cache` label and value; `None` for comments.
fn metric_line(line: &str) -> Option<(&str, Option<String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let (labels, rest) = if line[name_end..].starts_with('{') {
        let close = line.rfind('}')?;
        (&line[name_end + 1..close], &line[close + 1..])
    } else {
        ("", &line[name_end..])
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    let cache = labels
        .split("cache=\"")
        .nth(1)
        .and_then(|after| after.split('"').next())
        .map(str::to_owned);
    Some((name, cache, value))
}

/// A figure in kB from `/proc/<pid>/status` (`field` is e.g. `VmRSS:`), in bytes.
pub(crate) fn process_status_bytes(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kibibytes: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kibibytes * 1024.0)
}

// --- Summary --------------------------------------------------------------------------

fn summarise(
    args: &SoakArgs,
    concurrency: usize,
    elapsed: Duration,
    tally: &Tally,
    samples: &[Sample],
    described: &[String],
) -> String {
    let all = tally.all();
    let mut lines = vec![format!(
        "soak: {concurrency} clients, {:.0} s: {} requests ({:.0} req/s): {} ok, {} refused \
         (4xx), {} rate limited (429), {} 5xx, {} transport errors",
        elapsed.as_secs_f64(),
        all.total(),
        all.total() as f64 / elapsed.as_secs_f64().max(0.001),
        all.ok,
        all.refused,
        all.limited,
        all.server_errors,
        all.transport_errors,
    )];
    lines.push(format!(
        "  {:<28} {:>8} {:>8} {:>8} {:>6} {:>9}",
        "request", "ok", "4xx", "429", "5xx", "transport"
    ));
    for (kind, outcomes) in &tally.0 {
        lines.push(format!(
            "  {kind:<28} {:>8} {:>8} {:>8} {:>6} {:>9}",
            outcomes.ok,
            outcomes.refused,
            outcomes.limited,
            outcomes.server_errors,
            outcomes.transport_errors,
        ));
    }
    if all.limited > 0 {
        lines.push(
            "  answers with 429 mean a budget refused the load: raise the limits (see \
             bench/src/soak.rs)"
                .to_owned(),
        );
    }
    if !described.is_empty() {
        lines.push(format!("  the first {} failures:", described.len()));
        lines.extend(described.iter().map(|failure| format!("    {failure}")));
    }
    lines.push(memory_verdict(args, samples));
    lines.join("\n")
}

/// RSS after warm-up, its maximum, the last quarter's range, and whether it levelled off.
fn memory_verdict(args: &SoakArgs, samples: &[Sample]) -> String {
    // With the process at hand, its anonymous memory (the heap) is what is judged: the
    // file-backed rest is the databases' mapped pages, which the system takes back at will.
    let source = match args.pid {
        Some(pid) => format!("anonymous RSS of pid {pid}"),
        None => "process_resident_memory_bytes".to_owned(),
    };
    let figures: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|sample| {
            let figure = if args.pid.is_some() { sample.proc_anon } else { sample.rss() };
            figure.map(|bytes| (sample.elapsed.as_secs_f64(), bytes))
        })
        .collect();
    let Some(&(_, idle)) = figures.first() else {
        return "memory: no RSS figures: /metrics has no process_resident_memory_bytes and no \
                --pid was given"
            .to_owned();
    };
    let run = args.seconds as f64;
    let between = |from: f64, to: f64| {
        figures.iter().filter(move |(at, _)| *at > from && *at <= to).map(|(_, rss)| *rss)
    };
    let warm_up = (run * WARM_UP_SHARE).max(args.sample_every.as_secs_f64());
    let warmed = figures.iter().find(|(at, _)| *at >= warm_up).copied();
    let max = largest(figures.iter().map(|(_, rss)| *rss)).unwrap_or(idle);
    let quarter_min = smallest(between(run * 0.75, f64::INFINITY));
    let quarter_max = largest(between(run * 0.75, f64::INFINITY));
    let third_quarter = mean(between(run * 0.5, run * 0.75));
    let last_quarter = mean(between(run * 0.75, f64::INFINITY));
    let mib = |bytes: f64| bytes / 1_048_576.0;

    let mut line = format!("memory ({source}): {:.1} MiB before the load", mib(idle));
    match warmed {
        Some((at, rss)) => {
            line.push_str(&format!(", {:.1} MiB at {at:.0} s (after warm-up)", mib(rss)))
        }
        None => line.push_str(", no sample after warm-up"),
    }
    line.push_str(&format!(", max {:.1} MiB", mib(max)));
    if let (Some(low), Some(high)) = (quarter_min, quarter_max) {
        line.push_str(&format!(", last quarter {:.1}–{:.1} MiB", mib(low), mib(high)));
    }
    line.push_str("\nverdict: ");
    match (third_quarter, last_quarter) {
        (Some(third), Some(last)) => {
            let growth = last - third;
            let share = growth / third * 100.0;
            let allowed = PLATEAU_GROWTH * 100.0;
            if growth < PLATEAU_GROWTH * third {
                line.push_str(&format!(
                    "plateaued: the last quarter's mean is {:+.1} MiB ({share:+.1} %) from the \
                     third quarter's {:.1} MiB, under {allowed:.0} %",
                    mib(growth),
                    mib(third),
                ));
            } else {
                line.push_str(&format!(
                    "still growing: the last quarter's mean is {:+.1} MiB ({share:+.1} %) above \
                     the third quarter's {:.1} MiB, {allowed:.0} % or more",
                    mib(growth),
                    mib(third),
                ));
            }
        }
        _ => line.push_str("too few samples to compare the two halves; sample more often"),
    }
    line
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.fold((0.0, 0_u32), |(sum, count), value| (sum + value, count + 1));
    (count > 0).then(|| sum / f64::from(count))
}

fn largest(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.reduce(f64::max)
}

fn smallest(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.reduce(f64::min)
}
