//! The deployed shape: `serve auth` on PostgreSQL and Redis, `serve gateway` in front.

use kernel::engine::EngineUrl;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tonearm::ServiceName;

use crate::support::{
    TestApp, assert_problem, fresh_postgres_url, redis_settings, token, unique_email,
};

#[tokio::test]
async fn the_gateway_fronts_a_remote_auth_service_on_postgres_and_redis() {
    let dir = TempDir::new().unwrap();
    let mut auth_settings = redis_settings(dir.path());
    auth_settings.auth.database_url = Some(EngineUrl::new(fresh_postgres_url()));
    let auth = TestApp::serve(auth_settings, ServiceName::Auth).await;

    let mut gateway_settings = redis_settings(dir.path());
    gateway_settings.gateway.upstreams.insert("auth".into(), format!("http://{}", auth.addr));
    let gateway = TestApp::serve(gateway_settings, ServiceName::Gateway).await;

    let email = unique_email();
    let registered = gateway.register(&email).await;
    let signed_in = gateway.login(&email).await;
    let access = token(&signed_in, "access_token");
    let me: Value = gateway.get("/v1/me", Some(&access)).await.json().await.unwrap();
    assert_eq!(me["email"], email);
    assert_eq!(me["id"], registered["user"]["id"]);

    let refreshed = gateway
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": token(&signed_in, "refresh_token")}),
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let refreshed: Value = refreshed.json().await.unwrap();
    let access = token(&refreshed, "access_token");

    let logout = gateway
        .post(
            "/v1/auth/logout",
            Some(&access),
            json!({"refresh_token": token(&refreshed, "refresh_token")}),
        )
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_problem(gateway.get("/v1/me", Some(&access)).await, StatusCode::UNAUTHORIZED).await;

    // Requests that never reach a service are still answered by the gateway itself.
    assert_problem(gateway.get("/internal/v1/sessions/x", None).await, StatusCode::NOT_FOUND).await;
    let ready: Value = gateway.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["checks"]["upstream.auth"], "ok");

    // The auth service going away is a 503 problem, not a hang or a 500.
    auth.stop().await;
    let down = gateway.post("/v1/auth/login", None, json!({"email": email, "password": "x"})).await;
    assert_problem(down, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn serve_gateway_without_an_auth_upstream_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let settings = crate::support::test_settings(dir.path());
    let error = tonearm::App::serve(&settings, ServiceName::Gateway).await.err().unwrap();
    assert!(format!("{error:#}").contains("gateway.upstreams.auth"), "{error:#}");
}
