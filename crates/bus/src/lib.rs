//! The event bus every Tonearm service publishes to and consumes from.
//!
//! It owns the [`Envelope`] every event travels in, the typed, versioned definitions of
//! every event ([`events`]), the [`EventBus`] port with its two adapters — an embedded,
//! durable, partitioned log under the data dir ([`embedded`]) and Kafka ([`kafka`]) — the
//! transactional-outbox relay ([`outbox`]), the consumer runner that gives handlers
//! at-least-once delivery with retries and a dead-letter topic ([`consumer`]), and the
//! processed-id record that makes consumers idempotent ([`inbox`]).

pub mod consumer;
pub mod embedded;
pub mod envelope;
pub mod events;
pub mod inbox;
pub mod kafka;
pub mod outbox;
mod port;

use std::{path::Path, sync::Arc};

use kernel::engine::{EngineError, EngineUrl};
use serde::Deserialize;

pub use envelope::{DecodeError, Envelope};
pub use events::Event;
pub use port::{BusError, EventBus, Message, Position, Record, Subscription, TopicInfo};

/// `[events]` in the config file; `TONEARM_EVENTS__*` in the environment.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct BusConfig {
    /// `embedded://[dir]` (default: `<data_dir>/events`) or `kafka://host:9092,host2:9092`.
    pub url: Option<EngineUrl>,
    /// Partitions of each topic Tonearm creates.
    pub partitions: u32,
    /// Kafka replication factor of each topic Tonearm creates.
    pub replication_factor: i32,
    /// How long events are kept (Kafka `retention.ms`; embedded segments older are dropped).
    pub retention_hours: u64,
    /// Embedded log: the most bytes kept per partition before the oldest segments go.
    pub retention_bytes: u64,
    /// Embedded log: the size at which a partition starts a new segment file.
    pub segment_bytes: u64,
    /// Kafka consumer session timeout: how long before a silent member's partitions move.
    pub session_timeout_ms: u32,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: None,
            partitions: 10,
            replication_factor: 3,
            retention_hours: 7 * 24,
            retention_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            session_timeout_ms: 10_000,
        }
    }
}

/// Opens the bus a URL names; `embedded://` without a path lives in `data_dir/events`.
pub async fn connect(
    config: &BusConfig,
    data_dir: &Path,
) -> Result<Arc<dyn EventBus>, EngineError> {
    let default_url = EngineUrl::new("embedded://");
    let url = config.url.as_ref().unwrap_or(&default_url);
    match url.scheme() {
        "embedded" => {
            let path = url.expose().trim_start_matches("embedded://");
            let dir = if path.is_empty() { data_dir.join("events") } else { path.into() };
            let log = embedded::EmbeddedLog::open(&dir, embedded::LogOptions::from(config))
                .map_err(|error| EngineError::Unreachable {
                    engine: "embedded event log",
                    url: url.redacted(),
                    reason: error.to_string(),
                })?;
            Ok(Arc::new(log))
        }
        "kafka" => Ok(Arc::new(kafka::KafkaBus::connect(url, config).await?)),
        scheme => Err(EngineError::UnsupportedScheme {
            url: url.redacted(),
            scheme: scheme.to_owned(),
            supported: "embedded://, kafka://",
        }),
    }
}

/// Opens the bus for reading only, as the `tonearm events` tools do: an embedded log is
/// read beside the server that appends to it, never locked away from it.
pub async fn connect_reader(
    config: &BusConfig,
    data_dir: &Path,
) -> Result<Arc<dyn EventBus>, EngineError> {
    let url = config.url.clone().unwrap_or_else(|| EngineUrl::new("embedded://"));
    if url.scheme() != "embedded" {
        return connect(config, data_dir).await;
    }
    let path = url.expose().trim_start_matches("embedded://");
    let dir = if path.is_empty() { data_dir.join("events") } else { path.into() };
    embedded::EmbeddedLog::open_read_only(&dir)
        .map(|log| Arc::new(log) as Arc<dyn EventBus>)
        .map_err(|error| EngineError::Unreachable {
            engine: "embedded event log",
            url: url.redacted(),
            reason: error.to_string(),
        })
}

/// Readiness of the bus, for `/readyz`.
pub struct BusProbe(pub Arc<dyn EventBus>);

#[async_trait::async_trait]
impl kernel::http::Probe for BusProbe {
    fn name(&self) -> String {
        format!("events.{}", self.0.engine())
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}
