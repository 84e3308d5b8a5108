//! Load and abuse: a burst of password guesses, bodies past their limit, and ten thousand
//! clients that connect and say nothing. The server refuses what it must, tells nobody
//! which accounts exist, and stays ready with bounded memory.

use std::{sync::Arc, time::Duration};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpStream;

use crate::support::{TestApp, UpProcess, assert_problem, own_redis_settings, unique_email};

/// `auth.login_throttle.max_failures_per_email`, by default.
const FAILURES_PER_EMAIL: usize = 10;

/// Guesses sent at once, far past the per-email budget.
const BURST: usize = 60;

/// What a burst of wrong passwords for `email`, all in flight at once, gets back: the
/// status of each answer, and every distinct problem body.
async fn guess_at_once(app: &TestApp, email: &str) -> (Vec<StatusCode>, Vec<Value>) {
    let guesses = (0..BURST).map(|guess| {
        app.post(
            "/v1/auth/login",
            None,
            json!({"email": email, "password": format!("wrong password {guess}")}),
        )
    });
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    for response in join_all(guesses).await {
        statuses.push(response.status());
        let mut body: Value = response.json().await.unwrap();
        // How long to wait differs by the second it was asked; everything else must not.
        let detail = body["detail"].as_str().unwrap().replace(|c: char| c.is_ascii_digit(), "");
        body["detail"] = Value::String(detail);
        if !bodies.contains(&body) {
            bodies.push(body);
        }
    }
    (statuses, bodies)
}

fn count(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_guesses_gets_the_budget_and_no_more_and_reveals_no_account() {
    // Redis holds the windows, as in a deployment with several auth replicas; a Redis of
    // its own, since the burst fills the window of 127.0.0.1, every test's address.
    let dir = Arc::new(TempDir::new().unwrap());
    let (settings, _redis) = own_redis_settings(dir.path()).await;
    let app = TestApp::up_with(settings, Some(dir.clone())).await;
    let email = unique_email();
    app.register(&email).await;

    let (known, known_bodies) = guess_at_once(&app, &email).await;
    assert_eq!(
        count(&known, StatusCode::UNAUTHORIZED),
        FAILURES_PER_EMAIL,
        "only the budget's guesses are checked, however many arrive together: {known:?}"
    );
    assert_eq!(count(&known, StatusCode::TOO_MANY_REQUESTS), BURST - FAILURES_PER_EMAIL);

    // The right password, now: still refused, so the throttle is no oracle.
    let right = app
        .post("/v1/auth/login", None, json!({"email": email, "password": "correct horse battery"}))
        .await;
    let refused = assert_problem(right, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(refused["detail"].is_string());

    // An address nobody registered answers exactly alike.
    let (unknown, unknown_bodies) = guess_at_once(&app, &unique_email()).await;
    assert_eq!(count(&unknown, StatusCode::UNAUTHORIZED), FAILURES_PER_EMAIL, "{unknown:?}");
    assert_eq!(count(&unknown, StatusCode::TOO_MANY_REQUESTS), BURST - FAILURES_PER_EMAIL);
    assert_eq!(known_bodies, unknown_bodies, "the answers tell no account from none");
}

#[tokio::test]
async fn a_right_password_does_not_spend_the_budget() {
    let app = TestApp::up().await;
    let email = unique_email();
    app.register(&email).await;
    for _ in 0..FAILURES_PER_EMAIL * 2 {
        app.login(&email).await;
    }
    for _ in 0..FAILURES_PER_EMAIL - 1 {
        let wrong = app
            .post("/v1/auth/login", None, json!({"email": email, "password": "nope nope"}))
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    app.login(&email).await;
}

#[tokio::test]
async fn bodies_past_their_limit_get_413_and_change_nothing() {
    let app = TestApp::up().await;
    let access = crate::support::token(&app.register(&unique_email()).await, "access_token");
    let huge_name = "n".repeat(3 * 1024 * 1024);
    let response = app.post("/v1/playlists", Some(&access), json!({"name": huge_name})).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    let mine: Value = app.get("/v1/me/playlists", Some(&access)).await.json().await.unwrap();
    assert_eq!(mine["total"], 0, "{mine}");

    // A declared length past the limit is refused before the body is read.
    let response = app
        .client
        .post(app.url("/v1/me/plays"))
        .bearer_auth(&access)
        .header("content-type", "application/json")
        .body(vec![b' '; 8 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
}

/// How many idle clients the test holds open.
const IDLE_CLIENTS: usize = 10_000;
/// What they may add to the server's resident memory, all together.
const IDLE_MEMORY_BUDGET: f64 = 64.0 * 1024.0 * 1024.0;

async fn gauge(client: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_leave_it_ready_with_bounded_memory() {
    kernel::sendfile::raise_open_file_limit();
    let dir = TempDir::new().unwrap();
    let server = UpProcess::start_with(
        dir.path(),
        &[("RUST_LOG", "warn"), ("TONEARM_SERVER__HEADER_TIMEOUT_SECS", "120")],
    )
    .await;
    let client = reqwest::Client::new();
    let addr = server.url.trim_start_matches("http://").to_owned();
    // The baseline of a server that has started everything and served a sign-up.
    let app = TestApp::attach(&server.url, dir.path());
    app.register(&unique_email()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = gauge(&client, &server.url, "process_resident_memory_bytes").await;

    // In batches the accept queue holds, each accepted before the next connects.
    let mut idle = Vec::with_capacity(IDLE_CLIENTS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for _ in 0..IDLE_CLIENTS / 500 {
        let batch = join_all((0..500).map(|_| TcpStream::connect(addr.as_str()))).await;
        idle.extend(batch.into_iter().map(|stream| stream.expect("the server accepts")));
        loop {
            let open = gauge(&client, &server.url, "http_connections_open").await;
            if open >= idle.len() as f64 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "the server holds {open} connections");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let after = gauge(&client, &server.url, "process_resident_memory_bytes").await;
    let grown = after - before;
    println!(
        "{IDLE_CLIENTS} idle connections: resident memory {:.1} MiB -> {:.1} MiB ({:.2} KiB each)",
        before / 1048576.0,
        after / 1048576.0,
        grown / 1024.0 / IDLE_CLIENTS as f64
    );
    assert!(grown < IDLE_MEMORY_BUDGET, "{IDLE_CLIENTS} idle clients grew it by {grown} bytes");

    let ready = client.get(format!("{}/readyz", server.url)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "ready with {IDLE_CLIENTS} idle clients");
    app.register(&unique_email()).await;

    drop(idle);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while gauge(&client, &server.url, "http_connections_open").await > 10.0 {
        assert!(tokio::time::Instant::now() < deadline, "closed connections are let go");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
