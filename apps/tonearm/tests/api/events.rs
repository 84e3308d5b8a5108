//! Events leave each service through its outbox and reach the bus exactly once, in both
//! shapes, whatever happens to the process.

use std::{collections::HashMap, path::Path, time::Duration};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{UpProcess, succeeded, tonearm_cli, unique_email};

async fn register(client: &reqwest::Client, url: &str, email: &str) -> String {
    let response = client
        .post(format!("{url}/v1/auth/register"))
        .json(&json!({"email": email, "password": "correct horse battery", "display_name": "E"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["user"]["id"].as_str().unwrap().to_owned()
}

/// How many `user.registered` events `tonearm events tail` shows per user id.
fn registered_counts(data_dir: &Path) -> HashMap<String, usize> {
    let output =
        tonearm_cli(&["events", "tail", "user.registered", "--from-beginning"], data_dir, &[]);
    let mut counts = HashMap::new();
    // Until the first event is relayed or the first consumer has started, the topic is
    // not there yet: nothing is counted.
    if String::from_utf8_lossy(&output.stderr).contains("no such topic") {
        return counts;
    }
    for line in succeeded(&output).lines() {
        let envelope: Value = serde_json::from_str(line).expect("one JSON envelope per line");
        assert_eq!(envelope["type"], "user.registered");
        *counts.entry(envelope["payload"]["user_id"].as_str().unwrap().to_owned()).or_default() +=
            1;
    }
    counts
}

#[tokio::test]
async fn every_registration_is_one_event_even_across_a_sigkill() {
    let dir = TempDir::new().unwrap();
    let client = reqwest::Client::new();
    let server = UpProcess::start(dir.path()).await;
    let mut users = Vec::new();
    for _ in 0..5 {
        users.push(register(&client, &server.url, &unique_email()).await);
    }
    server.kill();

    let server = UpProcess::start(dir.path()).await;
    let mut counts = HashMap::new();
    for _ in 0..100 {
        counts = registered_counts(dir.path());
        if users.iter().all(|user| counts.contains_key(user)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for user in &users {
        assert_eq!(counts.get(user), Some(&1), "one event for {user}: {counts:?}");
    }
    assert_eq!(counts.len(), users.len());

    // More registrations, another kill right after them, and a tail read while running.
    let mut more = Vec::new();
    for _ in 0..3 {
        more.push(register(&client, &server.url, &unique_email()).await);
    }
    server.kill();
    let _server = UpProcess::start(dir.path()).await;
    for _ in 0..100 {
        counts = registered_counts(dir.path());
        if more.iter().all(|user| counts.contains_key(user)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(counts.len(), users.len() + more.len(), "{counts:?}");
    assert!(counts.values().all(|&count| count == 1), "{counts:?}");

    let topics = succeeded(&tonearm_cli(&["events", "topics"], dir.path(), &[]));
    assert!(topics.contains("user.registered"), "{topics}");
    let limited = tonearm_cli(
        &["events", "tail", "user.registered", "--from-beginning", "--max", "2"],
        dir.path(),
        &[],
    );
    assert_eq!(succeeded(&limited).lines().count(), 2);
}

#[tokio::test]
async fn replay_moves_a_group_back() {
    let dir = TempDir::new().unwrap();
    let log = bus::embedded::EmbeddedLog::open(
        &dir.path().join("events"),
        bus::embedded::LogOptions::from(&bus::BusConfig::default()),
    )
    .unwrap();
    let envelope = bus::Envelope::new(
        &bus::events::UserDeleted { user_id: uuid::Uuid::now_v7(), deleted_at: chrono::Utc::now() },
        chrono::Utc::now(),
    );
    use bus::EventBus as _;
    log.publish(&[envelope.to_message()]).await.unwrap();
    let mut subscription = log.subscribe("user.deleted", "cleanup").await.unwrap();
    let records = subscription.poll(10, Duration::from_secs(2)).await.unwrap();
    subscription.commit(&records).await.unwrap();

    let output = tonearm_cli(
        &["events", "replay", "user.deleted", "--group", "cleanup", "--from", "beginning"],
        dir.path(),
        &[],
    );
    assert!(succeeded(&output).contains("cleanup"));
    let again = subscription.poll(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(again.len(), 1, "the running consumer reads it again");

    let bad = tonearm_cli(
        &["events", "replay", "user.deleted", "--group", "cleanup", "--from", "yesterday"],
        dir.path(),
        &[],
    );
    assert!(!bad.status.success());
}

/// Settings for `serve auth` publishing to a Kafka broker.
fn auth_on_kafka(data_dir: &Path, kafka_url: &str) -> tonearm::Settings {
    let mut settings = crate::support::test_settings(data_dir);
    settings.events.url = Some(kernel::engine::EngineUrl::new(kafka_url));
    settings.events.partitions = 3;
    settings.events.replication_factor = 1;
    settings
}

/// Reads `user.registered` with a plain Kafka client, as any other consumer would, and
/// counts the events per user id among `users`, until each has one or `within` passes.
async fn count_on_kafka(
    kafka_url: &str,
    users: &[String],
    within: Duration,
) -> HashMap<String, usize> {
    use rdkafka::{
        ClientConfig, Message as _,
        consumer::{Consumer as _, StreamConsumer},
    };
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_url.trim_start_matches("kafka://"))
        .set("group.id", testkit::unique("stock-client"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&["user.registered"]).unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        // Keep reading a little past the point where every user was seen, to catch duplicates.
        let complete = users.iter().all(|user| counts.contains_key(user));
        let wait =
            if complete { Duration::from_secs(2) } else { deadline - tokio::time::Instant::now() };
        let Ok(Ok(message)) = tokio::time::timeout(wait, consumer.recv()).await else {
            if complete {
                break;
            }
            continue;
        };
        let Some(payload) = message.payload() else { continue };
        let envelope: Value = serde_json::from_slice(payload).expect("envelopes are JSON");
        assert_eq!(envelope["type"], "user.registered");
        let user = envelope["payload"]["user_id"].as_str().unwrap_or_default().to_owned();
        if users.contains(&user) {
            *counts.entry(user).or_default() += 1;
        }
    }
    // Closing a consumer can wait on the broker; let it finish on its own.
    std::thread::spawn(move || drop(consumer));
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_serve_the_events_are_on_kafka_for_any_client() {
    let dir = TempDir::new().unwrap();
    let kafka = testkit::kafka_url();
    let auth = crate::support::TestApp::serve(
        auth_on_kafka(dir.path(), &kafka),
        tonearm::ServiceName::Auth,
    )
    .await;
    let client = reqwest::Client::new();
    let mut users = Vec::new();
    for _ in 0..3 {
        users.push(register(&client, &auth.url(""), &unique_email()).await);
    }
    let counts = count_on_kafka(&kafka, &users, Duration::from_secs(60)).await;
    for user in &users {
        assert_eq!(counts.get(user), Some(&1), "{counts:?}");
    }
}

/// The broker is out of reach for 30 s and then back with everything it held, as after a
/// restart that keeps its log or a network partition. (A broker that comes back empty is
/// the bus's own tests' case: librdkafka 2.12.1 can crash when a consumer fetches across
/// such a restart, see docs/security.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_succeed_while_the_broker_is_out_of_reach_and_their_events_arrive_once() {
    let broker_port = testkit::free_port();
    let link = testkit::Link::to(broker_port).await;
    let broker = testkit::OwnKafka::start_advertising(broker_port, link.port).await;
    let kafka = broker.url();
    let dir = TempDir::new().unwrap();
    let auth = crate::support::TestApp::serve(
        auth_on_kafka(dir.path(), &kafka),
        tonearm::ServiceName::Auth,
    )
    .await;
    let client = reqwest::Client::new();
    register(&client, &auth.url(""), &unique_email()).await;

    link.cut();
    let outage = tokio::time::Instant::now();
    let mut users = Vec::new();
    for _ in 0..5 {
        users.push(register(&client, &auth.url(""), &unique_email()).await);
    }
    let reached = tokio::net::TcpStream::connect(("127.0.0.1", link.port)).await;
    assert!(reached.is_err(), "the broker is out of reach while the link is cut");
    tokio::time::sleep_until(outage + Duration::from_secs(30)).await;
    link.mend().await;

    let counts = count_on_kafka(&kafka, &users, Duration::from_secs(90)).await;
    for user in &users {
        assert_eq!(
            counts.get(user),
            Some(&1),
            "every event once after the broker returned: {counts:?}"
        );
    }
}
