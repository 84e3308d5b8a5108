//! The Kafka adapter against a real broker: the shared one of `scripts/test`
//! (`TONEARM_TEST_KAFKA_URL`), or one of the test's own where the test stops it. The test
//! broker is tansu, which keeps everything in memory: a restarted broker comes back empty.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bus::{BusConfig, EventBus, Message, Position, Record, Subscription, kafka::KafkaBus};
use chrono::Utc;
use kernel::engine::{EngineError, EngineUrl};
use testkit::{OwnKafka, kafka_url, unique};
use uuid::Uuid;

/// One broker, so one replica; a short session so that a member that vanished without
/// leaving its group (tansu may not answer a closing consumer) loses its partitions soon.
fn config() -> BusConfig {
    BusConfig {
        partitions: 3,
        replication_factor: 1,
        session_timeout_ms: 6_000,
        ..BusConfig::default()
    }
}

async fn bus_at(url: &str) -> KafkaBus {
    KafkaBus::connect(&EngineUrl::new(url), &config())
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"))
}

async fn shared_bus() -> KafkaBus {
    bus_at(&kafka_url()).await
}

/// `count` messages for each key, with values naming their id, key and rank.
fn messages(topic: &str, keys: &[&str], count: usize) -> Vec<Message> {
    keys.iter()
        .flat_map(|key| (0..count).map(move |rank| (*key, rank)))
        .map(|(key, rank)| {
            let id = Uuid::now_v7();
            Message {
                topic: topic.to_owned(),
                key: key.to_owned(),
                id: Some(id),
                value: format!("{id}/{key}/{rank}").into_bytes(),
            }
        })
        .collect()
}

fn value(record: &Record) -> String {
    String::from_utf8(record.value.clone()).unwrap()
}

fn values(records: &[Record]) -> Vec<String> {
    records.iter().map(value).collect()
}

fn message_values(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| String::from_utf8(m.value.clone()).unwrap()).collect()
}

/// Polls until `count` records arrived, failing after `within`.
async fn take(subscription: &mut dyn Subscription, count: usize, within: Duration) -> Vec<Record> {
    let deadline = Instant::now() + within;
    let mut records = Vec::new();
    while records.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "got {} of {count} records: {:?}",
            records.len(),
            values(&records)
        );
        records.extend(subscription.poll(count - records.len(), left).await.unwrap());
    }
    records
}

/// Asserts nothing more arrives within `wait`.
async fn assert_drained(subscription: &mut dyn Subscription, wait: Duration) {
    let extra = subscription.poll(100, wait).await.unwrap();
    assert!(extra.is_empty(), "unexpected records: {:?}", values(&extra));
}

/// Records grouped by key, in the order they came.
fn by_key(records: &[Record]) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records {
        keys.entry(record.key.clone()).or_default().push(value(record));
    }
    keys
}

fn messages_by_key(messages: &[Message]) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in messages {
        keys.entry(message.key.clone())
            .or_default()
            .push(String::from_utf8(message.value.clone()).unwrap());
    }
    keys
}

#[tokio::test]
async fn published_batches_read_back_from_the_beginning_in_order_per_key() {
    let bus = shared_bus().await;
    let topic = unique("kafka-read");
    let batch = messages(&topic, &["ada", "grace", "linus"], 5);
    bus.publish(&batch).await.unwrap();

    let mut reader = bus.read(&topic, Position::Beginning).await.unwrap();
    let records = take(reader.as_mut(), batch.len(), Duration::from_secs(20)).await;
    assert_eq!(by_key(&records), messages_by_key(&batch));
    assert!(records.iter().all(|r| r.topic == topic && r.partition < 3));
    assert_drained(reader.as_mut(), Duration::from_millis(500)).await;
    // A reader never commits: committing is accepted and does nothing.
    reader.commit(&records).await.unwrap();
}

/// Publishes each message on its own. tansu only serves fetches that start where a
/// producer batch started (from inside one it skips to the next batch, then repeats
/// it), so tests that commit or read from the middle of a batch publish one at a time.
async fn publish_one_by_one(bus: &KafkaBus, batch: &[Message]) {
    for message in batch {
        bus.publish(std::slice::from_ref(message)).await.unwrap();
    }
}

#[tokio::test]
async fn a_group_resumes_after_its_last_commit() {
    let bus = shared_bus().await;
    let (topic, group) = (unique("kafka-group"), unique("group"));
    let batch = messages(&topic, &["ada"], 6);
    publish_one_by_one(&bus, &batch).await;

    let mut first = bus.subscribe(&topic, &group).await.unwrap();
    let records = take(first.as_mut(), 6, Duration::from_secs(30)).await;
    assert_eq!(values(&records), message_values(&batch));
    first.commit(&records[..4]).await.unwrap();
    drop(first);

    // The first member may stay in the group until its session expires.
    let mut second = bus.subscribe(&topic, &group).await.unwrap();
    let resumed = take(second.as_mut(), 2, Duration::from_secs(30)).await;
    assert_eq!(values(&resumed), message_values(&batch[4..]));
}

#[tokio::test]
async fn readers_start_at_a_time_or_at_the_end() {
    let bus = shared_bus().await;
    let topic = unique("kafka-positions");
    let before = messages(&topic, &["ada", "grace"], 2);
    bus.publish(&before).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let since = Utc::now();
    let after = messages(&topic, &["ada", "grace"], 2);
    bus.publish(&after).await.unwrap();

    let mut from_time = bus.read(&topic, Position::Time(since)).await.unwrap();
    let records = take(from_time.as_mut(), after.len(), Duration::from_secs(20)).await;
    assert_eq!(by_key(&records), messages_by_key(&after));
    assert_drained(from_time.as_mut(), Duration::from_millis(500)).await;

    let mut from_end = bus.read(&topic, Position::End).await.unwrap();
    assert_drained(from_end.as_mut(), Duration::from_secs(2)).await;
    let later = messages(&topic, &["ada"], 2);
    bus.publish(&later).await.unwrap();
    let records = take(from_end.as_mut(), later.len(), Duration::from_secs(20)).await;
    assert_eq!(values(&records), message_values(&later));
}

#[tokio::test]
async fn a_reset_group_starts_where_it_was_put() {
    let bus = shared_bus().await;
    let (topic, group) = (unique("kafka-reset"), unique("group"));
    let batch = messages(&topic, &["ada"], 6);
    publish_one_by_one(&bus, &batch).await;

    bus.reset_group(&topic, &group, Position::Offset(4)).await.unwrap();
    let mut member = bus.subscribe(&topic, &group).await.unwrap();
    let records = take(member.as_mut(), 2, Duration::from_secs(30)).await;
    assert_eq!(values(&records), message_values(&batch[4..]));
    assert_eq!(records[0].offset, 4);
}

#[tokio::test]
async fn topics_lists_the_topics_created_with_their_partitions() {
    let bus = shared_bus().await;
    let topic = unique("kafka-topics");
    bus.ensure_topic(&topic).await.unwrap();
    bus.ensure_topic(&topic).await.unwrap();

    let topics = bus.topics().await.unwrap();
    let listed = topics.iter().find(|info| info.name == topic).unwrap();
    assert_eq!(listed.partitions, 3);
    assert!(topics.iter().all(|info| !info.name.starts_with("__")));
    bus.ping().await.unwrap();
    assert_eq!(bus.engine(), "kafka");
}

#[tokio::test]
async fn reading_a_missing_topic_is_an_unknown_topic() {
    let bus = shared_bus().await;
    let missing = unique("kafka-missing");
    assert!(matches!(
        bus.read(&missing, Position::Beginning).await,
        Err(bus::BusError::UnknownTopic(_))
    ));
}

#[tokio::test]
async fn an_unreachable_cluster_fails_connect_quickly() {
    let started = Instant::now();
    let result = KafkaBus::connect(&EngineUrl::new("kafka://127.0.0.1:1"), &config()).await;
    assert!(matches!(result, Err(EngineError::Unreachable { .. })), "{:?}", result.err());
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn publishing_waits_out_a_broker_restart_and_lands_once() {
    let broker = OwnKafka::start().await;
    let port = broker.port;
    let bus = Arc::new(bus_at(&broker.url()).await);
    let topic = unique("kafka-outage");
    bus.publish(&messages(&topic, &["warm-up"], 1)).await.unwrap();

    broker.stop();
    let batch = messages(&topic, &["ada", "grace"], 3);
    let publishing = tokio::spawn({
        let (bus, batch) = (Arc::clone(&bus), batch.clone());
        async move { bus.publish(&batch).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!publishing.is_finished(), "publish returned while the broker was down");

    let _broker = OwnKafka::start_on(port).await;
    tokio::time::timeout(Duration::from_secs(40), publishing)
        .await
        .expect("publish still waiting after the broker came back")
        .unwrap()
        .unwrap();

    // The restarted broker came back empty: the warm-up is gone, the batch is there once.
    let mut reader = bus.read(&topic, Position::Beginning).await.unwrap();
    let records = take(reader.as_mut(), batch.len(), Duration::from_secs(20)).await;
    assert_drained(reader.as_mut(), Duration::from_secs(1)).await;
    assert_eq!(by_key(&records), messages_by_key(&batch));
}

#[tokio::test]
async fn publishing_a_new_topic_waits_out_a_broker_restart_and_lands_once() {
    // The producer met the first broker; the restarted one does not know it, and no
    // topic goes missing to give that away: the bus must notice the stall itself.
    let broker = OwnKafka::start().await;
    let port = broker.port;
    let bus = Arc::new(bus_at(&broker.url()).await);
    bus.publish(&messages(&unique("kafka-first"), &["warm-up"], 1)).await.unwrap();

    broker.stop();
    let topic = unique("kafka-new");
    let batch = messages(&topic, &["ada", "grace"], 2);
    let publishing = tokio::spawn({
        let (bus, batch) = (Arc::clone(&bus), batch.clone());
        async move { bus.publish(&batch).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!publishing.is_finished(), "publish returned while the broker was down");

    // About 13 s: up to one topic-creation timeout, then the stall is noticed.
    let _broker = OwnKafka::start_on(port).await;
    tokio::time::timeout(Duration::from_secs(40), publishing)
        .await
        .expect("publish still waiting after the broker came back")
        .unwrap()
        .unwrap();

    let mut reader = bus.read(&topic, Position::Beginning).await.unwrap();
    let records = take(reader.as_mut(), batch.len(), Duration::from_secs(20)).await;
    assert_drained(reader.as_mut(), Duration::from_secs(1)).await;
    assert_eq!(by_key(&records), messages_by_key(&batch));
}
