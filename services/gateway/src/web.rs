//! The web player, served at `/` from its built files (`web/dist`): every path the API
//! does not own is the player's, and a path that names no file gets its `index.html`, so
//! that a reload of any page of the player works. Hashed assets are cached for good; the
//! page itself is revalidated, so a new build is picked up at once.

use std::{
    convert::Infallible,
    path::{Path, PathBuf},
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{HeaderValue, Method, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use futures::future::BoxFuture;
use tower::{Service, ServiceExt as _};
use tower_http::services::{ServeDir, ServeFile};

/// Paths that belong to the API (`/v1`, and whatever else its document names), the docs,
/// operations and services' internal routes (which the gateway refuses), never to the
/// player.
const RESERVED: [&str; 7] =
    ["/v1", "/media/", "/docs", "/healthz", "/readyz", "/metrics", "/internal"];

/// What the player may load: its own files, media and API calls to this origin, blob
/// URLs for artwork and for the HLS player's media source.
const PLAYER_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; \
     worker-src 'self' blob:; font-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'",
);

/// Serves `api` for the API's paths (those under the first segment of any path of
/// `documented`, e.g. `/v1`, and the reserved ones) and the player in `dir` for the rest.
pub fn mount<'a>(api: Router, documented: impl Iterator<Item = &'a str>, dir: &Path) -> Router {
    let mut prefixes: Vec<String> = RESERVED.iter().map(|p| (*p).to_owned()).collect();
    for path in documented {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        let prefix = format!("/{first}");
        if !first.is_empty() && !first.starts_with('{') && !prefixes.contains(&prefix) {
            prefixes.push(prefix);
        }
    }
    let player = Player::new(dir);
    Router::new().fallback_service(WebOrApi { api, player, prefixes: Arc::new(prefixes) })
}

#[derive(Clone)]
struct Player {
    files: Option<ServeDir<ServeFile>>,
    dir: PathBuf,
}

impl Player {
    fn new(dir: &Path) -> Self {
        let index = dir.join("index.html");
        let files = index.is_file().then(|| ServeDir::new(dir).fallback(ServeFile::new(index)));
        if files.is_none() {
            tracing::warn!(
                dir = %dir.display(),
                "the web player is not built; `./scripts/up` builds it (or `npm --prefix web ci && npm --prefix web run build`)"
            );
        }
        Self { files, dir: dir.to_owned() }
    }

    async fn serve(self, request: Request) -> Response {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let Some(files) = self.files else {
            return (StatusCode::SERVICE_UNAVAILABLE, Html(not_built(&self.dir))).into_response();
        };
        let immutable = request.uri().path().starts_with("/assets/");
        let mut response = match files.oneshot(request).await {
            Ok(response) => response.map(Body::new),
            Err(never) => match never {},
        };
        let headers = response.headers_mut();
        let cache = if immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(header::CONTENT_SECURITY_POLICY, PLAYER_POLICY);
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        response
    }
}

fn not_built(dir: &Path) -> String {
    format!(
        "<!doctype html><title>Tonearm</title><h1>Tonearm is running</h1>\
         <p>The web player is not built in <code>{}</code>. Run <code>./scripts/up</code>, \
         which builds it, or <code>npm --prefix web ci &amp;&amp; npm --prefix web run build</code>.</p>\
         <p>The API is at <a href=\"/docs\">/docs</a>.</p>",
        dir.display().to_string().replace('<', "&lt;")
    )
}

#[derive(Clone)]
struct WebOrApi {
    api: Router,
    player: Player,
    prefixes: Arc<Vec<String>>,
}

impl Service<Request> for WebOrApi {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let path = request.uri().path();
        let owned = |prefix: &String| {
            path.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/')
            })
        };
        if self.prefixes.iter().any(owned) {
            let api = self.api.clone();
            Box::pin(async move { api.oneshot(request).await })
        } else {
            let player = self.player.clone();
            Box::pin(async move { Ok(player.serve(request).await) })
        }
    }
}
