//! GETs from a list of URLs at a fixed concurrency: each client walks the list from its own
//! starting point, reading every body to the end, so that any server (Tonearm's signed
//! media, or nginx serving the same files) meets the same requests. Reports requests/s,
//! bytes/s and latency from request to last body byte.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

pub struct UrlsArgs {
    pub file: PathBuf,
    pub concurrency: usize,
    pub seconds: u64,
}

/// What one client saw after the warm-up.
#[derive(Default)]
struct Tally {
    ok: u64,
    failures: u64,
    bytes: u64,
}

pub async fn run(args: UrlsArgs) -> anyhow::Result<String> {
    let text = tokio::fs::read_to_string(&args.file)
        .await
        .with_context(|| format!("reading {}", args.file.display()))?;
    let urls: Arc<Vec<String>> = Arc::new(
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
    );
    if urls.is_empty() {
        bail!("{} lists no URLs", args.file.display());
    }
    let concurrency = args.concurrency.max(1);
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let warm_up = Duration::from_secs(2);
    let measure = Duration::from_secs(args.seconds);
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        let (client, urls, histogram) = (client.clone(), urls.clone(), histogram.clone());
        workers.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let mut tally = Tally::default();
            // Spread the clients over the list, as players spread over tracks and renditions.
            let mut next = index * urls.len() / concurrency;
            while started.elapsed() < warm_up + measure {
                let sent = Instant::now();
                let url = &urls[next % urls.len()];
                next += 1;
                let (ok, bytes) = fetch(&client, url).await;
                if started.elapsed() < warm_up {
                    continue;
                }
                if ok {
                    tally.ok += 1;
                    tally.bytes += bytes;
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    local.saturating_record(micros.max(1));
                } else {
                    tally.failures += 1;
                }
            }
            histogram.lock().await.add(&local).expect("same bounds");
            tally
        }));
    }
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await?;
        total.ok += tally.ok;
        total.failures += tally.failures;
        total.bytes += tally.bytes;
    }
    let histogram = histogram.lock().await;
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    let secs = measure.as_secs_f64();
    Ok(format!(
        "urls: {} URLs, {concurrency} clients, {} s: {} ok, {} failed, {:.0} req/s, {:.1} MB/s, \
         {:.1} KB/response, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        urls.len(),
        args.seconds,
        total.ok,
        total.failures,
        total.ok as f64 / secs,
        total.bytes as f64 / secs / 1e6,
        total.bytes as f64 / total.ok.max(1) as f64 / 1e3,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        histogram.max() as f64 / 1000.0,
    ))
}

/// One GET, its body read to the end chunk by chunk (counted, not kept). A success is a
/// 2xx whose body arrived whole.
async fn fetch(client: &reqwest::Client, url: &str) -> (bool, u64) {
    let Ok(mut response) = client.get(url).send().await else { return (false, 0) };
    let success = response.status().is_success();
    let expected = response.content_length();
    let mut bytes = 0_u64;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes += chunk.len() as u64,
            Ok(None) => break,
            Err(_) => return (false, bytes),
        }
    }
    (success && expected.is_none_or(|length| length == bytes), bytes)
}
