use std::{sync::Arc, time::Duration};

use kernel::engine::EngineUrl;
use reqwest::StatusCode;
use serde_json::json;
use tempfile::TempDir;

use crate::support::{OwnRedis, TestApp, assert_problem, test_settings, token, unique_email};

#[tokio::test]
async fn a_redis_that_stops_degrades_to_the_database_and_logs_nobody_out() {
    let redis = OwnRedis::start().await;
    let port = redis.port;
    let dir = Arc::new(TempDir::new().unwrap());
    let mut settings = test_settings(dir.path());
    settings.auth.cache_url = Some(EngineUrl::new(redis.url()));
    settings.gateway.cache_url = Some(EngineUrl::new(redis.url()));
    let app = TestApp::up_with(settings, Some(dir)).await;

    let email = unique_email();
    let registered = app.register(&email).await;
    let access = token(&registered, "access_token");
    let refresh = token(&registered, "refresh_token");
    assert_eq!(app.get("/v1/me", Some(&access)).await.status(), StatusCode::OK);

    redis.stop();

    let started = std::time::Instant::now();
    let me = app.get("/v1/me", Some(&access)).await;
    assert_eq!(me.status(), StatusCode::OK, "the session is confirmed in the database");
    assert!(
        me.headers().contains_key("ratelimit-remaining"),
        "limits still apply, counted locally"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "a dead cache costs little");

    let login = app.login(&email).await;
    let second_access = token(&login, "access_token");
    let refreshed = app.post("/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(refreshed.status(), StatusCode::OK);

    let logout = app
        .post(
            "/v1/auth/logout",
            Some(&second_access),
            json!({"refresh_token": token(&login, "refresh_token")}),
        )
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get("/v1/me", Some(&second_access)).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.get("/v1/me", Some(&access)).await.status(), StatusCode::OK);

    // Redis comes back: it is used again, and nothing was lost meanwhile.
    let _redis = OwnRedis::start_on(port).await;
    let mut recovered = false;
    for _ in 0..40 {
        if app.get("/v1/me", Some(&access)).await.status() == StatusCode::OK
            && app.get("/readyz", None).await.status() == StatusCode::OK
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "the app reconnects to Redis");
}

#[tokio::test]
async fn readiness_reports_a_dead_cache() {
    let redis = OwnRedis::start().await;
    let dir = Arc::new(TempDir::new().unwrap());
    let mut settings = test_settings(dir.path());
    settings.auth.cache_url = Some(EngineUrl::new(redis.url()));
    let app = TestApp::up_with(settings, Some(dir)).await;
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    redis.stop();
    let problem =
        assert_problem(app.get("/readyz", None).await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(problem["detail"].as_str().unwrap().contains("cache"), "{problem}");
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK, "alive all the same");
}

#[tokio::test]
async fn an_unreachable_or_unknown_engine_stops_startup_with_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let mut settings = test_settings(dir.path());
    settings.auth.cache_url = Some(EngineUrl::new("redis://127.0.0.1:1"));
    let error = tonearm::App::up(&settings).await.err().expect("no silent fallback to memory");
    assert!(format!("{error:#}").contains("redis"), "{error:#}");

    let mut settings = test_settings(dir.path());
    settings.auth.database_url = Some(EngineUrl::new("mysql://localhost/tonearm"));
    let error = tonearm::App::up(&settings).await.err().expect("unsupported scheme");
    assert!(format!("{error:#}").contains("not supported"), "{error:#}");
}
