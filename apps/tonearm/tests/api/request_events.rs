//! The gateway publishes the API requests it answers as `api.request` samples, which the
//! analytics service reads for request counts, errors and latency by route.

use std::{path::Path, time::Duration};

use bus::{
    Position,
    events::{ApiRequest, RequestSample},
};
use reqwest::StatusCode;
use tempfile::TempDir;
use uuid::Uuid;

use crate::support::{TestApp, assert_problem, test_settings, token, unique_email};

/// Every sample on the app's event log, in order.
async fn published(data_dir: &Path) -> Vec<RequestSample> {
    let bus = bus::connect_reader(&Default::default(), data_dir).await.unwrap();
    let mut reader = bus.read("api.request", Position::Beginning).await.unwrap();
    let mut samples = Vec::new();
    for record in reader.poll(1_000, Duration::from_secs(2)).await.unwrap() {
        let event: ApiRequest = record.envelope().unwrap().decode().unwrap();
        samples.extend(event.requests);
    }
    samples
}

#[tokio::test]
async fn answered_api_requests_are_published_by_route_template_and_media_is_not() {
    let dir = TempDir::new().unwrap();
    let app = TestApp::up_with(test_settings(dir.path()), None).await;
    let access = token(&app.register(&unique_email()).await, "access_token");
    assert_eq!(app.get("/v1/me", Some(&access)).await.status(), StatusCode::OK);
    assert_problem(app.get("/v1/me", None).await, StatusCode::UNAUTHORIZED).await;
    let missing = Uuid::now_v7();
    let response = app.get(&format!("/v1/tracks/{missing}"), Some(&access)).await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let segment = format!("/media/{missing}/128k/seg001.m4s?exp=1&kid=k&sig=x");
    for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/docs", &segment] {
        app.get(path, None).await;
    }
    // Stopping the app publishes what the last interval gathered.
    app.stop().await;

    let samples = published(dir.path()).await;
    let seen: Vec<(&str, &str, u16)> =
        samples.iter().map(|s| (s.route.as_str(), s.method.as_str(), s.status)).collect();
    assert_eq!(
        seen,
        [
            ("/v1/auth/register", "POST", 201),
            ("/v1/me", "GET", 200),
            ("/v1/me", "GET", 401),
            ("/v1/tracks/{id}", "GET", 404),
        ],
        "route templates, never raw paths; no media, operations or docs requests"
    );
    assert!(samples.iter().all(|s| s.duration_us > 0), "{samples:?}");
}
