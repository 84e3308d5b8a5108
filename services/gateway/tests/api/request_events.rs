//! Answered API requests reach the bus as `api.request` samples named by route template;
//! media, operations and docs requests do not.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{Method, Request, StatusCode},
};
use bus::{
    BusConfig, EventBus, Position,
    events::{ApiRequest, RequestSample},
};
use gateway::GatewayConfig;
use tempfile::TempDir;
use tower::ServiceExt as _;

use crate::support::{TRACK, call, gateway};

async fn embedded_bus(dir: &TempDir) -> Arc<dyn EventBus> {
    bus::connect(&BusConfig::default(), dir.path()).await.unwrap()
}

/// Every sample published so far, in order.
async fn published(bus: &Arc<dyn EventBus>, wait: Duration) -> Vec<RequestSample> {
    let Ok(mut reader) = bus.read("api.request", Position::Beginning).await else {
        return Vec::new();
    };
    let mut samples = Vec::new();
    for record in reader.poll(1_000, wait).await.unwrap() {
        let event: ApiRequest = record.envelope().unwrap().decode().unwrap();
        assert_eq!(record.key, event.instance, "events are keyed by the gateway instance");
        samples.extend(event.requests);
    }
    samples
}

#[tokio::test]
async fn answered_api_requests_are_published_by_route_template() {
    let dir = TempDir::new().unwrap();
    let bus = embedded_bus(&dir).await;
    let (router, flusher) = gateway(GatewayConfig::default(), Some(bus.clone()));
    let flusher = flusher.expect("a bus given, a flusher returned");

    let api = [
        (Method::GET, format!("/v1/tracks/{TRACK}"), None, StatusCode::OK),
        (
            Method::GET,
            "/v1/tracks/0190c3b4-0000-7000-8000-00000000dead".into(),
            None,
            StatusCode::NOT_FOUND,
        ),
        (Method::GET, format!("/v1/tracks/{TRACK}"), Some("not-a-jwt"), StatusCode::UNAUTHORIZED),
        (Method::DELETE, format!("/v1/tracks/{TRACK}"), None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/v1/nowhere/12345".into(), None, StatusCode::NOT_FOUND),
    ];
    for (method, path, token, status) in &api {
        let response = call(&router, method.clone(), path, *token).await;
        assert_eq!(response.status(), *status, "{method} {path}");
    }
    for path in [
        "/media/abc/segment-1.m4s",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/openapi.json",
        "/docs/",
    ] {
        let response = call(&router, Method::GET, path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/media/abc/segment-2.m4s")
        .header("origin", "https://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(preflight).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "CORS answers preflights");
    // Stopping publishes what the interval had not yet sent.
    flusher.stop().await;

    let samples = published(&bus, Duration::from_secs(5)).await;
    let seen: Vec<(&str, &str, u16)> =
        samples.iter().map(|s| (s.route.as_str(), s.method.as_str(), s.status)).collect();
    assert_eq!(
        seen,
        [
            ("/v1/tracks/{id}", "GET", 200),
            ("/v1/tracks/{id}", "GET", 404),
            ("/v1/tracks/{id}", "GET", 401),
            ("/v1/tracks/{id}", "DELETE", 405),
            ("unmatched", "GET", 404),
        ],
        "media, operations, docs and preflight requests are not API traffic"
    );
    assert!(samples.iter().all(|s| s.duration_us > 0), "{samples:?}");
    let now = chrono::Utc::now();
    assert!(samples.iter().all(|s| s.at <= now && now - s.at < chrono::TimeDelta::minutes(1)));
}

#[tokio::test]
async fn samples_go_out_every_interval_without_waiting_for_shutdown() {
    let dir = TempDir::new().unwrap();
    let bus = embedded_bus(&dir).await;
    let config = GatewayConfig { request_events_flush_ms: 50, ..GatewayConfig::default() };
    let (router, _flusher) = gateway(config, Some(bus.clone()));

    call(&router, Method::GET, &format!("/v1/tracks/{TRACK}"), None).await;
    let mut samples = Vec::new();
    for _ in 0..50 {
        samples = published(&bus, Duration::from_millis(100)).await;
        if !samples.is_empty() {
            break;
        }
        // The topic does not exist before the first event, and then reading fails at once.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert_eq!(samples[0].route, "/v1/tracks/{id}");
}

#[tokio::test]
async fn without_a_bus_nothing_is_recorded() {
    let (router, flusher) = gateway(GatewayConfig::default(), None);
    assert!(flusher.is_none());
    let response = call(&router, Method::GET, &format!("/v1/tracks/{TRACK}"), None).await;
    assert_eq!(response.status(), StatusCode::OK);
}
