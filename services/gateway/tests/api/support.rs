use std::sync::Arc;

use async_trait::async_trait;
use axum::{
    Router,
    body::Body,
    extract::Path,
    http::{Method, Request, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use gateway::{GatewayConfig, GatewayParts, MediaUpstream, Route, Upstream};
use kernel::{
    background::Background,
    cache::MemoryCache,
    grant::{DirectoryError, SessionDirectory, SessionGrant},
};
use tower::ServiceExt as _;
use uuid::Uuid;

/// Knows no session and no signing key: a bearer token is refused before it matters.
struct NoSessions;

#[async_trait]
impl SessionDirectory for NoSessions {
    async fn grant(&self, _: Uuid) -> Result<Option<SessionGrant>, DirectoryError> {
        Ok(None)
    }

    async fn jwks(&self) -> Result<serde_json::Value, DirectoryError> {
        Ok(serde_json::json!({"keys": []}))
    }
}

/// The one track the fake catalog has.
pub const TRACK: &str = "0190c3b4-5a6e-7000-8000-000000000001";

/// A catalog that has one track, answering in this process.
fn catalog() -> Router {
    Router::new().route(
        "/v1/tracks/{id}",
        get(|Path(id): Path<String>| async move {
            if id == TRACK {
                (StatusCode::OK, "a track").into_response()
            } else {
                kernel::Problem::not_found("no such track").into_response()
            }
        }),
    )
}

fn media() -> Router {
    Router::new().route("/media/{*path}", get(|| async { "a segment" }))
}

/// The gateway in front of the fake catalog and media, publishing its request samples to
/// `bus` when given one.
pub fn gateway(
    config: GatewayConfig,
    bus: Option<Arc<dyn bus::EventBus>>,
) -> (Router, Option<Background>) {
    let api = utoipa::openapi::OpenApiBuilder::new().build();
    gateway::router(GatewayParts {
        internal_key: None,
        config,
        directory: Arc::new(NoSessions),
        cache: Arc::new(MemoryCache::new("test", 1 << 20)),
        routes: vec![Route { upstream: Upstream::Local(catalog()), api: api.clone() }],
        api,
        probes: Vec::new(),
        route_body_limits: Vec::new(),
        media: Some(MediaUpstream::Local(kernel::http::HotService::new(media()))),
        request_events: bus,
    })
}

pub async fn call(router: &Router, method: Method, path: &str, token: Option<&str>) -> Response {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
}
