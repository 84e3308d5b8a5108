use std::sync::Arc;

use reqwest::StatusCode;
use tempfile::TempDir;

use crate::support::{
    TestApp, assert_problem, redis_settings, succeeded, token, tonearm_cli, unique_email,
};

fn remaining(response: &reqwest::Response) -> u64 {
    response.headers()["ratelimit-remaining"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_101st_request_in_a_minute_from_a_free_user_is_refused() {
    let app = TestApp::up().await;
    let ada = token(&app.register(&unique_email()).await, "access_token");
    let bob = token(&app.register(&unique_email()).await, "access_token");

    for sent in 1..=100_u64 {
        let response = app.get("/v1/me", Some(&ada)).await;
        assert_eq!(response.status(), StatusCode::OK, "request {sent}");
        assert_eq!(response.headers()["ratelimit-limit"], "100");
        assert_eq!(remaining(&response), 100 - sent);
        let reset: u64 = response.headers()["ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset));
    }
    let refused = app.get("/v1/me", Some(&ada)).await;
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS).await;

    let other = app.get("/v1/me", Some(&bob)).await;
    assert_eq!(other.status(), StatusCode::OK, "another user is unaffected");
}

#[tokio::test]
async fn anonymous_callers_are_limited_per_address() {
    let dir = Arc::new(TempDir::new().unwrap());
    let mut settings = crate::support::test_settings(dir.path());
    settings.gateway.rate_limits.anonymous_per_minute = 5;
    let app = TestApp::up_with(settings, Some(dir)).await;
    for _ in 0..5 {
        assert_eq!(app.get("/.well-known/jwks.json", None).await.status(), StatusCode::OK);
    }
    assert_problem(app.get("/.well-known/jwks.json", None).await, StatusCode::TOO_MANY_REQUESTS)
        .await;
}

#[tokio::test]
async fn two_gateways_on_one_redis_share_a_budget() {
    let dir = Arc::new(TempDir::new().unwrap());
    let first = TestApp::up_with(redis_settings(dir.path()), Some(dir.clone())).await;
    let second = TestApp::up_with(redis_settings(dir.path()), Some(dir)).await;
    let access = token(&first.register(&unique_email()).await, "access_token");

    for sent in 1..=100_u64 {
        let app = if sent % 2 == 0 { &first } else { &second };
        let response = app.get("/v1/me", Some(&access)).await;
        assert_eq!(response.status(), StatusCode::OK, "request {sent}");
        assert_eq!(remaining(&response), 100 - sent, "one budget across both gateways");
    }
    assert_problem(first.get("/v1/me", Some(&access)).await, StatusCode::TOO_MANY_REQUESTS).await;
    assert_problem(second.get("/v1/me", Some(&access)).await, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn set_tier_premium_raises_the_budget_without_signing_in_again() {
    let dir = Arc::new(TempDir::new().unwrap());
    let settings = redis_settings(dir.path());
    let app = TestApp::up_with(settings, Some(dir.clone())).await;
    let email = unique_email();
    let access = token(&app.register(&email).await, "access_token");
    for _ in 0..100 {
        assert_eq!(app.get("/v1/me", Some(&access)).await.status(), StatusCode::OK);
    }
    assert_eq!(app.get("/v1/me", Some(&access)).await.status(), StatusCode::TOO_MANY_REQUESTS);

    // The operator command, run as its own process against the same stores.
    let redis = crate::support::redis_url();
    let output = tonearm_cli(
        &["users", "set-tier", &email, "premium"],
        dir.path(),
        &[("TONEARM_AUTH__CACHE_URL", &redis)],
    );
    assert!(succeeded(&output).contains("tier premium"));

    let response = app.get("/v1/me", Some(&access)).await;
    assert_eq!(response.status(), StatusCode::OK, "the same token, now premium");
    assert_eq!(response.headers()["ratelimit-limit"], "1000");
    let me: serde_json::Value = response.json().await.unwrap();
    assert_eq!(me["tier"], "premium");

    let bad_tier = tonearm_cli(&["users", "set-tier", &email, "gold"], dir.path(), &[]);
    assert!(!bad_tier.status.success());
}
