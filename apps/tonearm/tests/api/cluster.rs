//! The deployed shape end to end: `deploy/local/cluster.sh` starts every service as its own
//! process (two gateways, two streaming replicas) on PostgreSQL, Redis, the Kafka-protocol
//! broker, ClickHouse and the S3 server, and a listener's whole day goes through it over
//! HTTP, both gateways alike, each process exporting its traces to a collector. Then one
//! service stops: the home page degrades instead of failing, and recovers when the service
//! is back.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    catalog::{upload, wav},
    people::Live,
    support::{TestApp, settled, token, unique_email},
};

/// The cluster, stopped (`down`) when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    base: u16,
    /// The prefix of its databases.
    name: String,
}

impl Cluster {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/cluster.sh")
    }

    fn run(&self, args: &[&str]) {
        let output = Command::new(Self::script())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cluster.sh {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn up(traces: &testkit::otlp::Collector) -> Self {
        let dir = tempfile::TempDir::new().unwrap();
        // Eighteen ports in a row that nothing else here uses: below Linux's ephemeral
        // ports (32768 and up), so that no other test's outgoing connection or port-0
        // listener takes one of them before the cluster binds it.
        let base = 20_000 + (std::process::id() % 600) as u16 * 20;
        let name = format!("tonearm_test_cluster_{}", uuid::Uuid::now_v7().simple());
        let env = vec![
            ("TONEARM_BIN".to_owned(), env!("CARGO_BIN_EXE_tonearm").to_owned()),
            ("CLUSTER_DIR".to_owned(), dir.path().display().to_string()),
            ("CLUSTER_PORT".to_owned(), base.to_string()),
            ("CLUSTER_NAME".to_owned(), name.clone()),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            ("TONEARM_TELEMETRY__OTLP_ENDPOINT".to_owned(), traces.endpoint.clone()),
        ];
        let cluster = Self { dir, env, base, name };
        cluster.run(&["up"]);
        cluster
    }

    fn gateway(&self, replica: u16) -> TestApp {
        TestApp::attach(&format!("http://127.0.0.1:{}", self.base + replica), self.dir.path())
    }

    fn webhook_secret(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("webhook-secret")).unwrap().trim().to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(Self::script())
            .arg("down")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
    }
}

/// Polls `check` every 200 ms for up to a minute; returns its first `Some`.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within a minute");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn home(app: &TestApp, token: &str) -> Value {
    app.get("/v1/home", Some(token)).await.json().await.unwrap()
}

/// A signed playlist's text, and the first URI listed in it (made absolute).
async fn media(app: &TestApp, url: &str) -> (String, Option<String>) {
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    let text = response.text().await.unwrap();
    let first = text.lines().find(|line| !line.is_empty() && !line.starts_with('#'));
    let next = first.map(|uri| {
        if uri.starts_with("http") {
            uri.to_owned()
        } else {
            let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
            format!("{base}/{uri}")
        }
    });
    (text, next)
}

/// The upload's trace: the gateway's request span, the catalog's request span under it,
/// and a streaming replica's handling of the `track.uploaded` event the catalog published,
/// under one of the catalog's spans: one trace across three processes and the bus.
async fn upload_traced_from_gateway_to_streaming(traces: &testkit::otlp::Collector) {
    let attribute = |span: &testkit::otlp::CollectedSpan, key: &str| {
        span.attributes.get(key).cloned().unwrap_or_default()
    };
    eventually("the upload's trace", || async {
        let spans = traces.spans();
        let gateway = spans.iter().find(|span| {
            span.service == "tonearm-gateway"
                && span.name == "request"
                && attribute(span, "method") == "POST"
                && attribute(span, "path") == "/v1/tracks"
        })?;
        let in_trace = |service: &'static str| {
            spans
                .iter()
                .filter(move |span| span.service == service && span.trace_id == gateway.trace_id)
        };
        let catalog = in_trace("tonearm-catalog")
            .find(|span| span.name == "request" && span.parent_span_id == gateway.span_id)?;
        assert_eq!(attribute(catalog, "path"), "/v1/tracks");
        let catalog_spans: Vec<&str> =
            in_trace("tonearm-catalog").map(|span| span.span_id.as_str()).collect();
        let streaming = in_trace("tonearm-streaming").find(|span| {
            span.name == "handle event" && attribute(span, "event_type") == "track.uploaded"
        })?;
        assert!(
            catalog_spans.contains(&streaming.parent_span_id.as_str()),
            "the event's handling continues a catalog span: {streaming:?}"
        );
        Some(())
    })
    .await;
}

#[tokio::test]
async fn a_listeners_day_through_the_deployed_shape_and_a_service_that_stops() {
    let traces = testkit::otlp::Collector::start().await;
    let cluster = Cluster::up(&traces);
    let (one, two) = (cluster.gateway(0), cluster.gateway(1));
    let ann_body = one.register(&unique_email()).await;
    let ann = token(&ann_body, "access_token");
    let bob_email = unique_email();
    let bob_body = two.register(&bob_email).await;
    let bob = token(&bob_body, "access_token");
    let bob_id = bob_body["user"]["id"].as_str().unwrap().to_owned();

    // Ann follows Bob and listens on the live channel, through the first gateway.
    let follow = format!("/v1/me/following/{bob_id}");
    let followed = one.send(Method::PUT, &follow, Some(&ann), None).await;
    assert_eq!(followed.status(), StatusCode::NO_CONTENT);
    let mut live = Live::open(&one.url("/v1/me/live"), &ann).await;
    live.next("ready").await;

    // Bob uploads through one gateway and sees it ready through the other.
    let accepted =
        upload(&one, &bob, "Harbour Lights.wav", wav(8, 3), &[("title", "Harbour Lights")]);
    let id = accepted.await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(&two, &bob, &id).await["status"], "ready");
    upload_traced_from_gateway_to_streaming(&traces).await;

    // Streaming: the master playlist, a media playlist and a segment, all signed.
    let stream: Value =
        two.get(&format!("/v1/tracks/{id}/stream"), Some(&bob)).await.json().await.unwrap();
    let (master, media_playlist) = media(&one, stream["url"].as_str().unwrap()).await;
    assert!(master.starts_with("#EXTM3U"), "{master}");
    let (_, segment) = media(&one, &media_playlist.expect("a rendition")).await;
    let init_or_segment = one.client.get(segment.expect("a segment")).send().await.unwrap();
    assert_eq!(init_or_segment.status(), StatusCode::OK);
    assert!(!init_or_segment.bytes().await.unwrap().is_empty());

    // A playlist, a like and a play; Ann hears of the playlist and of the play.
    let created =
        two.post("/v1/playlists", Some(&bob), json!({"name": "Dusk", "public": true})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let playlist = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let tracks = format!("/v1/playlists/{playlist}/tracks");
    let added = two.post(&tracks, Some(&bob), json!({"track_ids": [id]})).await;
    assert_eq!(added.status(), StatusCode::CREATED);
    let liked = two.send(Method::PUT, &format!("/v1/me/likes/{id}"), Some(&bob), None).await;
    assert_eq!(liked.status(), StatusCode::NO_CONTENT);
    assert_eq!(live.next("notification").await["kind"], "playlist_created");
    let played =
        two.post("/v1/me/plays", Some(&bob), json!({"track_id": id, "played_ms": 8000})).await;
    assert_eq!(played.status(), StatusCode::ACCEPTED);
    let playing = live.next("now_playing").await;
    assert_eq!(
        (playing["user"]["id"].clone(), playing["track"]["id"].clone()),
        (json!(bob_id), json!(id))
    );

    // The play reaches the charts (ClickHouse) and the history.
    eventually("the play in the charts", || async {
        let top: Value =
            one.get("/v1/analytics/top-tracks?window=24h", Some(&ann)).await.json().await.ok()?;
        let items = top["items"].as_array()?;
        items.iter().any(|item| item["track"]["id"] == id.as_str()).then_some(())
    })
    .await;
    let recommended = two.get("/v1/me/recommendations", Some(&bob)).await;
    assert_eq!(recommended.status(), StatusCode::OK);
    assert!(recommended.json::<Value>().await.unwrap()["items"].is_array());

    // Whisper hears a spoken phrase.
    let spoken = testkit::voice::espeak_wav("play harbour lights");
    let heard = one
        .client
        .post(one.url("/v1/ai/transcribe"))
        .bearer_auth(&ann)
        .header("content-type", "audio/wav")
        .body(spoken)
        .send()
        .await
        .unwrap();
    assert_eq!(heard.status(), StatusCode::OK);
    let text = heard.json::<Value>().await.unwrap()["text"].as_str().unwrap().to_lowercase();
    assert!(text.contains("harbo"), "{text}");

    // A signed payment makes Bob premium.
    let paid = people::domain::billing::simulated_invoice(&bob_email, 1, chrono::Utc::now());
    let body = serde_json::to_vec(&paid).unwrap();
    let signature = people::domain::billing::sign(
        &body,
        &cluster.webhook_secret(),
        chrono::Utc::now().timestamp(),
    );
    let webhook = one
        .client
        .post(one.url("/v1/billing/webhook"))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), StatusCode::OK);
    eventually("premium", || async {
        let me: Value = two.get("/v1/me", Some(&bob)).await.json().await.ok()?;
        (me["tier"] == "premium").then_some(())
    })
    .await;

    // The home page whole; then without playlists; then whole again.
    let whole = home(&one, &bob).await;
    assert_eq!(whole["degraded"], json!([]), "{whole}");
    assert_eq!(whole["playlists"]["items"][0]["name"], "Dusk");
    cluster.run(&["stop", "playlist-1"]);
    let degraded = home(&two, &bob).await;
    assert_eq!(degraded["degraded"], json!(["playlists"]), "{degraded}");
    assert_eq!(degraded["profile"]["tier"], "premium");
    cluster.run(&["start", "playlist-1"]);
    eventually("home whole again", || async {
        let again = home(&one, &bob).await;
        (again["degraded"] == json!([])).then_some(())
    })
    .await;

    // Every metric a shipped dashboard or alert rule reads, some process exports.
    let mut exported = std::collections::BTreeSet::new();
    for offset in [0, 1, 10, 11, 12, 13, 14, 15, 16, 17] {
        let url = format!("http://127.0.0.1:{}/metrics", cluster.base + offset);
        let text = one.client.get(url).send().await.unwrap().text().await.unwrap();
        exported.extend(crate::deploy::exported(&text));
    }
    let shown = crate::deploy::metrics_operators_are_shown();
    let missing: Vec<&String> = shown.difference(&exported).collect();
    assert!(missing.is_empty(), "dashboards or alerts read metrics nothing exports: {missing:?}");

    a_stopped_replica_hands_its_transcode_back(&cluster, &one, &bob).await;
}

/// Scaling down: a streaming replica told to stop (SIGTERM, as Kubernetes does) mid-job
/// gives the job back to the queue at once, instead of holding it until its lease lapses;
/// a replica started later finishes it.
async fn a_stopped_replica_hands_its_transcode_back(cluster: &Cluster, app: &TestApp, token: &str) {
    let jobs =
        sqlx::PgPool::connect(&format!("{}/{}_streaming", testkit::postgres_url(), cluster.name))
            .await
            .unwrap();
    let job = |track: uuid::Uuid| {
        let jobs = jobs.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT status, owner FROM transcode_jobs WHERE track_id = $1",
            )
            .bind(track)
            .fetch_optional(&jobs)
            .await
            .unwrap()
        }
    };
    cluster.run(&["stop", "streaming-2"]);
    // Ten minutes of audio: long enough that the stop lands mid-job.
    let long = crate::streaming::audio("mp3", 600, 13);
    let accepted = upload(app, token, "Long Take.mp3", long, &[("title", "Long Take")]).await;
    let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let track: uuid::Uuid = id.parse().unwrap();
    eventually("streaming-1 transcoding", || async {
        job(track).await.filter(|(status, _)| status == "running")
    })
    .await;
    cluster.run(&["stop", "streaming-1"]);
    assert_eq!(
        job(track).await,
        Some(("queued".to_owned(), None)),
        "the stopped replica's job is back in the queue, owned by nobody"
    );
    cluster.run(&["start", "streaming-2"]);
    assert_eq!(settled(app, token, &id).await["status"], "ready");
    cluster.run(&["start", "streaming-1"]);
}
