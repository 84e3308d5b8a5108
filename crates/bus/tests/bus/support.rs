use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use bus::{
    BusConfig, Envelope, EventBus, Message, Record, Subscription,
    consumer::{Handler, HandlerError},
    embedded::{EmbeddedLog, LogOptions},
    events::UserRegistered,
};
use chrono::Utc;
use tempfile::TempDir;
use uuid::Uuid;

/// A bus under test and whatever must live as long as it.
pub struct TestBus {
    pub bus: Arc<dyn EventBus>,
    /// Keeps an embedded log's directory until the test ends.
    pub _dir: Option<TempDir>,
}

pub fn small_config() -> BusConfig {
    BusConfig {
        partitions: 3,
        replication_factor: 1,
        session_timeout_ms: 6_000,
        ..BusConfig::default()
    }
}

pub fn embedded() -> TestBus {
    let dir = TempDir::new().unwrap();
    let log = EmbeddedLog::open(dir.path(), LogOptions::from(&small_config())).unwrap();
    TestBus { bus: Arc::new(log), _dir: Some(dir) }
}

pub async fn kafka() -> TestBus {
    let url =
        std::env::var("TONEARM_TEST_KAFKA_URL").unwrap_or_else(|_| "kafka://127.0.0.1:9092".into());
    let bus = bus::kafka::KafkaBus::connect(&kernel::engine::EngineUrl::new(url), &small_config())
        .await
        .expect("the test Kafka broker answers (scripts/test starts one)");
    TestBus { bus: Arc::new(bus), _dir: None }
}

pub fn unique_topic() -> String {
    testkit::unique("topic").replace('-', ".")
}

pub fn unique_group() -> String {
    testkit::unique("group")
}

/// An envelope about `key`, as a service would publish it.
pub fn event(key: &str) -> Envelope {
    let mut envelope = Envelope::new(
        &UserRegistered {
            user_id: Uuid::now_v7(),
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            tier: "free".into(),
            registered_at: Utc::now(),
        },
        Utc::now(),
    );
    envelope.key = key.to_owned();
    envelope
}

/// A message on `topic` carrying `event(key)`.
pub fn message(topic: &str, key: &str) -> Message {
    let mut message = event(key).to_message();
    message.topic = topic.to_owned();
    message
}

/// Polls until `count` records arrived or `within` passed.
pub async fn collect(
    subscription: &mut dyn Subscription,
    count: usize,
    within: Duration,
) -> Vec<Record> {
    let deadline = tokio::time::Instant::now() + within;
    let mut records = Vec::new();
    while records.len() < count && tokio::time::Instant::now() < deadline {
        records.extend(
            subscription.poll(count - records.len(), Duration::from_millis(500)).await.unwrap(),
        );
    }
    records
}

pub fn ids(records: &[Record]) -> Vec<Uuid> {
    records.iter().map(|record| record.envelope().unwrap().id).collect()
}

/// Records every event it is handed; fails the ones it is told to.
#[derive(Default)]
pub struct Recorder {
    pub seen: Mutex<Vec<Uuid>>,
    pub transient_failures: Mutex<HashMap<Uuid, u32>>,
    pub rejects: Mutex<Vec<Uuid>>,
    /// An event the handler never finishes, as a consumer that dies while handling it.
    pub hangs_on: Mutex<Option<Uuid>>,
}

impl Recorder {
    pub fn seen(&self) -> Vec<Uuid> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        if *self.hangs_on.lock().unwrap() == Some(envelope.id) {
            std::future::pending::<()>().await;
        }
        if self.rejects.lock().unwrap().contains(&envelope.id) {
            return Err(HandlerError::Rejected("told to".into()));
        }
        if let Some(left) = self.transient_failures.lock().unwrap().get_mut(&envelope.id)
            && *left > 0
        {
            *left -= 1;
            return Err(HandlerError::Transient("not yet".into()));
        }
        self.seen.lock().unwrap().push(envelope.id);
        Ok(())
    }
}

/// Waits until `check` holds, up to `within`.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}
