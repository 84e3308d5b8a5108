//! The analytics service's HTTP edge.

// utoipa's expansion of query extractors trips this lint on the handlers' own types.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::{Router, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use kernel::{
    Problem,
    api::{Page, PageQuery, TrackSummary, millis},
    caller::Caller,
    extract::from_json_value,
    http::{Json, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    AnalyticsService,
    domain::{Interval, Period, PlayReport, Window},
    service::{AnalyticsError, PlayedTrack, RankedTrack},
};

type AppState = Arc<AnalyticsService>;
type ApiResult<T> = Result<T, Problem>;

#[derive(OpenApi)]
#[openapi(tags((name = "analytics", description = "Plays, listening history and charts")))]
struct AnalyticsApi;

/// The public routes and their OpenAPI description.
pub fn router(service: Arc<AnalyticsService>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, api) = routes().split_for_parts();
    (router.with_state(service), api)
}

/// The OpenAPI description of the public routes, without a running service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(AnalyticsApi::openapi())
        .routes(routes!(report_plays))
        .routes(routes!(history))
        .routes(routes!(top_tracks))
        .routes(routes!(play_series))
        .routes(routes!(active_users))
        .routes(routes!(api_routes))
}

impl From<AnalyticsError> for Problem {
    fn from(error: AnalyticsError) -> Self {
        match &error {
            AnalyticsError::Invalid(_) | AnalyticsError::UnknownTracks(_) => {
                Problem::unprocessable(error.to_string())
            }
            AnalyticsError::AdminOnly => Problem::forbidden(error.to_string()),
            AnalyticsError::CatalogUnavailable(_) => {
                Problem::unavailable("the catalog is unavailable; try again shortly")
            }
            AnalyticsError::Store(store) if store.is_unavailable() => {
                Problem::unavailable("analytics are unavailable; try again shortly")
            }
            AnalyticsError::Warehouse(crate::warehouse::WarehouseError::Unavailable(_)) => {
                Problem::unavailable("analytics are unavailable; try again shortly")
            }
            AnalyticsError::Store(_) | AnalyticsError::Warehouse(_) => Problem::internal(&error),
        }
    }
}

/// One play as a client reports it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayBody {
    /// The client's id for this play (a UUID), which makes a retried report count once.
    id: Option<Uuid>,
    track_id: Uuid,
    /// How long it played, in milliseconds; at most the track's duration and 10 s.
    played_ms: u64,
    /// When it started; when absent, `played_ms` before the report arrived. Offline plays
    /// may be reported up to 30 days later.
    #[schema(value_type = Option<String>, format = DateTime)]
    started_at: Option<DateTime<Utc>>,
    /// Where it was played from, e.g. `playlist:<id>`, at most 200 characters.
    #[schema(max_length = 200)]
    context: Option<String>,
}

impl From<PlayBody> for PlayReport {
    fn from(body: PlayBody) -> Self {
        Self {
            id: body.id,
            track_id: body.track_id,
            played_ms: body.played_ms,
            started_at: body.started_at,
            context: body.context,
        }
    }
}

/// One play, or an array of them (offline plays sent later). Documents the body; the
/// handler tells the two apart by the JSON value, so that an error names the field.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PlaysBody {
    Many(Vec<PlayBody>),
    One(PlayBody),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlaysAccepted {
    /// Plays not reported before (a retried id is accepted again but not counted).
    accepted: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    track: TrackSummary,
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    played_at: DateTime<Utc>,
    played_ms: u64,
}

impl From<PlayedTrack> for HistoryItem {
    fn from(played: PlayedTrack) -> Self {
        Self { track: played.track, played_at: played.played_at, played_ms: played.played_ms }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopTrack {
    track: TrackSummary,
    plays: u64,
    /// Plays of at least 30 s (or half a shorter track).
    streams: u64,
    /// Distinct listeners.
    listeners: u64,
}

impl From<RankedTrack> for TopTrack {
    fn from(ranked: RankedTrack) -> Self {
        Self {
            track: ranked.track,
            plays: ranked.plays,
            streams: ranked.streams,
            listeners: ranked.listeners,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopQuery {
    /// `1h`, `24h` (default), `7d` or `30d`: whole clock hours, ending with the current one.
    #[param(value_type = Option<String>, pattern = "^(1h|24h|7d|30d)$")]
    window: Option<Window>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// `hour` (default) or `day`.
    #[param(value_type = Option<String>, pattern = "^(hour|day)$")]
    interval: Option<Interval>,
    /// RFC 3339; default: 23 hours before `to`. Buckets overlapping `[from, to]` count whole.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<DateTime<Utc>>,
    /// RFC 3339; default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActiveQuery {
    /// `day` (default), `week` (from Monday) or `month`.
    #[param(value_type = Option<String>, pattern = "^(day|week|month)$")]
    interval: Option<Period>,
    /// RFC 3339; default: 30 days, 12 weeks or 12 months of buckets before `to`.
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<DateTime<Utc>>,
    /// RFC 3339; default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApiQuery {
    /// `1h` (default) or `24h`.
    #[param(pattern = "^(1h|24h)$")]
    window: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlayPointView {
    /// The bucket's start.
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    t: DateTime<Utc>,
    plays: u64,
    streams: u64,
    listeners: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlaySeries {
    series: Vec<PlayPointView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivePointView {
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    t: DateTime<Utc>,
    active_users: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveSeries {
    series: Vec<ActivePointView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    method: String,
    /// The route's template, e.g. `/v1/tracks/{id}`.
    route: String,
    requests: u64,
    /// Answers with a 5xx status.
    errors: u64,
    p50_ms: f64,
    p95_ms: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiStats {
    routes: Vec<RouteView>,
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[allow(clippy::cast_precision_loss)] // microseconds far below 2^52
fn millis_of(us: u64) -> f64 {
    us as f64 / 1_000.0
}

/// Report plays: one, or an array (offline plays sent later).
#[utoipa::path(post, path = "/v1/me/plays", tag = "analytics", security(("bearer" = [])),
    request_body = PlaysBody,
    responses((status = 202, body = PlaysAccepted), (status = 400, body = Problem), (status = 422, body = Problem)))]
async fn report_plays(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<(StatusCode, Json<PlaysAccepted>)> {
    let reports: Vec<PlayReport> = if body.is_array() {
        let plays: Vec<PlayBody> = from_json_value(body)?;
        plays.into_iter().map(PlayReport::from).collect()
    } else {
        vec![from_json_value::<PlayBody>(body)?.into()]
    };
    let accepted = service.report_plays(&caller, &reports).await?;
    Ok((StatusCode::ACCEPTED, Json(PlaysAccepted { accepted })))
}

/// The caller's listening history, newest first.
#[utoipa::path(get, path = "/v1/me/history", tag = "analytics", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = Page<HistoryItem>)))]
async fn history(
    State(service): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<HistoryItem>>> {
    let (limit, offset) = page.resolve()?;
    let (plays, total) = service.history(&caller, limit, offset).await?;
    let items = plays.into_iter().map(HistoryItem::from).collect();
    Ok(Json(Page { items, total, limit, offset }))
}

/// The most played tracks over a window, most played first.
#[utoipa::path(get, path = "/v1/analytics/top-tracks", tag = "analytics", security(("bearer" = [])),
    params(TopQuery, PageQuery), responses((status = 200, body = Page<TopTrack>), (status = 400, body = Problem)))]
async fn top_tracks(
    State(service): State<AppState>,
    _caller: Caller,
    Query(query): Query<TopQuery>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<TopTrack>>> {
    let (limit, offset) = page.resolve()?;
    let window = query.window.unwrap_or(Window::Day);
    let (ranked, total) = service.top_tracks(window, limit, offset).await?;
    let items = ranked.into_iter().map(TopTrack::from).collect();
    Ok(Json(Page { items, total, limit, offset }))
}

/// Plays, streams and listeners per hour or day.
#[utoipa::path(get, path = "/v1/analytics/plays", tag = "analytics", security(("bearer" = [])),
    params(SeriesQuery), responses((status = 200, body = PlaySeries), (status = 422, body = Problem)))]
async fn play_series(
    State(service): State<AppState>,
    _caller: Caller,
    Query(query): Query<SeriesQuery>,
) -> ApiResult<Json<PlaySeries>> {
    let interval = query.interval.unwrap_or(Interval::Hour);
    let points = service.play_series(interval, query.from, query.to).await?;
    let series = points
        .into_iter()
        .map(|p| PlayPointView {
            t: time(p.t_ms),
            plays: p.plays,
            streams: p.streams,
            listeners: p.listeners,
        })
        .collect();
    Ok(Json(PlaySeries { series }))
}

/// Daily, weekly or monthly active users (administrators).
#[utoipa::path(get, path = "/v1/analytics/users/active", tag = "analytics", security(("bearer" = [])),
    params(ActiveQuery), responses((status = 200, body = ActiveSeries), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn active_users(
    State(service): State<AppState>,
    caller: Caller,
    Query(query): Query<ActiveQuery>,
) -> ApiResult<Json<ActiveSeries>> {
    let period = query.interval.unwrap_or(Period::Day);
    let points = service.active_users(&caller, period, query.from, query.to).await?;
    let series = points
        .into_iter()
        .map(|p| ActivePointView { t: time(p.t_ms), active_users: p.active_users })
        .collect();
    Ok(Json(ActiveSeries { series }))
}

/// Requests, server errors and latency per route (administrators).
#[utoipa::path(get, path = "/v1/analytics/api", tag = "analytics", security(("bearer" = [])),
    params(ApiQuery), responses((status = 200, body = ApiStats), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn api_routes(
    State(service): State<AppState>,
    caller: Caller,
    Query(query): Query<ApiQuery>,
) -> ApiResult<Json<ApiStats>> {
    let hours = match query.window.as_deref() {
        None | Some("1h") => 1,
        Some("24h") => 24,
        Some(other) => {
            return Err(Problem::unprocessable(format!("window `{other}` is not 1h or 24h")));
        }
    };
    let routes = service
        .api_routes(&caller, hours)
        .await?
        .into_iter()
        .map(|r| RouteView {
            method: r.method,
            route: r.route,
            requests: r.requests,
            errors: r.errors,
            p50_ms: millis_of(r.p50_us),
            p95_ms: millis_of(r.p95_us),
        })
        .collect();
    Ok(Json(ApiStats { routes }))
}
