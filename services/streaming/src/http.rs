//! Streaming's HTTP edge: signed URLs for signed-in callers (`/v1/tracks/{id}/stream` and
//! `/dash`), and the media those URLs authorise (`/media/…`), which needs no token.

// utoipa's expansion of query extractors trips this lint on the handlers' own types.
#![allow(unused_qualifications)]

use std::{borrow::Cow, ops::Bound, sync::Arc};

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use headers::HeaderMapExt as _;
use kernel::{
    Problem,
    api::millis,
    caller::Caller,
    http::{Json, Path, Unlogged},
};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    domain::{SignatureError, signing::SignedQuery},
    service::{Manifest, Media, SignedUrl, StreamingError, StreamingService},
};

type AppState = Arc<StreamingService>;

#[derive(OpenApi)]
#[openapi(tags((name = "streaming", description = "Signed HLS and DASH streams")))]
struct StreamingApi;

/// The token-protected routes and their OpenAPI description.
pub fn router(service: Arc<StreamingService>) -> (Router, utoipa::openapi::OpenApi) {
    for error in [
        SignatureError::Missing,
        SignatureError::Malformed,
        SignatureError::UnknownKey,
        SignatureError::Invalid,
        SignatureError::Expired,
    ] {
        metrics::counter!("media_signature_refusals_total", "reason" => signature_reason(error))
            .increment(0);
    }
    let (router, api) = routes().split_for_parts();
    (router.with_state(service), api)
}

/// The OpenAPI description of the token-protected routes, without a running service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The signed media (`/media/…`): no token, the URL's own signature instead. It is the hot
/// path, so it is one service that answers every path below `/media/` itself, with no
/// router or extractors in between (they cost more than the rest of a cached segment's
/// answer). The gateway mounts it outside its API layers and rate limits.
pub fn media_service(service: Arc<StreamingService>) -> MediaService {
    MediaService(service)
}

#[derive(Clone)]
pub struct MediaService(Arc<StreamingService>);

impl tower::Service<axum::extract::Request> for MediaService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        let service = self.0.clone();
        // A media request has no body to read.
        let (request, _) = request.into_parts();
        Box::pin(async move { Ok(answer_media(&service, &request).await) })
    }
}

/// The OpenAPI description of the signed media routes.
pub fn media_openapi() -> utoipa::openapi::OpenApi {
    media_routes().split_for_parts().1
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(StreamingApi::openapi())
        .routes(routes!(hls_url))
        .routes(routes!(dash_url))
}

fn media_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(StreamingApi::openapi()).routes(routes!(media))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamUrl {
    /// A signed URL; every URI inside what it returns is signed alike.
    url: String,
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: DateTime<Utc>,
}

impl From<SignedUrl> for StreamUrl {
    fn from(signed: SignedUrl) -> Self {
        Self { url: signed.url, expires_at: signed.expires_at }
    }
}

impl From<StreamingError> for Problem {
    fn from(error: StreamingError) -> Self {
        match &error {
            StreamingError::NotFound(_) => Problem::not_found(error.to_string()),
            StreamingError::NotPlayable(_) => Problem::conflict(error.to_string()),
            StreamingError::Signature(_) => Problem::forbidden(error.to_string()),
            StreamingError::Store(store) if store.is_unavailable() => {
                Problem::unavailable("streaming's storage is unavailable; try again shortly")
            }
            StreamingError::Objects(objects::ObjectsError::Unavailable(_)) => {
                Problem::unavailable("media storage is unavailable; try again shortly")
            }
            StreamingError::Objects(objects::ObjectsError::InvalidKey(_)) => {
                Problem::not_found("no such file")
            }
            StreamingError::Store(_) | StreamingError::Objects(_) => Problem::internal(&error),
        }
    }
}

type ApiResult<T> = Result<T, Problem>;

/// A signed URL of the track's HLS master playlist, valid for hours.
#[utoipa::path(get, path = "/v1/tracks/{id}/stream", tag = "streaming", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = StreamUrl),
        (status = 404, body = Problem, description = "No such track"),
        (status = 409, body = Problem, description = "Still processing, or failed"),
    ))]
async fn hls_url(
    axum::extract::State(service): axum::extract::State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Json<StreamUrl>> {
    Ok(Json(service.signed_url(id, Manifest::Hls, &request_base(&headers)).await?.into()))
}

/// A signed URL of the track's DASH manifest (MPD), valid for hours.
#[utoipa::path(get, path = "/v1/tracks/{id}/dash", tag = "streaming", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = StreamUrl),
        (status = 404, body = Problem, description = "No such track"),
        (status = 409, body = Problem, description = "Still processing, or failed"),
    ))]
async fn dash_url(
    axum::extract::State(service): axum::extract::State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Json<StreamUrl>> {
    Ok(Json(service.signed_url(id, Manifest::Dash, &request_base(&headers)).await?.into()))
}

/// A playlist, manifest or segment, authorised by the URL's signature (`exp`, `kid`,
/// `sig`), not by a token. Segments answer `Range` and are immutable.
// The route's handler for its OpenAPI description; [`MediaService`] serves it.
#[utoipa::path(method(get, head), path = "/media/{track_id}/{path}", tag = "streaming",
    params(
        ("track_id" = Uuid, Path),
        ("path" = String, Path, description = "e.g. master.m3u8, manifest.mpd, 128k/index.m3u8, 128k/seg001.m4s"),
        ("exp" = i64, Query, description = "Expiry, Unix seconds"),
        ("kid" = String, Query, description = "Signing key id"),
        ("sig" = String, Query, description = "HMAC-SHA256 of the path and expiry, base64url"),
    ),
    responses(
        (status = 200, description = "The playlist (application/vnd.apple.mpegurl), manifest (application/dash+xml) or segment (audio/mp4)"),
        (status = 206, description = "The requested range of a segment"),
        (status = 304, description = "The segment is unchanged (If-None-Match)"),
        (status = 403, body = Problem, description = "Missing, tampered or expired signature"),
        (status = 404, body = Problem),
        (status = 416, body = Problem),
    ))]
async fn media(
    axum::extract::State(service): axum::extract::State<AppState>,
    request: axum::extract::Request,
) -> Response {
    answer_media(&service, &request.into_parts().0).await
}

async fn answer_media(
    service: &StreamingService,
    request: &axum::http::request::Parts,
) -> Response {
    if request.method != Method::GET && request.method != Method::HEAD {
        let mut refused =
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "media answers GET and HEAD only")
                .into_response();
        refused.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return refused;
    }
    let target = media_target(request.uri.path());
    let query = SignedQuery::parse(request.uri.query().unwrap_or_default());
    let served = match &target {
        Some((track_id, path)) => service.media(*track_id, path, &query).await,
        None => Err(StreamingError::NotFound("file")),
    };
    let mut response = match served {
        Ok(Media::Text { content_type, body }) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                // The text is fixed for a given URL until its key rotates; keep it briefly.
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60")),
            ],
            body,
        )
            .into_response(),
        Ok(Media::Segment { bytes, etag }) => segment_response(&request.headers, bytes, etag),
        Err(error) => {
            if let StreamingError::Signature(reason) = &error {
                metrics::counter!("media_signature_refusals_total", "reason" => signature_reason(*reason)).increment(1);
            }
            Problem::from(error).into_response()
        }
    };
    // Media is the hot path: counted in metrics, never a log line per request.
    response.extensions_mut().insert(Unlogged);
    response
}

/// The track and the file under it that a media path (`/media/{track_id}/{path}`) names,
/// percent-decoded.
fn media_target(path: &str) -> Option<(Uuid, Cow<'_, str>)> {
    let (track_id, file) = path.strip_prefix("/media/")?.split_once('/')?;
    let track_id = Uuid::parse_str(track_id).ok()?;
    let file = percent_encoding::percent_decode_str(file).decode_utf8().ok()?;
    (!file.is_empty()).then_some((track_id, file))
}

fn signature_reason(error: SignatureError) -> &'static str {
    match error {
        SignatureError::Missing => "missing",
        SignatureError::Malformed => "malformed",
        SignatureError::UnknownKey => "unknown_key",
        SignatureError::Invalid => "invalid",
        SignatureError::Expired => "expired",
    }
}

/// A segment, whole or the one range asked for, with its validator and CDN-fit caching.
fn segment_response(request: &HeaderMap, bytes: bytes::Bytes, etag: bytes::Bytes) -> Response {
    let matches_etag = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',').any(|tag| tag.trim().as_bytes() == etag.as_ref() || tag.trim() == "*")
        });
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/mp4"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_maybe_shared(etag) {
        headers.insert(header::ETAG, value);
    }
    if matches_etag {
        return with_headers(StatusCode::NOT_MODIFIED, headers, bytes::Bytes::new());
    }
    if !request.contains_key(header::RANGE) {
        return with_headers(StatusCode::OK, headers, bytes);
    }
    let Some(range) = request.typed_get::<headers::Range>() else {
        // A Range header that does not parse is ignored, as RFC 9110 says.
        return with_headers(StatusCode::OK, headers, bytes);
    };
    let length = bytes.len() as u64;
    let mut ranges = range.satisfiable_ranges(length);
    let (Some((start, end)), None) = (ranges.next(), ranges.next()) else {
        return unsatisfiable(length, headers);
    };
    let first = match start {
        Bound::Included(n) => n,
        Bound::Excluded(n) => n + 1,
        Bound::Unbounded => 0,
    };
    let last = match end {
        Bound::Included(n) => n.min(length.saturating_sub(1)),
        Bound::Excluded(n) => n.saturating_sub(1).min(length.saturating_sub(1)),
        Bound::Unbounded => length.saturating_sub(1),
    };
    if length == 0 || first > last {
        return unsatisfiable(length, headers);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{length}")) {
        headers.insert(header::CONTENT_RANGE, value);
    }
    let (first, last) = (first as usize, last as usize);
    with_headers(StatusCode::PARTIAL_CONTENT, headers, bytes.slice(first..=last))
}

/// A response built in place: the headers become the response's own map, not a copy.
fn with_headers(status: StatusCode, headers: HeaderMap, body: bytes::Bytes) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn unsatisfiable(length: u64, mut headers: HeaderMap) -> Response {
    headers.remove(header::CONTENT_TYPE);
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{length}")) {
        headers.insert(header::CONTENT_RANGE, value);
    }
    let problem = Problem::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        format!("the segment is {length} bytes; ask for one range within it"),
    );
    let mut response = problem.into_response();
    response.headers_mut().extend(headers);
    response
}

/// The scheme and host the client used, as the gateway forwards them, for URLs that
/// point back at it.
fn request_base(headers: &HeaderMap) -> String {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let host = value("x-forwarded-host").or_else(|| value("host")).unwrap_or("localhost");
    let scheme = value("x-forwarded-proto").unwrap_or("http");
    format!("{scheme}://{host}")
}
