//! The web player as the gateway serves it: its files at `/`, its page for any path that
//! names no file, the API's paths left to the API, and a clear page when it is not built.

use reqwest::{StatusCode, header};

use crate::support::{TestApp, test_settings};

/// A built player: a page and one hashed asset.
fn built_player(dir: &std::path::Path) -> std::path::PathBuf {
    let dist = dir.join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), "<!doctype html><title>Tonearm</title>").unwrap();
    std::fs::write(dist.join("assets/index-abc123.js"), "console.log('hi')").unwrap();
    dist
}

#[tokio::test]
async fn the_player_owns_every_path_the_api_does_not() {
    let dir = std::sync::Arc::new(tempfile::TempDir::new().unwrap());
    let mut settings = test_settings(dir.path());
    settings.gateway.web_dir = Some(built_player(dir.path()));
    let app = TestApp::up_with(settings, Some(dir)).await;

    for path in ["/", "/search", "/album/some/deep/link"] {
        let page = app.get(path, None).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache", "{path}");
        let policy = page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"));
        assert!(page.text().await.unwrap().contains("<title>Tonearm</title>"), "{path}");
    }
    let asset = app.get("/assets/index-abc123.js", None).await;
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(asset.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");

    // The API's own paths never fall through to the page.
    let unknown = app.get("/v1/no-such-endpoint", None).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.headers()[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    assert_eq!(app.get("/.well-known/jwks.json", None).await.status(), StatusCode::OK);
    let docs = app.get("/v1/openapi.json", None).await;
    assert_eq!(docs.headers()[header::CONTENT_TYPE], "application/json");
    // Nothing but reading: a POST to a page path is refused.
    let posted = app.client.post(app.url("/search")).send().await.unwrap();
    assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn without_a_built_player_the_page_says_how_to_build_it() {
    let dir = std::sync::Arc::new(tempfile::TempDir::new().unwrap());
    let mut settings = test_settings(dir.path());
    settings.gateway.web_dir = Some(dir.path().join("not-built"));
    let app = TestApp::up_with(settings, Some(dir)).await;
    let page = app.get("/", None).await;
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text().await.unwrap().contains("./scripts/up"));
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK, "the API runs");
}
