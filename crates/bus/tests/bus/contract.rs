//! What every bus adapter promises, run on each.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bus::{
    Envelope, Position,
    consumer::{BatchHandler, Consumer, ConsumerOptions, Handling, dead_letter_topic},
};
use uuid::Uuid;

use crate::support::{
    Recorder, TestBus, collect, eventually, ids, message, unique_group, unique_topic,
};

const WAIT: Duration = Duration::from_secs(30);

macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn published_batches_read_back_in_order_per_key() {
                super::published_batches_read_back_in_order_per_key($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_group_resumes_after_its_last_commit() {
                super::a_group_resumes_after_its_last_commit($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reading_starts_where_asked() {
                super::reading_starts_where_asked($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_poison_message_is_dead_lettered_and_the_partition_moves_on() {
                super::a_poison_message_is_dead_lettered_and_the_partition_moves_on($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_consumer_that_dies_mid_batch_resumes_from_its_last_commit() {
                super::a_consumer_that_dies_mid_batch_resumes_from_its_last_commit($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_batch_handler_gets_records_together_and_outlasts_failures() {
                super::a_batch_handler_gets_records_together_and_outlasts_failures($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_subscription_knows_how_far_its_group_is_behind() {
                super::a_subscription_knows_how_far_its_group_is_behind($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_reset_group_replays() {
                super::a_reset_group_replays($make).await;
            }
        }
    };
}

contract!(embedded, crate::support::embedded());
contract!(kafka, crate::support::kafka().await);

async fn published_batches_read_back_in_order_per_key(test: TestBus) {
    let topic = unique_topic();
    let batch: Vec<_> = (0..120).map(|i| message(&topic, &format!("key-{}", i % 7))).collect();
    test.bus.publish(&batch[..60]).await.unwrap();
    test.bus.publish(&batch[60..]).await.unwrap();

    let mut reader = test.bus.read(&topic, Position::Beginning).await.unwrap();
    let records = collect(reader.as_mut(), batch.len(), WAIT).await;
    assert_eq!(records.len(), batch.len(), "every message, once");

    let mut by_key: HashMap<String, Vec<Uuid>> = HashMap::new();
    for record in &records {
        by_key.entry(record.key.clone()).or_default().push(record.envelope().unwrap().id);
    }
    for (key, got) in by_key {
        let sent: Vec<Uuid> = batch.iter().filter(|m| m.key == key).filter_map(|m| m.id).collect();
        assert_eq!(got, sent, "order kept for {key}");
    }
    let topics = test.bus.topics().await.unwrap();
    let info = topics.iter().find(|t| t.name == topic).expect("the topic is listed");
    assert_eq!(info.partitions, 3);
}

async fn a_group_resumes_after_its_last_commit(test: TestBus) {
    let topic = unique_topic();
    let group = unique_group();
    let batch: Vec<_> = (0..20).map(|i| message(&topic, &format!("k{i}"))).collect();
    test.bus.publish(&batch).await.unwrap();

    let mut first = test.bus.subscribe(&topic, &group).await.unwrap();
    let records = collect(first.as_mut(), 20, WAIT).await;
    assert_eq!(records.len(), 20);
    // Commit only what came from one partition.
    let committed_partition = records[0].partition;
    let committed: Vec<_> =
        records.iter().filter(|r| r.partition == committed_partition).cloned().collect();
    first.commit(&committed).await.unwrap();
    drop(first);

    let mut second = test.bus.subscribe(&topic, &group).await.unwrap();
    let again = collect(second.as_mut(), 20 - committed.len(), WAIT).await;
    let mut expected: Vec<Uuid> =
        ids(&records).into_iter().filter(|id| !ids(&committed).contains(id)).collect();
    let mut got = ids(&again);
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "everything not committed comes again, nothing committed does");
}

/// The lag (`events_consumer_lag`): what was appended and not yet committed by the group.
async fn a_subscription_knows_how_far_its_group_is_behind(test: TestBus) {
    let topic = unique_topic();
    let group = unique_group();
    let first: Vec<_> = (0..8).map(|i| message(&topic, &format!("k{i}"))).collect();
    test.bus.publish(&first).await.unwrap();
    let mut subscription = test.bus.subscribe(&topic, &group).await.unwrap();
    let records = collect(subscription.as_mut(), 8, WAIT).await;
    subscription.commit(&records).await.unwrap();
    let more: Vec<_> = (0..5).map(|i| message(&topic, &format!("m{i}"))).collect();
    test.bus.publish(&more).await.unwrap();
    // Read but not committed: still behind. (Kafka reports it every few seconds, while
    // the client is polled.)
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut lag = None;
    while tokio::time::Instant::now() < deadline {
        subscription.poll(10, Duration::from_millis(200)).await.unwrap();
        lag = subscription.lag();
        if lag == Some(5) {
            break;
        }
    }
    assert_eq!(lag, Some(5));
}

async fn reading_starts_where_asked(test: TestBus) {
    let topic = unique_topic();
    let early: Vec<_> = (0..5).map(|_| message(&topic, "same-key")).collect();
    test.bus.publish(&early).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // One publish each, so that every offset starts a producer batch: the test broker
    // (tansu 0.6) cannot start reading inside one.
    let late: Vec<_> = (0..3).map(|_| message(&topic, "same-key")).collect();
    for event in &late {
        test.bus.publish(std::slice::from_ref(event)).await.unwrap();
    }

    let mut from_time = test.bus.read(&topic, Position::Time(cut)).await.unwrap();
    let records = collect(from_time.as_mut(), 3, WAIT).await;
    assert_eq!(ids(&records), late.iter().filter_map(|m| m.id).collect::<Vec<_>>());

    let mut from_end = test.bus.read(&topic, Position::End).await.unwrap();
    assert!(from_end.poll(10, Duration::from_millis(500)).await.unwrap().is_empty());
    let newest = message(&topic, "same-key");
    test.bus.publish(std::slice::from_ref(&newest)).await.unwrap();
    let records = collect(from_end.as_mut(), 1, WAIT).await;
    assert_eq!(ids(&records), vec![newest.id.unwrap()]);

    let mut from_offset = test.bus.read(&topic, Position::Offset(6)).await.unwrap();
    let records = collect(from_offset.as_mut(), 3, WAIT).await;
    assert_eq!(records.first().map(|r| r.offset), Some(6), "all events share a partition");
    assert_eq!(records.len(), 3);
}

/// Takes batches, failing the first `failures` calls as a store outage would, and
/// rejecting the ids in `rejects`.
#[derive(Default)]
struct BatchRecorder {
    failures: std::sync::Mutex<u32>,
    rejects: Vec<Uuid>,
    seen: std::sync::Mutex<Vec<Uuid>>,
    calls: std::sync::Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl BatchHandler for BatchRecorder {
    async fn handle_batch(&self, envelopes: &[Envelope]) -> Result<Vec<(Uuid, String)>, String> {
        self.calls.lock().unwrap().push(envelopes.len());
        {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err("the store is down".into());
            }
        }
        let mut rejected = Vec::new();
        for envelope in envelopes {
            if self.rejects.contains(&envelope.id) {
                rejected.push((envelope.id, "not for us".to_owned()));
            } else {
                self.seen.lock().unwrap().push(envelope.id);
            }
        }
        Ok(rejected)
    }
}

async fn a_batch_handler_gets_records_together_and_outlasts_failures(test: TestBus) {
    let topic = unique_topic();
    let group = unique_group();
    let good: Vec<_> = (0..8).map(|_| message(&topic, "listener")).collect();
    let mut poison = message(&topic, "listener");
    poison.value = b"\x00 not an envelope".to_vec();
    let rejected = message(&topic, "listener");
    let mut all = good.clone();
    all.insert(3, poison.clone());
    all.insert(5, rejected.clone());
    test.bus.publish(&all).await.unwrap();

    let handler = Arc::new(BatchRecorder {
        failures: std::sync::Mutex::new(6),
        rejects: vec![rejected.id.unwrap()],
        ..BatchRecorder::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = Consumer {
        bus: test.bus.clone(),
        topic: topic.clone(),
        group,
        handler: Handling::Batch(handler.clone()),
        options: ConsumerOptions {
            batch: 100,
            poll_wait: Duration::from_millis(200),
            max_attempts: 3,
            backoff: Duration::from_millis(10),
        },
    };
    let task = tokio::spawn(consumer.run(async {
        let _ = stopped.await;
    }));
    let handled = eventually(WAIT, || handler.seen.lock().unwrap().len() >= good.len()).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(WAIT, task).await;
    assert!(handled, "saw {:?}", handler.seen.lock().unwrap());
    let expected: Vec<Uuid> = good.iter().filter_map(|m| m.id).collect();
    assert_eq!(*handler.seen.lock().unwrap(), expected, "every good record once, in order");
    let calls = handler.calls.lock().unwrap().clone();
    assert!(calls.len() >= 7, "retried past more failures than max_attempts: {calls:?}");
    assert!(calls.iter().any(|&n| n > 1), "records came together: {calls:?}");

    let mut dead = test.bus.read(&dead_letter_topic(&topic), Position::Beginning).await.unwrap();
    let letters = collect(dead.as_mut(), 2, WAIT).await;
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].value, poison.value);
    assert_eq!(letters[1].envelope().unwrap().id, rejected.id.unwrap());
}

struct RunningConsumer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningConsumer {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(WAIT, self.task).await;
    }

    /// Ends the consumer where it stands, as a crash would.
    fn kill(self) {
        self.task.abort();
    }
}

/// Runs a consumer until it is stopped or killed.
fn run_consumer(
    test: &TestBus,
    topic: &str,
    group: &str,
    handler: Arc<Recorder>,
) -> RunningConsumer {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = Consumer {
        bus: test.bus.clone(),
        topic: topic.to_owned(),
        group: group.to_owned(),
        handler: Handling::Each(handler),
        options: ConsumerOptions {
            batch: 10,
            poll_wait: Duration::from_millis(200),
            max_attempts: 3,
            backoff: Duration::from_millis(10),
        },
    };
    let task = tokio::spawn(consumer.run(async {
        let _ = stopped.await;
    }));
    RunningConsumer { stop, task }
}

async fn a_poison_message_is_dead_lettered_and_the_partition_moves_on(test: TestBus) {
    let topic = unique_topic();
    let group = unique_group();
    let good = message(&topic, "listener");
    let mut poison = message(&topic, "listener");
    poison.value = b"\x00 not an envelope".to_vec();
    let rejected = message(&topic, "listener");
    let flaky = message(&topic, "listener");
    let hopeless = message(&topic, "listener");
    let last = message(&topic, "listener");
    let all = [&good, &poison, &rejected, &flaky, &hopeless, &last].map(Clone::clone);
    test.bus.publish(&all).await.unwrap();

    let recorder = Arc::new(Recorder::default());
    recorder.rejects.lock().unwrap().push(rejected.id.unwrap());
    recorder.transient_failures.lock().unwrap().insert(flaky.id.unwrap(), 2);
    recorder.transient_failures.lock().unwrap().insert(hopeless.id.unwrap(), 100);
    let consumer = run_consumer(&test, &topic, &group, recorder.clone());
    let handled = eventually(WAIT, || recorder.seen().len() >= 3).await;
    consumer.stop().await;
    assert!(handled, "saw {:?}", recorder.seen());
    assert_eq!(
        recorder.seen(),
        vec![good.id.unwrap(), flaky.id.unwrap(), last.id.unwrap()],
        "retried the flaky one, moved past the rest"
    );

    let mut dead = test.bus.read(&dead_letter_topic(&topic), Position::Beginning).await.unwrap();
    let letters = collect(dead.as_mut(), 3, WAIT).await;
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0].value, poison.value, "the undecodable bytes, kept as they were");
    let dead_ids: Vec<Uuid> = letters[1..].iter().map(|r| r.envelope().unwrap().id).collect();
    assert_eq!(dead_ids, vec![rejected.id.unwrap(), hopeless.id.unwrap()]);
}

async fn a_consumer_that_dies_mid_batch_resumes_from_its_last_commit(test: TestBus) {
    let topic = unique_topic();
    let group = unique_group();
    let first_batch: Vec<_> = (0..10).map(|_| message(&topic, "one-partition")).collect();
    test.bus.publish(&first_batch).await.unwrap();

    let recorder = Arc::new(Recorder::default());
    let consumer = run_consumer(&test, &topic, &group, recorder.clone());
    assert!(eventually(WAIT, || recorder.seen().len() == 10).await);
    // Let the first batch's commit land, then die while handling the second batch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second_batch: Vec<_> = (0..10).map(|_| message(&topic, "one-partition")).collect();
    let second: Vec<Uuid> = second_batch.iter().filter_map(|m| m.id).collect();
    *recorder.hangs_on.lock().unwrap() = Some(second[4]);
    test.bus.publish(&second_batch).await.unwrap();
    assert!(eventually(WAIT, || recorder.seen().len() == 14).await, "handled up to the fifth");
    consumer.kill();

    let restarted = Arc::new(Recorder::default());
    let consumer = run_consumer(&test, &topic, &group, restarted.clone());
    let resumed = eventually(WAIT, || restarted.seen().ends_with(&second[9..])).await;
    consumer.stop().await;
    let seen = restarted.seen();
    assert!(resumed, "saw {seen:?}");
    // It starts again at the last commit: a suffix of the second batch that includes
    // the record it died on, and nothing of the committed first batch.
    let resumed_at =
        second.iter().position(|id| *id == seen[0]).expect("starts inside the second batch");
    assert!(resumed_at <= 4, "redelivers the record it died on");
    assert_eq!(seen, second[resumed_at..].to_vec());
}

async fn a_reset_group_replays(test: TestBus) {
    let topic = unique_topic();
    let group = unique_group();
    let batch: Vec<_> = (0..6).map(|i| message(&topic, &format!("k{i}"))).collect();
    test.bus.publish(&batch).await.unwrap();
    let mut subscription = test.bus.subscribe(&topic, &group).await.unwrap();
    let records = collect(subscription.as_mut(), 6, WAIT).await;
    subscription.commit(&records).await.unwrap();
    drop(subscription);

    test.bus.reset_group(&topic, &group, Position::Beginning).await.unwrap();
    let mut replay = test.bus.subscribe(&topic, &group).await.unwrap();
    let again = collect(replay.as_mut(), 6, WAIT).await;
    let mut sent: Vec<Uuid> = batch.iter().filter_map(|m| m.id).collect();
    let mut got = ids(&again);
    sent.sort();
    got.sort();
    assert_eq!(got, sent);
}
