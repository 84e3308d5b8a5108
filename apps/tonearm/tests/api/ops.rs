use std::{process::Command, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{TestApp, UpProcess, succeeded, token, tonearm_cli, unique_email};

/// Checks one line of the Prometheus text format: `# HELP|TYPE …` or
/// `name{label="value",…} number`.
fn valid_prometheus_line(line: &str) -> bool {
    if line.is_empty() {
        return true;
    }
    if let Some(comment) = line.strip_prefix("# ") {
        return comment.starts_with("HELP ") || comment.starts_with("TYPE ");
    }
    let Some((series, value)) = line.rsplit_once(' ') else {
        return false;
    };
    let value_ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, Some(rest)),
        None => (series, None),
    };
    let name_ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    let labels_ok = labels.is_none_or(|labels| {
        labels.ends_with('}')
            && labels.trim_end_matches('}').split("\",").all(|pair| {
                pair.split_once("=\"").is_some_and(|(key, _)| {
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            })
    });
    value_ok && name_ok && labels_ok
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_by_route_and_status() {
    let app = TestApp::up().await;
    let access = token(&app.register(&unique_email()).await, "access_token");
    assert_eq!(app.get("/v1/me", Some(&access)).await.status(), StatusCode::OK);
    assert_eq!(app.get("/v1/me", None).await.status(), StatusCode::UNAUTHORIZED);

    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for line in text.lines() {
        assert!(valid_prometheus_line(line), "not Prometheus text: {line:?}");
    }
    assert!(text.contains("# TYPE http_requests_total counter"), "{text}");
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"), "{text}");
    for wanted in [
        r#"http_requests_total{method="GET",route="/v1/me",status="200"}"#,
        r#"http_requests_total{method="GET",route="/v1/me",status="401"}"#,
        r#"http_request_duration_seconds_bucket{method="POST",route="/v1/auth/register",status="201",le="+Inf"}"#,
    ] {
        assert!(text.contains(wanted), "missing {wanted} in\n{text}");
    }
    // What the process holds: its resident memory, and each bounded cache's fill.
    let gauge = |name: &str| {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(gauge("process_resident_memory_bytes") > 1e6);
    assert!(gauge(r#"memory_cache_bytes{cache="shared"}"#) > 0.0, "the session just cached");
    assert!(gauge(r#"memory_cache_entries{cache="shared"}"#) >= 1.0);
    gauge(r#"memory_cache_bytes{cache="streaming.segments"}"#);
}

#[test]
fn the_prometheus_line_check_can_fail() {
    assert!(valid_prometheus_line(r#"a_total{route="/v1/me",status="200"} 3"#));
    assert!(!valid_prometheus_line("a_total three"));
    assert!(!valid_prometheus_line("1abc 3"));
    assert!(!valid_prometheus_line("// comment"));
}

#[tokio::test]
async fn health_readiness_request_ids_and_docs() {
    let app = TestApp::up().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.headers().contains_key("x-request-id"));

    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    // The test app has no voice models: reported, but optional under `up`.
    assert_eq!(ready["status"], "degraded", "{ready}");
    for (name, status) in ready["checks"].as_object().unwrap() {
        if name != "ai.models" {
            assert_eq!(status, "ok", "{name}");
        }
    }
    assert_eq!(ready["checks"]["auth.database"], "ok");

    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");

    let api: Value = app.get("/v1/openapi.json", None).await.json().await.unwrap();
    let paths = api["paths"].as_object().unwrap();
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/me",
        "/v1/me/password",
        "/v1/me/sessions",
        "/v1/me/sessions/{id}",
        "/.well-known/jwks.json",
        "/v1/tracks",
        "/v1/tracks/{id}",
        "/v1/albums",
        "/v1/albums/{id}",
        "/v1/albums/{id}/artwork",
        "/v1/artists",
        "/v1/artists/{id}",
        "/v1/search",
        "/v1/tracks/{id}/stream",
        "/v1/tracks/{id}/dash",
        "/media/{track_id}/{path}",
        "/v1/playlists",
        "/v1/me/playlists",
        "/v1/playlists/{id}",
        "/v1/playlists/{id}/followers",
        "/v1/playlists/{id}/tracks",
        "/v1/me/likes",
        "/v1/me/likes/{track_id}",
        "/v1/me/likes/contains",
        "/v1/me/plays",
        "/v1/me/history",
        "/v1/analytics/top-tracks",
        "/v1/analytics/plays",
        "/v1/analytics/users/active",
        "/v1/analytics/api",
        "/v1/ai/transcribe",
        "/v1/ai/voice-search",
        "/v1/ai/speak",
        "/v1/me/recommendations",
        "/v1/tracks/{id}/similar",
        "/v1/home",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    for method in ["get", "patch", "delete"] {
        assert!(paths["/v1/me"].get(method).is_some(), "/v1/me {method}");
    }
    for method in ["get", "head"] {
        assert!(paths["/media/{track_id}/{path}"].get(method).is_some(), "media {method}");
    }
    assert_eq!(api["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    // The docs viewer comes from the binary, whole: it loads offline and behind a strict
    // Content-Security-Policy.
    let docs = app.get("/docs", None).await;
    assert_eq!(docs.status(), StatusCode::OK);
    let policy = docs.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"));
    let page = docs.text().await.unwrap();
    assert!(page.contains("<html"), "{page}");
    let mut assets = 0;
    for reference in
        page.split(['"', '\'']).filter(|part| part.ends_with(".js") || part.ends_with(".css"))
    {
        assert!(!reference.contains("://"), "{reference} is not served from here");
        let asset = app.get(&format!("/docs/{}", reference.trim_start_matches("./")), None).await;
        assert_eq!(asset.status(), StatusCode::OK, "{reference}");
        assets += 1;
    }
    assert!(assets >= 2, "the page's scripts and styles: {page}");
    let initializer = app.get("/docs/swagger-initializer.js", None).await.text().await.unwrap();
    assert!(initializer.contains("/v1/openapi.json"), "{initializer}");

    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/me"))
        .header("origin", "https://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert!(preflight.headers().contains_key("access-control-allow-origin"));
}

#[test]
fn config_default_prints_the_documented_file() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_tonearm")).args(["config", "default"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("[auth]") && text.contains("free_per_minute = 100"), "{text}");
}

#[test]
fn migrate_prepares_the_database_without_serving() {
    let dir = TempDir::new().unwrap();
    succeeded(&tonearm_cli(&["migrate", "auth"], dir.path(), &[]));
    assert!(dir.path().join("auth.db").exists());
}

/// SIGTERM while a client is still sending its request: the request completes, then the
/// process exits cleanly.
#[tokio::test]
async fn sigterm_lets_a_slow_request_finish() {
    let dir = TempDir::new().unwrap();
    let server = UpProcess::start(dir.path()).await;
    let url = server.url.clone();

    let body = format!(
        r#"{{"email":"{}","password":"correct horse battery","display_name":"Slow"}}"#,
        unique_email()
    );
    let (first, rest) = body.split_at(10);
    let chunks = vec![first.to_owned(), rest.to_owned()];
    let slow_body = futures::stream::iter(chunks).then(|chunk| async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok::<_, std::io::Error>(chunk)
    });
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{url}/v1/auth/register"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(slow_body))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    server.terminate();

    let response = request.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(response.status(), StatusCode::CREATED);
    let status = server.wait().await;
    assert!(status.success(), "clean exit after draining: {status}");
}

use futures::StreamExt as _;

/// With an OTLP endpoint configured, request spans are exported and the events a request
/// causes carry its trace context.
#[tokio::test]
async fn traces_are_exported_over_otlp_and_follow_events() {
    use std::sync::{Arc, Mutex};

    let exported: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = exported.clone();
    let collector = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(format!("{} {}", request.method(), request.uri().path()));
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let dir = TempDir::new().unwrap();
    let server = UpProcess::start_with(
        dir.path(),
        &[("RUST_LOG", "warn,kernel=info"), ("TONEARM_TELEMETRY__OTLP_ENDPOINT", &endpoint)],
    )
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/auth/register", server.url))
        .json(&serde_json::json!({
            "email": unique_email(), "password": "correct horse battery", "display_name": "Traced"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    server.terminate();
    assert!(server.wait().await.success());

    let requests = exported.lock().unwrap().clone();
    assert!(requests.iter().any(|r| r == "POST /v1/traces"), "spans exported: {requests:?}");

    let tail = succeeded(&tonearm_cli(
        &["events", "tail", "user.registered", "--from-beginning"],
        dir.path(),
        &[],
    ));
    let envelope: Value = serde_json::from_str(tail.lines().next().unwrap()).unwrap();
    let traceparent = envelope["headers"]["traceparent"].as_str().unwrap_or_default();
    assert!(traceparent.starts_with("00-") && traceparent.len() == 55, "{envelope}");
}
