//! Event bus throughput and latency: one producer publishes fixed-size events in batches
//! while one consumer group reads them; reports events/s end to end and the latency from
//! publish to consume.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use bus::{BusConfig, EventBus, Message};
use hdrhistogram::Histogram;
use kernel::engine::EngineUrl;

pub struct EventsArgs {
    pub url: Option<String>,
    pub events: usize,
    pub size: usize,
    pub batch: usize,
}

pub async fn run(args: EventsArgs) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let config = BusConfig {
        url: args.url.clone().map(EngineUrl::new),
        partitions: 10,
        replication_factor: 1,
        ..BusConfig::default()
    };
    let bus: Arc<dyn EventBus> = bus::connect(&config, dir.path()).await?;
    let topic = format!("bench.{}", uuid::Uuid::now_v7().simple());
    bus.ensure_topic(&topic).await?;

    let consumer_bus = bus.clone();
    let consumer_topic = topic.clone();
    let expected = args.events;
    let epoch = Instant::now();
    let consumer = tokio::spawn(async move {
        let mut subscription = consumer_bus.subscribe(&consumer_topic, "bench").await?;
        let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
        let mut received = 0;
        while received < expected {
            let records = subscription.poll(1000, Duration::from_secs(5)).await?;
            let now = epoch.elapsed().as_micros() as u64;
            for record in &records {
                let sent = u64::from_le_bytes(record.value[..8].try_into().unwrap_or_default());
                latency.saturating_record(now.saturating_sub(sent).max(1));
            }
            received += records.len();
            if let Some(last) = records.last() {
                subscription.commit(std::slice::from_ref(last)).await?;
            }
        }
        anyhow::Ok((latency, Instant::now()))
    });

    let started = Instant::now();
    let mut published = 0;
    while published < args.events {
        let count = args.batch.min(args.events - published);
        let sent = epoch.elapsed().as_micros() as u64;
        let batch: Vec<Message> = (0..count)
            .map(|i| {
                let mut value = vec![b'x'; args.size.max(8)];
                value[..8].copy_from_slice(&sent.to_le_bytes());
                Message {
                    topic: topic.clone(),
                    key: format!("user-{}", (published + i) % 1000),
                    id: None,
                    value,
                }
            })
            .collect();
        bus.publish(&batch).await?;
        published += count;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let (latency, finished) = tokio::time::timeout(Duration::from_secs(300), consumer)
        .await
        .context("the consumer did not receive every event in time")???;
    let total_secs = finished.duration_since(started).as_secs_f64();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(format!(
        "{} bus, {} events of {} B in batches of {}: publish {:.0} events/s, end to end {:.0} events/s, \
         publish→consume p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        bus.engine(),
        args.events,
        args.size,
        args.batch,
        args.events as f64 / publish_secs,
        args.events as f64 / total_secs,
        ms(0.5),
        ms(0.99),
        latency.max() as f64 / 1000.0,
    ))
}
