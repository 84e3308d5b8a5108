//! The gateway in front of replicated services: requests taken in turn, a stopped replica
//! passed over (the requests that met it retried on the other), and with every replica
//! down a quick 503 with `Retry-After` from the open breakers.

use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;
use tonearm::ServiceName;

use crate::support::{TestApp, assert_problem, test_settings, token, unique_email};

/// The value of a counter in Prometheus text, summed over its labels.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_stopped_replica_loses_no_repeatable_request_and_a_dead_service_fails_fast() {
    let dirs: Vec<TempDir> = (0..4).map(|_| TempDir::new().unwrap()).collect();
    let auth = TestApp::serve(test_settings(dirs[0].path()), ServiceName::Auth).await;
    let first = TestApp::serve(test_settings(dirs[1].path()), ServiceName::Catalog).await;
    let second = TestApp::serve(test_settings(dirs[2].path()), ServiceName::Catalog).await;
    let mut settings = test_settings(dirs[3].path());
    let upstreams = &mut settings.gateway.upstreams;
    upstreams.insert("auth".into(), format!("http://{}", auth.addr));
    upstreams.insert("catalog".into(), format!("http://{},http://{}", first.addr, second.addr));
    settings.gateway.upstream_breaker_failures = 2;
    settings.gateway.upstream_breaker_open_secs = 60;
    settings.gateway.rate_limits.free_per_minute = 10_000;
    let gateway = TestApp::serve(settings, ServiceName::Gateway).await;
    let listener = token(&gateway.register(&unique_email()).await, "access_token");

    for _ in 0..4 {
        assert_eq!(gateway.get("/v1/tracks", Some(&listener)).await.status(), StatusCode::OK);
    }
    first.stop().await;
    // Every request still succeeds: those sent to the stopped replica are sent again to
    // the other, and once its breaker opens it is not tried at all.
    for _ in 0..10 {
        assert_eq!(gateway.get("/v1/tracks", Some(&listener)).await.status(), StatusCode::OK);
    }
    let metrics = gateway.get("/metrics", None).await.text().await.unwrap();
    assert!(counter(&metrics, "gateway_upstream_retries_total") >= 1.0, "{metrics}");
    assert_eq!(counter(&metrics, "gateway_breaker_opened_total"), 1.0, "{metrics}");

    // Both down: a 503, then (the breakers open) 503s that say when to come back.
    second.stop().await;
    assert_problem(
        gateway.get("/v1/tracks", Some(&listener)).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let refused = gateway.get("/v1/tracks", Some(&listener)).await;
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = assert_problem(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["detail"], "the catalog service is unavailable");
}

#[tokio::test]
async fn a_service_deployed_alone_will_not_start_without_the_shared_secret() {
    let dir = TempDir::new().unwrap();
    let mut settings = test_settings(dir.path());
    settings.internal.identity_secret = None;
    let refused = tonearm::App::serve(&settings, ServiceName::Catalog).await;
    let error = refused.err().expect("refused to start").to_string();
    assert!(error.contains("internal.identity_secret"), "{error}");
}
