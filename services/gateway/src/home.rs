//! `GET /v1/home`: a player's first screen in one request, gathered from the services in
//! parallel (profile, playlists, recently played, recommendations). Each part has its own
//! deadline; a part that is slow or fails comes back empty with its name in `degraded`, so
//! the page never fails whole because one service does.

use std::time::Duration;

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode},
};
use kernel::{Problem, caller::Caller, http::Json};
use serde::Serialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// How many items each list part holds.
const PART_LIMIT: u32 = 20;

/// The page's parts, as `degraded` names them.
const PARTS: [&str; 4] = ["profile", "playlists", "recently_played", "recommendations"];

#[derive(Clone)]
struct Parts {
    /// The services' routes, behind no admission (the page's request paid once).
    services: Router,
    deadline: Duration,
}

#[derive(OpenApi)]
#[openapi(tags((name = "home", description = "A player's first screen in one request")))]
struct HomeApi;

/// The route and its OpenAPI description; `services` answers the parts.
pub fn router(services: Router, deadline: Duration) -> (Router, utoipa::openapi::OpenApi) {
    // Each part's counter starts at 0, so dashboards show a line before the first failure.
    for part in PARTS {
        metrics::counter!("gateway_home_degraded_total", "part" => part).increment(0);
    }
    let (router, api) = routes().split_for_parts();
    (router.with_state(Parts { services, deadline }), api)
}

/// The OpenAPI description alone.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

fn routes() -> OpenApiRouter<Parts> {
    OpenApiRouter::with_openapi(HomeApi::openapi()).routes(routes!(home))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HomeView {
    /// As `GET /v1/me` answers; `null` when degraded.
    #[schema(value_type = Object)]
    profile: Value,
    /// As `GET /v1/me/playlists` answers (the first 20).
    #[schema(value_type = Object)]
    playlists: Value,
    /// As `GET /v1/me/history` answers (the first 20).
    #[schema(value_type = Object)]
    recently_played: Value,
    /// As `GET /v1/me/recommendations` answers (the first 20).
    #[schema(value_type = Object)]
    recommendations: Value,
    /// The parts that were slow or failed, and so are empty.
    degraded: Vec<String>,
}

/// The caller's home: profile, playlists, recently played and recommendations, gathered
/// in parallel. A part that fails or misses its deadline is empty and named in
/// `degraded`; the page itself does not fail for it.
#[utoipa::path(get, path = "/v1/home", tag = "home", security(("bearer" = [])),
    responses((status = 200, body = HomeView), (status = 401, body = Problem)))]
async fn home(State(parts): State<Parts>, _caller: Caller, request: Request) -> Json<HomeView> {
    let identity = identity(request.headers());
    let get = |path: String| part(&parts, &identity, path);
    let (profile, playlists, recently_played, recommendations) = tokio::join!(
        get("/v1/me".to_owned()),
        get(format!("/v1/me/playlists?limit={PART_LIMIT}")),
        get(format!("/v1/me/history?limit={PART_LIMIT}")),
        get(format!("/v1/me/recommendations?limit={PART_LIMIT}")),
    );
    let mut degraded = Vec::new();
    let mut settle = |name: &str, answer: Option<Value>, empty: Value| {
        answer.unwrap_or_else(|| {
            metrics::counter!("gateway_home_degraded_total", "part" => name.to_owned())
                .increment(1);
            degraded.push(name.to_owned());
            empty
        })
    };
    let empty_page = || json!({"items": [], "total": 0, "limit": PART_LIMIT, "offset": 0});
    let view = HomeView {
        profile: settle("profile", profile, Value::Null),
        playlists: settle("playlists", playlists, empty_page()),
        recently_played: settle("recently_played", recently_played, empty_page()),
        recommendations: settle("recommendations", recommendations, empty_page()),
        degraded,
    };
    if !view.degraded.is_empty() {
        tracing::warn!(degraded = ?view.degraded, "home answered in part");
    }
    Json(view)
}

/// The headers the admission set (who is calling, from where, with its proof, which
/// request), for the parts' requests.
fn identity(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    kernel::caller::IDENTITY_HEADERS
        .into_iter()
        .chain([kernel::internal::PROOF])
        .map(HeaderName::from_static)
        .chain([kernel::http::REQUEST_ID])
        .filter_map(|name| {
            let value = headers.get(&name)?.clone();
            Some((name, value))
        })
        .collect()
}

/// One part: its JSON when the service answers 200 within the deadline.
async fn part(
    parts: &Parts,
    identity: &[(HeaderName, HeaderValue)],
    path: String,
) -> Option<Value> {
    let mut request = Request::builder().method(Method::GET).uri(&path);
    for (name, value) in identity {
        request = request.header(name, value.clone());
    }
    let request = request.body(Body::empty()).ok()?;
    let answered = tokio::time::timeout(parts.deadline, async {
        let response = parts.services.clone().oneshot(request).await.ok()?;
        if response.status() != StatusCode::OK {
            tracing::warn!(%path, status = %response.status(), "a home part failed");
            return None;
        }
        let body = axum::body::to_bytes(response.into_body(), 4 << 20).await.ok()?;
        serde_json::from_slice::<Value>(&body).ok()
    })
    .await;
    match answered {
        Ok(value) => value,
        Err(_) => {
            tracing::warn!(%path, "a home part missed its deadline");
            None
        }
    }
}
