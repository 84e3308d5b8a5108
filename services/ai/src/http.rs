//! The AI service's HTTP edge.

// utoipa's generated code for query parameters spells out paths.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use kernel::{
    Problem,
    api::{Page, PageQuery, SearchResults, TrackSummary},
    caller::Caller,
    http::{Json, Path, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    AiService,
    audio::AudioError,
    recommendations::{RecommendError, Recommendations},
    service::AiError,
    voice::Intent,
};

type AppState = Arc<AiService>;
type ApiResult<T> = Result<T, Problem>;

/// Seconds a client is asked to wait when a queue is full.
const BUSY_RETRY_AFTER_SECS: u64 = 2;

#[derive(OpenApi)]
#[openapi(tags((name = "ai", description = "Speech to text, voice search and text to speech")))]
struct AiApi;

/// The public routes and their OpenAPI description.
pub fn router(service: Arc<AiService>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, api) = routes().split_for_parts();
    (router.with_state(service), api)
}

/// The recommendation routes and their OpenAPI description.
pub fn recommendations_router(service: Arc<Recommendations>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, api) = recommendation_routes().split_for_parts();
    (router.with_state(service), api)
}

/// The OpenAPI description of every public route, voice and recommendations, without a
/// running service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut api = routes().split_for_parts().1;
    api.merge(recommendation_routes().split_for_parts().1);
    api
}

/// The paths that take audio bodies, for the gateway's per-route body limits.
pub const AUDIO_ROUTES: [&str; 2] = ["/v1/ai/transcribe", "/v1/ai/voice-search"];

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(AiApi::openapi())
        .routes(routes!(transcribe))
        .routes(routes!(voice_search))
        .routes(routes!(speak))
}

fn recommendation_routes() -> OpenApiRouter<Arc<Recommendations>> {
    OpenApiRouter::with_openapi(AiApi::openapi())
        .routes(routes!(recommendations))
        .routes(routes!(similar))
}

impl From<RecommendError> for Problem {
    fn from(error: RecommendError) -> Self {
        match &error {
            RecommendError::Loading => {
                Problem::unavailable(error.to_string()).with_retry_after(BUSY_RETRY_AFTER_SECS)
            }
            RecommendError::NoSuchTrack => Problem::not_found(error.to_string()),
            RecommendError::Store(_) => {
                tracing::error!(%error, "the recommendations store failed");
                Problem::unavailable("recommendations are unavailable; try again shortly")
            }
            RecommendError::CatalogUnavailable(_) => {
                Problem::unavailable("the catalog is unavailable; try again shortly")
            }
            RecommendError::Failed(_) => Problem::internal(&error),
        }
    }
}

impl From<AiError> for Problem {
    fn from(error: AiError) -> Self {
        match &error {
            AiError::Audio(AudioError::Empty) => Problem::bad_request(error.to_string()),
            AiError::Audio(AudioError::Undecodable(_)) => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, error.to_string())
            }
            AiError::Audio(AudioError::TooLong { .. }) => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
            }
            AiError::Audio(AudioError::TooShort) | AiError::Invalid { .. } => {
                Problem::unprocessable(error.to_string())
            }
            AiError::Unavailable(_) => {
                Problem::unavailable(error.to_string()).with_type("models-unavailable")
            }
            AiError::Busy { .. } => {
                Problem::unavailable(error.to_string()).with_retry_after(BUSY_RETRY_AFTER_SECS)
            }
            AiError::CatalogUnavailable(_) => {
                Problem::unavailable("the catalog is unavailable; try again shortly")
            }
            AiError::Model(_) => Problem::internal(&error),
        }
    }
}

/// Reads an audio body up to the configured size: 413 past it.
async fn audio_body(service: &AiService, body: Body) -> ApiResult<bytes::Bytes> {
    let limit = usize::try_from(service.config().max_upload_bytes).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        if kernel::extract::is_too_large(&error) {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the audio is larger than {limit} bytes"),
            )
        } else {
            kernel::extract::body_problem(&error)
        }
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptBody {
    /// What was said.
    text: String,
    /// The language heard (ISO 639-1).
    language: String,
    duration_ms: u64,
}

/// Transcribe speech: a WAV, MP3, Ogg Vorbis or FLAC body (recognised by its content) of at
/// most 60 s.
#[utoipa::path(post, path = "/v1/ai/transcribe", tag = "ai", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "audio/*", description = "WAV, MP3, Ogg Vorbis or FLAC"),
    responses((status = 200, body = TranscriptBody),
        (status = 400, body = Problem, description = "an empty body"),
        (status = 413, body = Problem, description = "longer than 60 s or larger than the upload limit"),
        (status = 415, body = Problem, description = "not audio that can be decoded"),
        (status = 422, body = Problem, description = "shorter than 0.1 s"),
        (status = 503, body = Problem, description = "the model is not loaded, or the queue is full (with Retry-After)")))]
async fn transcribe(
    State(service): State<AppState>,
    _caller: Caller,
    body: Body,
) -> ApiResult<Json<TranscriptBody>> {
    let audio = audio_body(&service, body).await?;
    let transcript = service.transcribe(audio).await?;
    Ok(Json(TranscriptBody {
        text: transcript.text,
        language: transcript.language.to_owned(),
        duration_ms: transcript.duration_ms,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VoiceSearchBody {
    /// What was said.
    text: String,
    /// How it was understood.
    intent: Intent,
    /// What the catalog found for it, in the shape of `GET /v1/search`.
    results: SearchResults,
}

/// Search by voice: "play kind of blue by miles davis" is transcribed, understood (play,
/// shuffle, songs like …, by an artist, from an album) and searched for.
#[utoipa::path(post, path = "/v1/ai/voice-search", tag = "ai", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "audio/*", description = "WAV, MP3, Ogg Vorbis or FLAC"),
    responses((status = 200, body = VoiceSearchBody),
        (status = 400, body = Problem), (status = 413, body = Problem), (status = 415, body = Problem),
        (status = 503, body = Problem)))]
async fn voice_search(
    State(service): State<AppState>,
    caller: Caller,
    body: Body,
) -> ApiResult<Json<VoiceSearchBody>> {
    let audio = audio_body(&service, body).await?;
    let found = service.voice_search(&caller, audio).await?;
    Ok(Json(VoiceSearchBody { text: found.text, intent: found.intent, results: found.results }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeakBody {
    /// At most 1000 characters.
    #[schema(min_length = 1, max_length = 1000, pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$")]
    text: String,
    /// The voice; the one installed when absent.
    voice: Option<String>,
}

/// Speak text aloud: 16-bit mono WAV.
#[utoipa::path(post, path = "/v1/ai/speak", tag = "ai", security(("bearer" = [])),
    request_body = SpeakBody,
    responses((status = 200, content_type = "audio/wav", body = Vec<u8>),
        (status = 422, body = Problem, description = "empty or too long text, or an unknown voice"),
        (status = 503, body = Problem, description = "the voice is not loaded, or too many texts are being spoken")))]
async fn speak(
    State(service): State<AppState>,
    _caller: Caller,
    Json(body): Json<SpeakBody>,
) -> ApiResult<Response> {
    let wav = service.speak(&body.text, body.voice.as_deref()).await?;
    Ok(([(header::CONTENT_TYPE, "audio/wav")], wav).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationsQuery {
    /// Items per page, 1 to 100.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 2147483647)]
    offset: Option<u32>,
    /// Also recommend tracks the caller liked or played in the last days (default false).
    include_known: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationView {
    track: TrackSummary,
    /// How strongly it is recommended; higher is better, comparable within one list.
    score: f32,
    /// Why, in words for the listener: "Because you liked Blue in Green by Miles Davis",
    /// or "Popular on Tonearm" for someone new.
    reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SimilarView {
    track: TrackSummary,
    /// Likeness, up to 1; higher is more alike.
    score: f32,
}

/// Tracks for the caller, best first (at most 100 in all): what listeners with a taste
/// like theirs chose, blended with tracks like the ones they liked and played; someone
/// new gets what is popular. Tracks they liked or played lately are left out unless
/// `include_known`.
#[utoipa::path(get, path = "/v1/me/recommendations", tag = "ai", security(("bearer" = [])),
    params(RecommendationsQuery),
    responses((status = 200, body = Page<RecommendationView>),
        (status = 400, body = Problem, description = "a limit out of range"),
        (status = 503, body = Problem, description = "still loading (with Retry-After), or the store is unavailable")))]
async fn recommendations(
    State(service): State<Arc<Recommendations>>,
    caller: Caller,
    Query(query): Query<RecommendationsQuery>,
) -> ApiResult<Json<Page<RecommendationView>>> {
    let (limit, offset) = PageQuery { limit: query.limit, offset: query.offset }.resolve()?;
    let list = service.recommend(caller.user_id, query.include_known.unwrap_or(false)).await?;
    let views = list
        .into_iter()
        .map(|r| RecommendationView { track: r.track, score: r.score, reason: r.reason })
        .collect();
    Ok(Json(Page::slice(views, limit, offset)))
}

/// The tracks most like one, best first (at most 100 in all): alike in what they are
/// (title, artist, album and genre, by their embeddings) and in who listens to them.
#[utoipa::path(get, path = "/v1/tracks/{id}/similar", tag = "ai", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "a track id"), PageQuery),
    responses((status = 200, body = Page<SimilarView>),
        (status = 400, body = Problem, description = "a limit out of range"),
        (status = 404, body = Problem, description = "no such track"),
        (status = 503, body = Problem, description = "still loading (with Retry-After), or a dependency is unavailable")))]
async fn similar(
    State(service): State<Arc<Recommendations>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<SimilarView>>> {
    let (limit, offset) = page.resolve()?;
    let similar = service.similar(&caller, id).await?;
    let views = similar.into_iter().map(|(track, score)| SimilarView { track, score }).collect();
    Ok(Json(Page::slice(views, limit, offset)))
}
