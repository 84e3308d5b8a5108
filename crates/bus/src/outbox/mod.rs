//! The transactional outbox's relay. A service writes each event to its own `outbox` table
//! in the same transaction as the change it describes; the relay publishes pending events,
//! oldest first (so in order per key), and marks them published only once the bus has
//! them durably. A crash between the two re-publishes a batch, which the bus and the
//! consumers both recognise by event id; a bus outage delays events, never loses them.

pub mod sql;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::background::{Background, StopSignal};
use uuid::Uuid;

use crate::{envelope::Envelope, port::EventBus};

pub type OutboxError = Box<dyn std::error::Error + Send + Sync>;

/// A service's outbox table, as the relay sees it.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Unpublished events, oldest first.
    async fn pending(&self, limit: usize) -> Result<Vec<Envelope>, OutboxError>;
    async fn mark_published(&self, ids: &[Uuid], at: DateTime<Utc>) -> Result<(), OutboxError>;
    /// Deletes events published before `before`; returns how many.
    async fn prune_published(&self, before: DateTime<Utc>) -> Result<u64, OutboxError>;
}

#[derive(Debug, Clone)]
pub struct RelayOptions {
    pub batch: usize,
    /// How often an idle relay looks for new events.
    pub idle_poll: Duration,
    /// The longest pause between attempts while the bus is unavailable.
    pub max_backoff: Duration,
    /// How long published events stay in the outbox (for inspection) before pruning.
    pub keep_published: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            idle_poll: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            keep_published: Duration::from_secs(24 * 3600),
        }
    }
}

pub struct Relay {
    service: &'static str,
    store: Arc<dyn OutboxStore>,
    bus: Arc<dyn EventBus>,
    options: RelayOptions,
}

impl Relay {
    pub fn new(
        service: &'static str,
        store: Arc<dyn OutboxStore>,
        bus: Arc<dyn EventBus>,
        options: RelayOptions,
    ) -> Self {
        metrics::counter!("outbox_published_total", "service" => service).increment(0);
        Self { service, store, bus, options }
    }

    /// Publishes one batch; returns how many events it published.
    pub async fn publish_pending(&self) -> Result<usize, OutboxError> {
        let pending = self.store.pending(self.options.batch).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let messages: Vec<_> = pending.iter().map(Envelope::to_message).collect();
        self.bus.publish(&messages).await?;
        let ids: Vec<Uuid> = pending.iter().map(|envelope| envelope.id).collect();
        self.store.mark_published(&ids, Utc::now()).await?;
        metrics::counter!("outbox_published_total", "service" => self.service)
            .increment(ids.len() as u64);
        Ok(ids.len())
    }

    pub fn spawn(self) -> Background {
        Background::spawn(|stopped| self.run(stopped))
    }

    async fn run(self, mut stopped: StopSignal) {
        let mut backoff = self.options.idle_poll;
        let mut last_prune = tokio::time::Instant::now();
        loop {
            let pause = match self.publish_pending().await {
                Ok(published) if published == self.options.batch => Duration::ZERO,
                Ok(_) => {
                    backoff = self.options.idle_poll;
                    self.options.idle_poll
                }
                Err(error) => {
                    tracing::warn!(service = self.service, %error, retry_in_ms = backoff.as_millis() as u64, "outbox relay cannot publish yet");
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                    pause
                }
            };
            if last_prune.elapsed() > Duration::from_secs(3600) {
                last_prune = tokio::time::Instant::now();
                self.prune().await;
            }
            tokio::select! {
                _ = &mut stopped => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        // One last round so that what was committed before shutdown goes out now.
        while let Ok(published) = self.publish_pending().await {
            if published < self.options.batch {
                break;
            }
        }
    }

    async fn prune(&self) {
        let keep = chrono::TimeDelta::from_std(self.options.keep_published)
            .unwrap_or(chrono::TimeDelta::MAX);
        match self.store.prune_published(Utc::now() - keep).await {
            Ok(pruned) if pruned > 0 => {
                tracing::debug!(service = self.service, pruned, "pruned outbox")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(service = self.service, %error, "cannot prune outbox"),
        }
    }
}
