//! The live channel under load, against a running server: many open `GET /v1/me/live`
//! streams held by one process (the server's memory per stream), and how long a presence
//! update takes from the heartbeat that makes it to each follower's stream.
//!
//! One listener (the artist) is followed by `followers` listeners, whose streams share
//! `connections` between them. The artist then sends `updates` heartbeats, each naming its
//! number as `position_ms`, and every stream times the `now_playing` event that carries it
//! against the moment the heartbeat was sent (same process, same clock).

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::StreamExt;
use hdrhistogram::Histogram;
use reqwest::header;
use serde_json::{Value, json};

use crate::{
    PASSWORD, drive,
    soak::{multipart_upload, process_status_bytes, successful_json, tone_wav},
};

pub struct LiveArgs {
    pub url: String,
    pub connections: usize,
    pub followers: usize,
    pub updates: usize,
    pub pid: Option<u32>,
}

struct Listener {
    id: String,
    token: String,
}

async fn register(http: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<Listener> {
    let response = http
        .post(format!("{base}/v1/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "display_name": "Live"}))
        .send()
        .await
        .context("registering a listener")?;
    let body = successful_json(response, "registering a listener").await?;
    Ok(Listener {
        id: body["user"]["id"].as_str().context("no user id")?.to_owned(),
        token: body["access_token"].as_str().context("no access token")?.to_owned(),
    })
}

/// Uploads a short track as `artist` and waits until it is ready; returns its id.
async fn ready_track(
    http: &reqwest::Client,
    base: &str,
    artist: &Listener,
) -> anyhow::Result<String> {
    let boundary = format!("live-{}", uuid::Uuid::now_v7().simple());
    let seed = u32::try_from(uuid::Uuid::now_v7().as_u128() % 1_000).unwrap_or(1);
    let body = multipart_upload(&boundary, "live.wav", &tone_wav(5, seed), &[("title", "Live")]);
    let response = http
        .post(format!("{base}/v1/tracks"))
        .bearer_auth(&artist.token)
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await?;
    let id = successful_json(response, "uploading a track").await?["id"]
        .as_str()
        .context("no track id")?
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let response =
            http.get(format!("{base}/v1/tracks/{id}")).bearer_auth(&artist.token).send().await?;
        let track = successful_json(response, "reading the track").await?;
        match track["status"].as_str() {
            Some("ready") => return Ok(id),
            Some("processing") if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            _ => bail!("the track did not become ready: {track}"),
        }
    }
}

/// What every stream shares: when each update was sent, and what arrived.
struct Shared {
    sent: Mutex<Vec<Option<Instant>>>,
    latencies: Mutex<Histogram<u64>>,
    ready: AtomicUsize,
    delivered: AtomicUsize,
    failed: AtomicUsize,
}

/// Reads one live stream until the run ends, timing each `now_playing`.
async fn hold(http: reqwest::Client, url: String, token: String, shared: Arc<Shared>) {
    let response = match http.get(&url).bearer_auth(&token).send().await {
        Ok(response) if response.status().is_success() => response,
        _ => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        let arrived = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let event = block.lines().find_map(|line| line.strip_prefix("event:")).map(str::trim);
            let data = block.lines().find_map(|line| line.strip_prefix("data:")).map(str::trim);
            match event {
                Some("ready") => {
                    shared.ready.fetch_add(1, Ordering::Relaxed);
                }
                Some("now_playing") => {
                    let update = data
                        .and_then(|data| serde_json::from_str::<Value>(data).ok())
                        .and_then(|playing| playing["position_ms"].as_u64())
                        .and_then(|n| usize::try_from(n).ok());
                    let sent = update.and_then(|n| {
                        shared.sent.lock().unwrap_or_else(PoisonError::into_inner).get(n).copied()
                    });
                    if let Some(Some(sent)) = sent {
                        let micros = u64::try_from(arrived.duration_since(sent).as_micros())
                            .unwrap_or(u64::MAX);
                        let mut latencies =
                            shared.latencies.lock().unwrap_or_else(PoisonError::into_inner);
                        let _ = latencies.record(micros.max(1));
                        shared.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
        }
    }
}

fn rss(pid: Option<u32>) -> Option<f64> {
    pid.and_then(|pid| process_status_bytes(pid, "VmRSS:"))
}

pub async fn run(args: LiveArgs) -> anyhow::Result<String> {
    kernel::sendfile::raise_open_file_limit();
    let base = args.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let followers = args.followers.max(1);
    let connections = args.connections.max(followers);

    let artist = register(&http, &base, &format!("live-{run}-artist@example.com")).await?;
    let track = ready_track(&http, &base, &artist).await?;
    let mut listeners = Vec::with_capacity(followers);
    let mut registering = futures::stream::iter(0..followers)
        .map(|index| {
            let (http, base, artist_id) = (http.clone(), base.clone(), artist.id.clone());
            let email = format!("live-{run}-{index}@example.com");
            async move {
                let listener = register(&http, &base, &email).await?;
                let response = http
                    .put(format!("{base}/v1/me/following/{artist_id}"))
                    .bearer_auth(&listener.token)
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("following answered {}", response.status());
                }
                anyhow::Ok(listener)
            }
        })
        .buffer_unordered(16);
    while let Some(listener) = registering.next().await {
        listeners.push(listener?);
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss(args.pid);
    let shared = Arc::new(Shared {
        sent: Mutex::new(vec![None; args.updates]),
        latencies: Mutex::new(drive::histogram()?),
        ready: AtomicUsize::new(0),
        delivered: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    });
    let streams = reqwest::Client::builder().build()?;
    let opened = Instant::now();
    let mut held = Vec::with_capacity(connections);
    for index in 0..connections {
        let listener = &listeners[index % listeners.len()];
        held.push(tokio::spawn(hold(
            streams.clone(),
            format!("{base}/v1/me/live"),
            listener.token.clone(),
            shared.clone(),
        )));
        if index % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < connections
    {
        if Instant::now() > deadline {
            bail!("only {} of {connections} streams opened", shared.ready.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_secs = opened.elapsed().as_secs_f64();
    let failed = shared.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} of {connections} streams could not be opened");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss(args.pid);

    for update in 0..args.updates {
        shared.sent.lock().unwrap_or_else(PoisonError::into_inner)[update] = Some(Instant::now());
        let response = http
            .put(format!("{base}/v1/me/now-playing"))
            .bearer_auth(&artist.token)
            .json(&json!({"track_id": track, "position_ms": update}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("a heartbeat answered {}: {}", response.status(), response.text().await?);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let expected = connections * args.updates;
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for stream in held {
        stream.abort();
    }
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let latencies = shared.latencies.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let ms = |quantile: f64| latencies.value_at_quantile(quantile) as f64 / 1000.0;
    let memory = match (before, after) {
        (Some(before), Some(after)) => format!(
            "server RSS {:.1} MiB → {:.1} MiB with the streams open: {:.1} KiB per stream",
            before / 1_048_576.0,
            after / 1_048_576.0,
            (after - before) / 1024.0 / connections as f64
        ),
        _ => "server memory not read (pass --pid)".to_owned(),
    };
    Ok(format!(
        "live: {connections} streams for {followers} followers opened in {open_secs:.1} s; \
         {memory}\n\
         presence → stream, {} updates × {connections} streams: {delivered} of {expected} \
         delivered; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.updates,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(1.0),
    ))
}
