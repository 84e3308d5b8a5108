//! The Kafka adapter (`kafka://host:9092,host2:9092`).
//!
//! One idempotent producer is shared by every publisher; each subscription owns a consumer.
//! librdkafka's synchronous calls (metadata, commits, offset look-ups, closing a consumer)
//! block the calling thread for up to a network timeout, so they run on blocking threads
//! and never on the async runtime.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    convert::Infallible,
    ops::Deref,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{FutureExt as _, StreamExt as _, future::join_all};
use kernel::engine::{EngineError, EngineUrl};
use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::{ClientContext, DefaultClientContext},
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{BorrowedMessage, Header, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _, PurgeConfig},
    statistics::Statistics,
};
use tokio::time::Instant;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::{
    BusConfig,
    port::{BusError, EventBus, Message, Position, Record, Subscription, TopicInfo},
};

/// How long a metadata request may take before the cluster counts as unreachable.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How long topic creation and offset look-ups may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a message may wait for its broker. Long on purpose: while a broker is down,
/// publishing waits for it to come back instead of failing the batch.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a consumer request may go unanswered. It also bounds how long closing a
/// consumer can hang on a fetch the broker never answers.
const CONSUMER_SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times one publish sends its messages, when sending again can help (a lost
/// topic created again, a stale producer renewed).
const PUBLISH_ATTEMPTS: usize = 3;
/// How often a publish that waits checks on the cluster.
const DELIVERY_CHECK: Duration = Duration::from_secs(2);
/// How long a cluster may answer without acknowledging a publish before its producer
/// counts as stale (see [`KafkaBus::renew_producer`]).
const STALLED_AFTER: Duration = Duration::from_secs(10);
/// The pause between tries while the cluster is unreachable.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The Kafka event bus. Topics are created on first use with the configured partitions,
/// replication and retention.
pub struct KafkaBus {
    brokers: String,
    config: BusConfig,
    /// Replaced once stale ([`KafkaBus::renew_producer`]); cloning is cheap.
    producer: RwLock<FutureProducer>,
    admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist, so that publishing does not ask the cluster every time.
    known_topics: Mutex<HashSet<String>>,
}

impl KafkaBus {
    /// Connects to the brokers of `url` and checks that the cluster answers.
    pub async fn connect(url: &EngineUrl, config: &BusConfig) -> Result<Self, EngineError> {
        let brokers = brokers(url)?;
        let invalid = |reason: String| EngineError::Invalid { url: url.redacted(), reason };
        let producer = producer_config(&brokers).create().map_err(|e| invalid(e.to_string()))?;
        let admin = client_config(&brokers).create().map_err(|e| invalid(e.to_string()))?;
        let bus = Self {
            brokers,
            config: config.clone(),
            producer: RwLock::new(producer),
            admin,
            known_topics: Mutex::new(HashSet::new()),
        };
        bus.ping().await.map_err(|error| EngineError::Unreachable {
            engine: "kafka",
            url: url.redacted(),
            reason: error.to_string(),
        })?;
        Ok(bus)
    }

    fn producer(&self) -> FutureProducer {
        self.producer.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces `stale` (unless another publish already did) with a fresh producer, and
    /// purges it: its waiting messages fail with a purge error, and their publishes send
    /// them again through the fresh one.
    ///
    /// An idempotent producer is stale once it failed fatally, or once the cluster lost
    /// its state (a broker restarted empty): the broker then refuses its producer id for
    /// good, and librdkafka retries those messages until they time out.
    fn renew_producer(&self, stale: &FutureProducer, why: &str) -> Result<(), BusError> {
        let mut current = self.producer.write().unwrap_or_else(PoisonError::into_inner);
        if std::ptr::eq(current.client().native_ptr(), stale.client().native_ptr()) {
            warn!(why, "starting a new kafka producer");
            let fresh = producer_config(&self.brokers).create().map_err(invalid)?;
            let stale = std::mem::replace(&mut *current, fresh);
            drop(current);
            stale.purge(PurgeConfig::default().queue().inflight().non_blocking());
            close_aside(stale);
        }
        Ok(())
    }

    /// All topics and partition counts of the cluster. Asking for every topic rather than
    /// one never makes a broker auto-create the topic asked about.
    async fn metadata(&self) -> Result<Vec<TopicInfo>, BusError> {
        let producer = self.producer();
        blocking(move || {
            let metadata = producer.client().fetch_metadata(None, METADATA_TIMEOUT)?;
            Ok(metadata
                .topics()
                .iter()
                .filter(|topic| topic.error().is_none())
                .map(|topic| TopicInfo {
                    name: topic.name().to_owned(),
                    partitions: u32::try_from(topic.partitions().len()).unwrap_or(u32::MAX),
                    records: None,
                })
                .collect())
        })
        .await
        .map_err(|error| unavailable("fetching cluster metadata", &error))
    }

    async fn partitions(&self, topic: &str) -> Result<i32, BusError> {
        let info = self.metadata().await?.into_iter().find(|info| info.name == topic);
        match info {
            Some(info) if info.partitions > 0 => Ok(i32::try_from(info.partitions).unwrap_or(0)),
            _ => Err(BusError::UnknownTopic(topic.to_owned())),
        }
    }

    fn is_known(&self, topic: &str) -> bool {
        self.known_topics.lock().unwrap_or_else(PoisonError::into_inner).contains(topic)
    }

    fn remember(&self, topic: &str) {
        self.known_topics.lock().unwrap_or_else(PoisonError::into_inner).insert(topic.to_owned());
    }

    fn forget(&self, topic: &str) {
        self.known_topics.lock().unwrap_or_else(PoisonError::into_inner).remove(topic);
    }

    async fn create_topic(&self, topic: &str) -> Result<(), BusError> {
        let partitions = i32::try_from(self.config.partitions)
            .map_err(|_| BusError::Invalid(format!("{} partitions", self.config.partitions)))?;
        let retention_ms = self.config.retention_hours.saturating_mul(3_600_000).to_string();
        let new_topic = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(self.config.replication_factor),
        )
        .set("retention.ms", &retention_ms);
        let options = AdminOptions::new()
            .request_timeout(Some(ADMIN_TIMEOUT))
            .operation_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|error| topic_error(topic, &format!("creating {topic}"), &error))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    let error = KafkaError::AdminOp(code);
                    return Err(topic_error(topic, &format!("creating {topic}"), &error));
                }
            }
        }
        debug!(topic, partitions, "kafka topic ready");
        Ok(())
    }

    /// [`EventBus::ensure_topic`], retried while the cluster is unreachable until
    /// `deadline`: a publish waits out an outage rather than failing on it.
    async fn ensure_topic_patiently(&self, topic: &str, deadline: Instant) -> Result<(), BusError> {
        loop {
            match self.ensure_topic(topic).await {
                Err(BusError::Unavailable(reason)) if Instant::now() + RETRY_PAUSE < deadline => {
                    debug!(topic, %reason, "kafka unavailable; retrying topic creation");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                result => return result,
            }
        }
    }

    /// Sends every message through `producer`, then waits for every acknowledgement;
    /// returns the messages that failed with their errors. Meanwhile
    /// [`KafkaBus::look_after_delivery`] watches the cluster.
    async fn send_all<'m>(
        &self,
        producer: &FutureProducer,
        batch: &[&'m Message],
    ) -> Vec<(&'m Message, KafkaError)> {
        let mut failures = Vec::new();
        let mut waiting = Vec::with_capacity(batch.len());
        for &message in batch {
            match enqueue(producer, message).await {
                Ok(delivery) => waiting.push((message, delivery)),
                Err(error) => failures.push((message, error)),
            }
        }
        let topics: HashSet<&str> = waiting.iter().map(|(m, _)| m.topic.as_str()).collect();
        let deliveries = join_all(waiting.into_iter().map(|(message, delivery)| async move {
            match delivery.await {
                Ok(Ok(_)) => None,
                Ok(Err((error, _))) => Some((message, error)),
                Err(_) => Some((message, KafkaError::Canceled)),
            }
        }));
        let outcomes = tokio::select! {
            outcomes = deliveries => outcomes,
            never = self.look_after_delivery(producer, &topics) => match never {},
        };
        failures.extend(outcomes.into_iter().flatten());
        failures
    }

    /// Looks after a publish waiting for acknowledgements, every [`DELIVERY_CHECK`]:
    /// creates again those of `topics` the cluster lost, and renews `producer` when the
    /// cluster lost its state. librdkafka would keep such messages queued until
    /// [`MESSAGE_TIMEOUT`] rather than fail them. Runs until dropped.
    ///
    /// A broker that restarted empty shows as lost topics, unless someone created them
    /// again first; what always shows is a cluster that answers yet acknowledges nothing
    /// for [`STALLED_AFTER`]: a healthy one acknowledges within milliseconds.
    async fn look_after_delivery(
        &self,
        producer: &FutureProducer,
        topics: &HashSet<&str>,
    ) -> Infallible {
        let mut answering_since: Option<Instant> = None;
        loop {
            tokio::time::sleep(DELIVERY_CHECK).await;
            let Ok(existing) = self.metadata().await else {
                answering_since = None;
                continue;
            };
            let lost: Vec<&str> = topics
                .iter()
                .copied()
                .filter(|&topic| existing.iter().all(|info| info.name != topic))
                .collect();
            let why = if !lost.is_empty() {
                self.recreate(&lost).await;
                "the cluster lost its topics"
            } else if answering_since.get_or_insert_with(Instant::now).elapsed() >= STALLED_AFTER {
                "the cluster answers but acknowledges nothing"
            } else {
                continue;
            };
            answering_since = None;
            if let Err(error) = self.renew_producer(producer, why) {
                warn!(%error, "cannot start a new kafka producer");
            }
        }
    }

    async fn recreate(&self, topics: &[&str]) {
        for &topic in topics {
            warn!(topic, "the kafka cluster lost the topic; creating it again");
            self.forget(topic);
            if let Err(error) = self.ensure_topic(topic).await {
                debug!(topic, %error, "cannot create the lost topic yet");
            }
        }
    }

    fn consumer_config(&self, group: &str) -> ClientConfig {
        let session = self.config.session_timeout_ms;
        let mut config = client_config(&self.brokers);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 4).max(1).to_string())
            .set("socket.timeout.ms", CONSUMER_SOCKET_TIMEOUT.as_millis().to_string());
        config
    }

    fn stream_consumer(&self, group: &str) -> Result<Arc<Closing<LagConsumer>>, BusError> {
        let consumer = self
            .consumer_config(group)
            .set("statistics.interval.ms", STATISTICS_EVERY.as_millis().to_string())
            .create_with_context(LagContext::default())
            .map_err(invalid)?;
        Ok(Arc::new(Closing::new(consumer)))
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    /// Returns once every message is acknowledged by all in-sync replicas. While the
    /// cluster is down it waits (up to [`MESSAGE_TIMEOUT`]); topics the cluster lost are
    /// created again and their messages sent again.
    async fn publish(&self, batch: &[Message]) -> Result<(), BusError> {
        let deadline = Instant::now() + MESSAGE_TIMEOUT;
        let mut pending: Vec<&Message> = batch.iter().collect();
        for _ in 0..PUBLISH_ATTEMPTS {
            let topics: HashSet<&str> = pending.iter().map(|m| m.topic.as_str()).collect();
            for topic in topics {
                self.ensure_topic_patiently(topic, deadline).await?;
            }
            let producer = self.producer();
            let failures = self.send_all(&producer, &pending).await;
            if let Some((_, error)) = failures.iter().find(|(_, e)| !is_retryable(e)) {
                return Err(unavailable("publishing", error));
            }
            if failures.is_empty() {
                return Ok(());
            }
            if failures.iter().any(|(_, error)| is_fatal(error)) {
                self.renew_producer(&producer, "the producer failed fatally")?;
            }
            for (message, error) in &failures {
                if is_lost_topic(error) {
                    self.forget(&message.topic);
                }
            }
            pending = failures.into_iter().map(|(message, _)| message).collect();
        }
        let lost: HashSet<&str> = pending.iter().map(|m| m.topic.as_str()).collect();
        Err(BusError::Unavailable(format!(
            "kafka, publishing: still failing after {PUBLISH_ATTEMPTS} attempts on {}",
            lost.into_iter().collect::<Vec<_>>().join(", ")
        )))
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.ensure_topic(topic).await?;
        let consumer = self.stream_consumer(group)?;
        consumer
            .subscribe(&[topic])
            .map_err(|error| topic_error(topic, &format!("subscribing to {topic}"), &error))?;
        Ok(Box::new(KafkaSubscription { consumer, topic: topic.to_owned(), commits: true }))
    }

    /// Assigns every partition explicitly, under a throwaway group that never commits.
    async fn read(&self, topic: &str, from: Position) -> Result<Box<dyn Subscription>, BusError> {
        let partitions = self.partitions(topic).await?;
        let consumer = self.stream_consumer(&format!("tonearm-read-{}", Uuid::new_v4()))?;
        let assignment = {
            let (consumer, topic) = (Arc::clone(&consumer), topic.to_owned());
            blocking(move || start_offsets(&**consumer, &topic, partitions, from)).await
        }
        .map_err(|error| topic_error(topic, &format!("finding where to read {topic}"), &error))?;
        consumer
            .assign(&assignment)
            .map_err(|error| topic_error(topic, &format!("assigning {topic}"), &error))?;
        Ok(Box::new(KafkaSubscription { consumer, topic: topic.to_owned(), commits: false }))
    }

    /// Commits offsets on the group's behalf. Kafka only lets a group without live
    /// members be moved: stop its consumers first, or they keep their own positions and
    /// overwrite these on their next commit.
    async fn reset_group(&self, topic: &str, group: &str, to: Position) -> Result<(), BusError> {
        let partitions = self.partitions(topic).await?;
        let consumer: BaseConsumer = self.consumer_config(group).create().map_err(invalid)?;
        let owned_topic = topic.to_owned();
        blocking(move || {
            let consumer = Closing::new(consumer);
            let offsets = start_offsets(&*consumer, &owned_topic, partitions, to)?;
            let offsets = concrete_offsets(&*consumer, &offsets)?;
            consumer.commit(&offsets, CommitMode::Sync)
        })
        .await
        .map_err(|error| topic_error(topic, &format!("resetting {group} on {topic}"), &error))
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, BusError> {
        let mut topics: Vec<TopicInfo> =
            self.metadata().await?.into_iter().filter(|t| !t.name.starts_with("__")).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        if !self.is_known(topic) {
            self.create_topic(topic).await?;
            self.remember(topic);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.metadata().await.map(drop)
    }

    fn engine(&self) -> &'static str {
        "kafka"
    }

    fn shared_between_processes(&self) -> bool {
        true
    }
}

/// A consumer group member ([`EventBus::subscribe`]) or a group-less reader
/// ([`EventBus::read`]).
struct KafkaSubscription {
    /// Shared with a commit running on a blocking thread.
    consumer: Arc<Closing<LagConsumer>>,
    topic: String,
    /// False for readers: their throwaway group must never commit.
    commits: bool,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        let mut records = Vec::new();
        if max == 0 {
            return Ok(records);
        }
        match self.first(Instant::now() + wait).await? {
            Some(record) => records.push(record),
            None => return Ok(records),
        }
        let mut stream = self.consumer.stream();
        while records.len() < max {
            match stream.next().now_or_never() {
                Some(Some(Ok(message))) => records.push(record(&message)),
                Some(Some(Err(error))) => {
                    warn!(topic = %self.topic, %error, "kafka consumer error");
                    break;
                }
                _ => break,
            }
        }
        Ok(records)
    }

    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        if !self.commits || records.is_empty() {
            return Ok(());
        }
        let offsets = next_offsets(records)?;
        let consumer = Arc::clone(&self.consumer);
        blocking(move || consumer.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|error| unavailable(&format!("committing on {}", self.topic), &error))
    }

    /// As librdkafka last reported it in its statistics (every [`STATISTICS_EVERY`]).
    fn lag(&self) -> Option<u64> {
        match self.consumer.context().lag.load(Ordering::Relaxed) {
            u64::MAX => None,
            lag => Some(lag),
        }
    }
}

impl KafkaSubscription {
    /// The first record to arrive before `deadline`. Connection trouble is librdkafka's
    /// to retry, so it only ends the wait when the deadline passes.
    async fn first(&self, deadline: Instant) -> Result<Option<Record>, BusError> {
        loop {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_elapsed) => return Ok(None),
                Ok(Ok(message)) => return Ok(Some(record(&message))),
                Ok(Err(error)) if is_transient(&error) => {
                    debug!(topic = %self.topic, %error, "kafka consumer retrying");
                }
                Ok(Err(error)) => {
                    return Err(topic_error(
                        &self.topic,
                        &format!("polling {}", self.topic),
                        &error,
                    ));
                }
            }
        }
    }
}

/// How often librdkafka reports a consumer's statistics, the lag among them.
const STATISTICS_EVERY: Duration = Duration::from_secs(10);

type LagConsumer = StreamConsumer<LagContext>;

/// Keeps the lag a consumer's statistics report: records between its group's committed
/// offsets and the partitions' ends, summed over the partitions it holds.
struct LagContext {
    /// `u64::MAX` until the first report.
    lag: AtomicU64,
}

impl Default for LagContext {
    fn default() -> Self {
        Self { lag: AtomicU64::new(u64::MAX) }
    }
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        let behind: i64 = statistics
            .topics
            .values()
            .flat_map(|topic| topic.partitions.values())
            // -1 is librdkafka's own bookkeeping partition; a lag of -1 is unknown.
            .filter(|partition| partition.partition >= 0 && partition.consumer_lag >= 0)
            .map(|partition| partition.consumer_lag)
            .sum();
        self.lag.store(u64::try_from(behind).unwrap_or(0), Ordering::Relaxed);
    }
}

impl ConsumerContext for LagContext {}

/// An rdkafka client whose destruction may block: a consumer leaving its group waits
/// for answers a struggling broker may never send (up to [`CONSUMER_SOCKET_TIMEOUT`]),
/// and a producer flushes. Dropping it hands the client to a thread of its own, so
/// neither the async runtime nor its shutdown ever waits for that.
struct Closing<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Closing<T> {
    fn new(client: T) -> Self {
        Self(Some(client))
    }
}

impl<T: Send + 'static> Deref for Closing<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // Only `drop` takes the client out.
        self.0.as_ref().unwrap_or_else(|| unreachable!("a closing client is used after drop"))
    }
}

impl<T: Send + 'static> Drop for Closing<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            close_aside(client);
        }
    }
}

/// Drops `client` on a detached thread (a plain thread, not the runtime's blocking pool,
/// whose threads a runtime shutdown would wait for).
fn close_aside<T: Send + 'static>(client: T) {
    let spawned =
        std::thread::Builder::new().name("kafka-close".into()).spawn(move || drop(client));
    if let Err(error) = spawned {
        warn!(%error, "cannot start a thread to close a kafka client");
    }
}

/// `host:9092,host2:9092` from `kafka://host:9092,host2:9092`.
fn brokers(url: &EngineUrl) -> Result<String, EngineError> {
    let brokers = url.expose().trim_start_matches("kafka://").trim_end_matches('/');
    if brokers.is_empty() || brokers.contains(['/', '@', '?']) {
        return Err(EngineError::Invalid {
            url: url.redacted(),
            reason: "expected kafka://host:port[,host:port...]".to_owned(),
        });
    }
    Ok(brokers.to_owned())
}

fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers).set("client.id", "tonearm");
    config
}

fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", MESSAGE_TIMEOUT.as_millis().to_string())
        // The Java client's partitioner, so that other clients agree on a key's partition.
        .set("partitioner", "murmur2_random")
        // A lost topic comes back with our partitions and retention (see
        // `look_after_delivery`), never with the broker's defaults.
        .set("allow.auto.create.topics", "false");
    config
}

/// Hands one message to the producer, waiting while its queue is full.
async fn enqueue(
    producer: &FutureProducer,
    message: &Message,
) -> Result<DeliveryFuture, KafkaError> {
    let id = message.id.map(|id| id.to_string());
    loop {
        let mut record = FutureRecord::to(&message.topic)
            .key(message.key.as_str())
            .payload(message.value.as_slice());
        if let Some(id) = id.as_deref() {
            record =
                record.headers(OwnedHeaders::new().insert(Header { key: "id", value: Some(id) }));
        }
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

fn record(message: &BorrowedMessage<'_>) -> Record {
    Record {
        topic: message.topic().to_owned(),
        partition: u32::try_from(message.partition()).unwrap_or_default(),
        offset: u64::try_from(message.offset()).unwrap_or_default(),
        timestamp: message
            .timestamp()
            .to_millis()
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_else(Utc::now),
        key: message.key().map(|key| String::from_utf8_lossy(key).into_owned()).unwrap_or_default(),
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

/// Per partition, the offset after the last of `records`: where the group resumes.
fn next_offsets(records: &[Record]) -> Result<TopicPartitionList, BusError> {
    let mut last: BTreeMap<(&str, u32), u64> = BTreeMap::new();
    for record in records {
        let offset = last.entry((&record.topic, record.partition)).or_insert(record.offset);
        *offset = (*offset).max(record.offset);
    }
    let mut offsets = HashMap::new();
    for ((topic, partition), offset) in last {
        let partition = i32::try_from(partition)
            .map_err(|_| BusError::Invalid(format!("partition {partition} of {topic}")))?;
        let next = i64::try_from(offset.saturating_add(1))
            .map_err(|_| BusError::Invalid(format!("offset {offset} of {topic}")))?;
        offsets.insert((topic.to_owned(), partition), Offset::Offset(next));
    }
    TopicPartitionList::from_topic_map(&offsets).map_err(invalid)
}

/// Where each partition of `topic` starts for `from`; `Beginning` and `End` stay logical.
fn start_offsets<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    topic: &str,
    partitions: i32,
    from: Position,
) -> Result<TopicPartitionList, KafkaError> {
    let offset = match from {
        Position::Beginning => Offset::Beginning,
        Position::End => Offset::End,
        Position::Offset(offset) => Offset::Offset(i64::try_from(offset).unwrap_or(i64::MAX)),
        Position::Time(time) => {
            let mut timestamps = TopicPartitionList::new();
            timestamps.add_partition_range(topic, 0, partitions - 1);
            timestamps.set_all_offsets(Offset::Offset(time.timestamp_millis()))?;
            // A partition with nothing that recent comes back as `End`.
            return consumer.offsets_for_times(timestamps, ADMIN_TIMEOUT);
        }
    };
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_range(topic, 0, partitions - 1);
    offsets.set_all_offsets(offset)?;
    Ok(offsets)
}

/// `offsets` with logical positions replaced by real offsets and every offset kept
/// within what each partition holds: a committed offset must be a real one.
fn concrete_offsets<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    offsets: &TopicPartitionList,
) -> Result<TopicPartitionList, KafkaError> {
    let mut concrete = TopicPartitionList::new();
    for element in offsets.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (low, high) = consumer.fetch_watermarks(topic, partition, ADMIN_TIMEOUT)?;
        let offset = match element.offset() {
            Offset::Beginning => low,
            Offset::Offset(offset) => offset.clamp(low, high),
            _ => high,
        };
        concrete.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    Ok(concrete)
}

/// Runs a blocking librdkafka call on the runtime's blocking pool.
async fn blocking<T, F>(call: F) -> Result<T, KafkaError>
where
    F: FnOnce() -> Result<T, KafkaError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(call).await.unwrap_or(Err(KafkaError::Canceled))
}

fn code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    match error {
        KafkaError::AdminOp(code) => Some(*code),
        _ => error.rdkafka_error_code(),
    }
}

/// The cluster no longer has (or never had) the topic a message went to.
fn is_lost_topic(error: &KafkaError) -> bool {
    matches!(
        code(error),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

/// A publish failure that sending again can cure: the topic is created again, or the
/// producer replaced (which purges what the old one still held).
fn is_retryable(error: &KafkaError) -> bool {
    is_lost_topic(error)
        || is_fatal(error)
        || matches!(
            code(error),
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
        )
}

/// An idempotent producer's fatal state, which only a new producer leaves.
fn is_fatal(error: &KafkaError) -> bool {
    matches!(code(error), Some(RDKafkaErrorCode::Fatal))
}

/// Trouble librdkafka retries by itself.
fn is_transient(error: &KafkaError) -> bool {
    matches!(
        code(error),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::RebalanceInProgress
        )
    )
}

/// Requests the cluster refuses whatever its state: retrying cannot help.
fn is_invalid(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Nul(_)
    ) || matches!(
        code(error),
        Some(
            RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::InvalidPartitions
                | RDKafkaErrorCode::InvalidReplicationFactor
                | RDKafkaErrorCode::InvalidConfig
                | RDKafkaErrorCode::InvalidArgument
                | RDKafkaErrorCode::InvalidRequest
                | RDKafkaErrorCode::PolicyViolation
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidGroupId
                | RDKafkaErrorCode::InvalidSessionTimeout
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
        )
    )
}

/// The port's error for a failed operation on `topic`, described as `doing`.
fn topic_error(topic: &str, doing: &str, error: &KafkaError) -> BusError {
    if is_lost_topic(error) {
        BusError::UnknownTopic(topic.to_owned())
    } else {
        unavailable(doing, error)
    }
}

/// [`BusError::Invalid`] for requests that can never succeed, else
/// [`BusError::Unavailable`].
fn unavailable(doing: &str, error: &KafkaError) -> BusError {
    if is_invalid(error) {
        BusError::Invalid(format!("kafka, {doing}: {error}"))
    } else {
        BusError::Unavailable(format!("kafka, {doing}: {error}"))
    }
}

fn invalid(error: KafkaError) -> BusError {
    BusError::Invalid(format!("kafka client: {error}"))
}
