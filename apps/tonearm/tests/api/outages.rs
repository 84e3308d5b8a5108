//! Engines that stop under steady traffic: PostgreSQL, Redis, ClickHouse and the S3 server
//! go away for 30 s each while clients keep signing up, creating playlists, reporting plays
//! and uploading. Every write the server accepted is there afterwards exactly once; every
//! write it refused left nothing behind. (The broker is out of reach for 30 s under sign-ups in
//! `events`, whose events then arrive once; a SIGKILL mid-write there and below.)

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kernel::engine::EngineUrl;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use testkit::{OwnClickHouse, OwnPostgres, OwnRedis, OwnS3};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use uuid::Uuid;

use crate::{
    catalog::wav,
    support::{TestApp, UpProcess, settled, test_settings, token, unique_email},
};

/// How long each engine stays away.
const OUTAGE: Duration = Duration::from_secs(30);
/// One round of writes per client this often.
const PACE: Duration = Duration::from_millis(250);
const PASSWORD: &str = "correct horse battery";

/// What the clients were told: the writes accepted and refused.
#[derive(Debug, Default)]
struct Ledger {
    /// Sign-ups answered 201, and those refused (any other answer).
    registered: Vec<String>,
    refused_registrations: Vec<String>,
    /// Per listener (by token): plays accepted, each counted once however often it was
    /// retried, and playlists answered 201.
    plays: BTreeMap<String, usize>,
    playlists: BTreeMap<String, usize>,
    /// Per status, how many answers were refusals.
    refusals: BTreeMap<u16, usize>,
    /// Writes with no answer at all (the server died under them): their outcome is
    /// unknown. Only a killed server may leave any.
    unknown_registrations: Vec<String>,
    unknown_playlists: BTreeMap<String, usize>,
    /// Plays not accepted yet, retried with the same id until they are.
    pending_plays: Vec<(String, Uuid)>,
}

impl Ledger {
    fn writes(&self) -> usize {
        self.registered.len()
            + self.plays.values().sum::<usize>()
            + self.playlists.values().sum::<usize>()
    }
}

/// Clients writing steadily until told to stop, then retrying what is still pending until
/// it is accepted: a play keeps its id across retries, as a player's offline queue does.
struct Traffic {
    stop: watch::Sender<bool>,
    ledger: Arc<Mutex<Ledger>>,
    task: JoinHandle<()>,
}

impl Traffic {
    fn start(url: String, listeners: Vec<String>, track: String) -> Self {
        Self::resume(url, listeners, track, Ledger::default())
    }

    /// Goes on from `ledger`, retrying its pending plays first.
    fn resume(url: String, listeners: Vec<String>, track: String, ledger: Ledger) -> Self {
        let (stop, stopped) = watch::channel(false);
        let ledger = Arc::new(Mutex::new(ledger));
        let task = tokio::spawn(write_steadily(url, listeners, track, stopped, ledger.clone()));
        Self { stop, ledger, task }
    }

    /// Stops writing new things and waits until every pending play is accepted.
    async fn finish(self) -> Ledger {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }

    /// Stops at once, for a server that is gone: what was in flight stays unknown.
    fn halt(self) -> Ledger {
        self.task.abort();
        std::mem::take(&mut *self.ledger.lock().unwrap())
    }
}

async fn write_steadily(
    url: String,
    listeners: Vec<String>,
    track: String,
    stopped: watch::Receiver<bool>,
    shared: Arc<Mutex<Ledger>>,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(90)).build().unwrap();
    let mut round = 0_usize;
    loop {
        let stopping = *stopped.borrow();
        if stopping && shared.lock().unwrap().pending_plays.is_empty() {
            return;
        }
        if !stopping {
            // Each write is unknown until its answer says otherwise.
            let email = unique_email();
            shared.lock().unwrap().unknown_registrations.push(email.clone());
            let body = json!({"email": email, "password": PASSWORD, "display_name": "Steady"});
            let answer = client.post(format!("{url}/v1/auth/register")).json(&body).send().await;
            if let Ok(response) = answer {
                let mut ledger = shared.lock().unwrap();
                ledger.unknown_registrations.pop();
                if response.status() == StatusCode::CREATED {
                    ledger.registered.push(email);
                } else {
                    *ledger.refusals.entry(response.status().as_u16()).or_default() += 1;
                    ledger.refused_registrations.push(email);
                }
            }
            let listener = listeners[round % listeners.len()].clone();
            {
                let mut ledger = shared.lock().unwrap();
                ledger.pending_plays.push((listener.clone(), Uuid::now_v7()));
                *ledger.unknown_playlists.entry(listener.clone()).or_default() += 1;
            }
            let body = json!({"name": format!("steady {round}")});
            let created = client
                .post(format!("{url}/v1/playlists"))
                .bearer_auth(&listener)
                .json(&body)
                .send()
                .await;
            if let Ok(response) = created {
                let mut ledger = shared.lock().unwrap();
                *ledger.unknown_playlists.entry(listener.clone()).or_default() -= 1;
                if response.status() == StatusCode::CREATED {
                    *ledger.playlists.entry(listener).or_default() += 1;
                } else {
                    *ledger.refusals.entry(response.status().as_u16()).or_default() += 1;
                }
            }
        }
        let pending = std::mem::take(&mut shared.lock().unwrap().pending_plays);
        let mut still = Vec::new();
        for (listener, id) in pending {
            let body = json!({"id": id, "track_id": track, "played_ms": 1_500});
            let reported = client
                .post(format!("{url}/v1/me/plays"))
                .bearer_auth(&listener)
                .json(&body)
                .send()
                .await;
            let mut ledger = shared.lock().unwrap();
            match reported {
                Ok(response) if response.status() == StatusCode::ACCEPTED => {
                    *ledger.plays.entry(listener).or_default() += 1;
                }
                Ok(response) => {
                    *ledger.refusals.entry(response.status().as_u16()).or_default() += 1;
                    still.push((listener, id));
                }
                // Unknown outcome: the same id again is safe.
                Err(_) => still.push((listener, id)),
            }
        }
        {
            let mut ledger = shared.lock().unwrap();
            still.append(&mut ledger.pending_plays);
            ledger.pending_plays = still;
        }
        round += 1;
        tokio::time::sleep(PACE).await;
    }
}

/// Checks that every accepted write is there once and every refused sign-up left no
/// account; returns how many writes were checked.
async fn check_ledger(app: &TestApp, ledger: &Ledger) -> usize {
    assert!(ledger.pending_plays.is_empty(), "every play was accepted in the end");
    for email in &ledger.registered {
        let body = json!({"email": email, "password": PASSWORD});
        let login = app.post("/v1/auth/login", None, body).await;
        assert_eq!(login.status(), StatusCode::OK, "{email} was accepted, so it signs in");
    }
    for email in &ledger.refused_registrations {
        let body = json!({"email": email, "password": PASSWORD});
        let login = app.post("/v1/auth/login", None, body).await;
        assert_eq!(login.status(), StatusCode::UNAUTHORIZED, "{email} was refused: no account");
    }
    for email in &ledger.unknown_registrations {
        let body = json!({"email": email, "password": PASSWORD});
        let login = app.post("/v1/auth/login", None, body).await.status();
        assert!([StatusCode::OK, StatusCode::UNAUTHORIZED].contains(&login), "{email}: {login}");
    }
    for (listener, accepted) in &ledger.playlists {
        let unknown = ledger.unknown_playlists.get(listener).copied().unwrap_or_default();
        let mine: Value = app.get("/v1/me/playlists", Some(listener)).await.json().await.unwrap();
        let total = mine["total"].as_u64().unwrap() as usize;
        assert!(
            (*accepted..=*accepted + unknown).contains(&total),
            "each accepted playlist once ({accepted} accepted, {unknown} unknown): {total}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for (listener, accepted) in &ledger.plays {
        loop {
            let history = app.get("/v1/me/history?limit=1", Some(listener)).await;
            let total = if history.status() == StatusCode::OK {
                history.json::<Value>().await.unwrap()["total"].as_u64()
            } else {
                None
            };
            if total == Some(*accepted as u64) {
                break;
            }
            assert!(
                total.is_none_or(|total| total < *accepted as u64),
                "a play counted twice: {total:?} of {accepted}"
            );
            assert!(Instant::now() < deadline, "{accepted} plays accepted, {total:?} in history");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    ledger.writes() + ledger.refused_registrations.len()
}

/// Three listeners and a ready track for the traffic.
/// [`check_ledger`] after an outage that the server rode out without refusing anything.
async fn check_nothing_refused(app: &TestApp, ledger: &Ledger) -> usize {
    assert!(ledger.refusals.is_empty(), "{:?}", ledger.refusals);
    assert!(ledger.unknown_registrations.is_empty(), "every request got an answer");
    check_ledger(app, ledger).await
}

async fn listeners_and_a_track(app: &TestApp) -> (Vec<String>, String) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(token(&app.register(&unique_email()).await, "access_token"));
    }
    let uploaded = crate::catalog::upload(app, &listeners[0], "steady.wav", wav(2, 7), &[]).await;
    let id = uploaded.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(app, &listeners[0], &id).await["status"], "ready");
    (listeners, id)
}

async fn wait_until_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while app.get("/readyz", None).await.status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "ready again within 90 s of the engine's return");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Settings for a test of its own engines, with budgets no steady client reaches (the
/// budgets have their own tests).
fn steady_settings(dir: &std::path::Path) -> tonearm::Settings {
    let mut settings = test_settings(dir);
    settings.gateway.rate_limits.free_per_minute = 100_000;
    settings.gateway.rate_limits.premium_per_minute = 100_000;
    settings.gateway.rate_limits.anonymous_per_minute = 100_000;
    settings
}

fn postgres_database(postgres: &OwnPostgres, name: &str) -> Option<EngineUrl> {
    Some(EngineUrl::new(format!("{}/{name}", postgres.url())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopping_for_30_s_under_writes_loses_and_doubles_nothing() {
    let home = TempDir::new().unwrap();
    let port = testkit::free_port();
    let postgres = OwnPostgres::start_in(home.path(), port).await;
    let dir = Arc::new(TempDir::new().unwrap());
    let mut settings = steady_settings(dir.path());
    settings.auth.database_url = postgres_database(&postgres, "tonearm_auth");
    settings.playlist.database_url = postgres_database(&postgres, "tonearm_playlist");
    settings.analytics.database_url = postgres_database(&postgres, "tonearm_analytics");
    let app = TestApp::up_with(settings, Some(dir)).await;

    let restart = OwnPostgres::start_in(home.path(), port);
    let (ledger, _postgres) = through_an_outage(&app, move || postgres.stop(), restart).await;

    assert!(ledger.unknown_registrations.is_empty(), "every request got an answer");
    assert!(!ledger.refused_registrations.is_empty(), "sign-ups were refused while it was away");
    assert!(ledger.refusals.keys().all(|status| *status == 503), "{:?}", ledger.refusals);
    let checked = check_ledger(&app, &ledger).await;
    println!("postgres outage: {checked} writes checked, refusals {:?}", ledger.refusals);
}

/// Steady traffic through an outage of an engine that `stop` stops and `restart` brings
/// back; the ledger of what the clients were told.
async fn through_an_outage<R>(
    app: &TestApp,
    stop: impl FnOnce(),
    restart: impl Future<Output = R>,
) -> (Ledger, R) {
    let (listeners, track) = listeners_and_a_track(app).await;
    let traffic = Traffic::start(app.url(""), listeners, track);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop();
    tokio::time::sleep(OUTAGE).await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE, "not ready without the engine");
    let engine = restart.await;
    wait_until_ready(app).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    (traffic.finish().await, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopping_for_30_s_under_writes_loses_and_doubles_nothing() {
    let port = testkit::free_port();
    let redis = OwnRedis::start_on(port).await;
    let dir = Arc::new(TempDir::new().unwrap());
    let mut settings = steady_settings(dir.path());
    settings.auth.cache_url = Some(EngineUrl::new(redis.url()));
    settings.gateway.cache_url = Some(EngineUrl::new(redis.url()));
    let app = TestApp::up_with(settings, Some(dir)).await;

    let (ledger, _redis) =
        through_an_outage(&app, move || redis.stop(), OwnRedis::start_on(port)).await;
    // Sessions and budgets fall back to the databases: nothing is refused for it.
    let checked = check_nothing_refused(&app, &ledger).await;
    println!("redis outage: {checked} writes checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopping_for_30_s_under_writes_loses_and_doubles_nothing() {
    let home = TempDir::new().unwrap();
    let ports = OwnClickHouse::free_ports();
    let clickhouse = OwnClickHouse::start_in(home.path(), ports).await;
    let dir = Arc::new(TempDir::new().unwrap());
    let mut settings = steady_settings(dir.path());
    let warehouse = format!("{}/tonearm_steady", clickhouse.url());
    settings.analytics.warehouse_url = Some(EngineUrl::new(warehouse));
    let app = TestApp::up_with(settings, Some(dir)).await;

    let restart = OwnClickHouse::start_in(home.path(), ports);
    let (ledger, _clickhouse) = through_an_outage(&app, move || clickhouse.stop(), restart).await;
    // Play reports wait in the outbox and on the bus: none is refused for it.
    let checked = check_nothing_refused(&app, &ledger).await;
    println!("clickhouse outage: {checked} writes checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_server_stopping_for_30_s_leaves_uploads_complete_or_cleanly_refused() {
    let home = TempDir::new().unwrap();
    let port = testkit::free_port();
    let s3 = OwnS3::start_in(home.path(), port).await;
    let dir = Arc::new(TempDir::new().unwrap());
    let mut settings = steady_settings(dir.path());
    settings.storage = objects::StorageConfig {
        url: Some(EngineUrl::new(format!("s3://{}", s3.bucket))),
        endpoint: Some(s3.endpoint()),
        region: None,
        access_key_id: Some(OwnS3::ACCESS_KEY.to_owned()),
        secret_access_key: Some(OwnS3::SECRET_KEY.to_owned().into()),
    };
    let app = TestApp::up_with(settings, Some(dir)).await;
    let (listeners, track) = listeners_and_a_track(&app).await;
    let uploader = listeners[0].clone();
    let traffic = Traffic::start(app.url(""), listeners, track);

    // Uploads throughout: before, during and after the outage.
    let mut accepted = Vec::new();
    let mut refused = BTreeMap::<u16, usize>::new();
    let started = Instant::now();
    let mut seed = 10_u8;
    let mut stopped_at = None;
    let mut s3 = Some(s3);
    loop {
        let elapsed = started.elapsed();
        if elapsed > Duration::from_secs(3) && stopped_at.is_none() {
            s3.take().unwrap().stop();
            stopped_at = Some(Instant::now());
        }
        if stopped_at.is_some_and(|at| at.elapsed() >= OUTAGE) {
            break;
        }
        seed = seed.wrapping_add(1);
        let response =
            crate::catalog::upload(&app, &uploader, "steady.wav", wav(1, seed), &[]).await;
        match response.status() {
            StatusCode::ACCEPTED => {
                accepted.push(
                    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned(),
                );
            }
            status => {
                let problem = crate::support::assert_problem(response, status).await;
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
                *refused.entry(status.as_u16()).or_default() += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!refused.is_empty(), "uploads were refused while storage was away");
    let _s3 = OwnS3::start_in(home.path(), port).await;
    wait_until_ready(&app).await;
    for _ in 0..3 {
        seed = seed.wrapping_add(1);
        let response =
            crate::catalog::upload(&app, &uploader, "after.wav", wav(1, seed), &[]).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        accepted.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let ledger = traffic.finish().await;

    // Every accepted upload becomes a playable track; the refused ones left none.
    for id in &accepted {
        let track = settled(&app, &uploader, id).await;
        assert_eq!(track["status"], "ready", "{track}");
        let stream = app.get(&format!("/v1/tracks/{id}/stream"), Some(&uploader)).await;
        assert_eq!(stream.status(), StatusCode::OK);
    }
    let mine: Value = app.get("/v1/tracks?limit=100", Some(&uploader)).await.json().await.unwrap();
    assert_eq!(mine["total"], accepted.len() + 1, "the seed track and each accepted upload");
    let checked = check_ledger(&app, &ledger).await + accepted.len();
    println!("s3 outage: {checked} writes checked, uploads refused {refused:?}");
}

/// `tonearm up` killed with SIGKILL in the middle of steady writes, then started again on
/// the same data: everything it had accepted is there once, and the plays a client was
/// still retrying count once when it retries them against the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_under_steady_writes_loses_and_doubles_nothing() {
    let dir = TempDir::new().unwrap();
    let server = UpProcess::start(dir.path()).await;
    let app = TestApp::attach(&server.url, dir.path());
    let (listeners, track) = listeners_and_a_track(&app).await;
    let first = Traffic::start(server.url.clone(), listeners.clone(), track.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.kill();
    let ledger = first.halt();
    assert!(!ledger.registered.is_empty(), "writes were accepted before the kill");

    let server = UpProcess::start(dir.path()).await;
    let app = TestApp::attach(&server.url, dir.path());
    // The listeners' tokens, issued before the kill, still work.
    let second = Traffic::resume(server.url.clone(), listeners, track, ledger);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ledger = second.finish().await;
    let checked = check_ledger(&app, &ledger).await;
    println!("sigkill: {checked} writes checked");
}
