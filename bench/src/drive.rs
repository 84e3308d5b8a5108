//! The load loop every HTTP scenario runs: clients send requests back to back, and the
//! answers after a warm-up are timed into one histogram.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;

/// Latencies in microseconds, from 1 µs to a minute, to three significant figures.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// Runs `clients` clients for `warm_up + measure`; client `i` sends what `client(i)`'s
/// closure builds, one request after another. Answers after the warm-up are timed when
/// they succeed (2xx, body read) and counted as failures otherwise. Returns the latencies
/// and the failures.
pub async fn drive<C, R>(
    clients: usize,
    warm_up: Duration,
    measure: Duration,
    client: C,
) -> anyhow::Result<(Histogram<u64>, u64)>
where
    C: Fn(usize) -> R,
    R: FnMut() -> reqwest::RequestBuilder + Send + 'static,
{
    let started = Instant::now();
    let mut workers = Vec::with_capacity(clients);
    for index in 0..clients {
        let mut next = client(index);
        workers.push(tokio::spawn(async move {
            let mut latencies = histogram()?;
            let mut failures = 0_u64;
            while started.elapsed() < warm_up + measure {
                let request = next();
                let sent = Instant::now();
                let ok = match request.send().await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let _ = response.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                if started.elapsed() < warm_up {
                    continue;
                }
                if ok {
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latencies.saturating_record(micros.max(1));
                } else {
                    failures += 1;
                }
            }
            anyhow::Ok((latencies, failures))
        }));
    }
    let mut latencies = histogram()?;
    let mut failures = 0;
    for worker in workers {
        let (local, failed) = worker.await.context("a client panicked")??;
        latencies.add(&local)?;
        failures += failed;
    }
    Ok((latencies, failures))
}
