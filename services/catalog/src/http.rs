//! The catalog's HTTP edge.

// utoipa's expansion of query extractors trips this lint on the handlers' own types.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, State, multipart::MultipartError},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use kernel::{
    Problem,
    api::{AlbumRef, ArtistRef, Page, PageQuery, SearchAlbum, TrackSummary, millis},
    caller::Caller,
    extract::{is_too_large, multipart_problem},
    http::{Json, Multipart, Path, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    domain::{Album, CatalogError, Track, TrackEdit, TrackSort},
    service::{CatalogService, Found, Overrides, Sections, Uploaded},
};

type AppState = Arc<CatalogService>;

#[derive(OpenApi)]
#[openapi(tags((name = "catalog", description = "Tracks, albums, artists and uploads")))]
struct CatalogApi;

/// The public routes and their OpenAPI description.
pub fn router(service: Arc<CatalogService>) -> (Router, utoipa::openapi::OpenApi) {
    let limit = usize::try_from(service.max_upload_bytes()).unwrap_or(usize::MAX);
    let (router, api) = routes().split_for_parts();
    (router.layer(DefaultBodyLimit::max(limit)).with_state(service), api)
}

/// The OpenAPI description of the public routes, without a running service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(CatalogApi::openapi())
        .routes(routes!(upload, list_tracks))
        .routes(routes!(get_track, update_track, delete_track))
        .routes(routes!(list_albums))
        .routes(routes!(get_album))
        .routes(routes!(get_artwork))
        .routes(routes!(list_artists))
        .routes(routes!(get_artist))
        .routes(routes!(search))
}

impl From<&Track> for TrackSummary {
    fn from(track: &Track) -> Self {
        Self {
            id: track.id,
            title: track.title.clone(),
            artist: ArtistRef { id: track.artist.id, name: track.artist.name.clone() },
            album: AlbumRef { id: track.album.0, title: track.album.1.clone() },
            duration_ms: track.duration_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rendition {
    bitrate_kbps: u32,
    codec: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrackView {
    id: Uuid,
    title: String,
    artist: ArtistRef,
    album: AlbumRef,
    track_number: Option<u32>,
    disc_number: Option<u32>,
    year: Option<i32>,
    genre: Option<String>,
    duration_ms: u64,
    loudness_lufs: Option<f64>,
    /// `processing`, `ready` or `failed`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    renditions: Vec<Rendition>,
    uploaded_by: Uuid,
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    /// Present (true) when an upload matched content already in the catalog.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
}

impl From<Track> for TrackView {
    fn from(track: Track) -> Self {
        Self {
            id: track.id,
            artist: ArtistRef { id: track.artist.id, name: track.artist.name },
            album: AlbumRef { id: track.album.0, title: track.album.1 },
            title: track.title,
            track_number: track.track_number,
            disc_number: track.disc_number,
            year: track.year,
            genre: track.genre,
            duration_ms: track.duration_ms,
            loudness_lufs: track.loudness_lufs,
            status: track.status.as_str(),
            error: track.error,
            renditions: track
                .renditions
                .into_iter()
                .map(|r| Rendition { bitrate_kbps: r.bitrate_kbps, codec: r.codec })
                .collect(),
            uploaded_by: track.uploaded_by,
            created_at: track.created_at,
            duplicate: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    id: Uuid,
    status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlbumListItem {
    id: Uuid,
    title: String,
    artist: ArtistRef,
    year: Option<i32>,
    tracks_total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlbumView {
    id: Uuid,
    title: String,
    artist: ArtistRef,
    year: Option<i32>,
    tracks: Vec<TrackSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArtistListItem {
    id: Uuid,
    name: String,
    albums_total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlbumOfArtist {
    id: Uuid,
    title: String,
    year: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArtistView {
    id: Uuid,
    name: String,
    albums: Vec<AlbumOfArtist>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TrackPatch {
    #[schema(min_length = 1, max_length = 300, pattern = "\\S")]
    title: Option<String>,
    #[schema(min_length = 1, max_length = 300, pattern = "\\S")]
    artist: Option<String>,
    #[schema(min_length = 1, max_length = 300, pattern = "\\S")]
    album: Option<String>,
    genre: Option<String>,
    #[schema(minimum = 1000, maximum = 9999)]
    year: Option<i32>,
    #[schema(minimum = 1, maximum = 999)]
    track_number: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrackListQuery {
    /// `recent` (newest first, the default) or `title`.
    #[param(pattern = "^(recent|title)$")]
    sort: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 2147483647)]
    offset: Option<u32>,
}

/// The multipart body of an upload, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    /// The audio file: MP3, FLAC, WAV, OGG Vorbis or M4A/AAC, recognised by its content.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    title: Option<String>,
    artist: Option<String>,
    album: Option<String>,
}

impl From<CatalogError> for Problem {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Invalid { .. } | CatalogError::MissingFile => {
                Problem::unprocessable(error.to_string())
            }
            CatalogError::UnsupportedFormat => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, error.to_string())
            }
            CatalogError::TooLarge { .. } => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
            }
            CatalogError::NotFound(_) => Problem::not_found(error.to_string()),
            CatalogError::NotYours => Problem::forbidden(error.to_string()),
            CatalogError::Unreadable(_) => Problem::bad_request(error.to_string()),
            CatalogError::Store(ref store) if store.is_unavailable() => {
                Problem::unavailable("the catalog's storage is unavailable; try again shortly")
            }
            CatalogError::Objects(objects::ObjectsError::Unavailable(_)) => {
                Problem::unavailable("the catalog's storage is unavailable; try again shortly")
            }
            CatalogError::Store(_) | CatalogError::Objects(_) | CatalogError::Upload(_) => {
                Problem::internal(&error)
            }
        }
    }
}

/// A multipart body that could not be read: too large (past the upload limit, declared
/// or not), or malformed or cut short.
fn unreadable(error: &MultipartError, limit: u64) -> CatalogError {
    if is_too_large(error) {
        CatalogError::TooLarge { limit }
    } else {
        CatalogError::Unreadable(multipart_problem(error).detail)
    }
}

/// Longest text field of an upload read, in bytes: well past any valid name, so that a
/// name too long is refused by the same rule as an edit, with no unbounded read.
const MAX_TEXT_FIELD_BYTES: usize = 16 * 1024;

async fn text_field(
    mut field: axum::extract::multipart::Field<'_>,
    name: &'static str,
    limit: u64,
) -> Result<String, CatalogError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| unreadable(&e, limit))? {
        if bytes.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
            return Err(CatalogError::Invalid {
                field: name,
                reason: format!("must be 1 to {} characters", crate::domain::MAX_NAME_CHARS),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| CatalogError::Invalid { field: name, reason: "must be UTF-8 text".into() })
}

type ApiResult<T> = Result<T, Problem>;

/// Upload a track. The `file` part is streamed to storage as it arrives.
#[utoipa::path(post, path = "/v1/tracks", tag = "catalog", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, body = Accepted, description = "Stored; processing into streams"),
        (status = 200, body = TrackView, description = "This content is already in the catalog"),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
    ))]
async fn upload(
    State(service): State<AppState>,
    caller: Caller,
    Multipart(mut form): Multipart,
) -> ApiResult<Response> {
    let limit = service.max_upload_bytes();
    let mut spooled = None;
    let mut file_name = None;
    let mut overrides = Overrides::default();
    while let Some(field) = form.next_field().await.map_err(|e| unreadable(&e, limit))? {
        match field.name().unwrap_or_default() {
            "file" if spooled.is_none() => {
                file_name = field.file_name().map(str::to_owned);
                spooled = Some(service.spool(field.map_err(|e| unreadable(&e, limit))).await?);
            }
            "title" => overrides.title = Some(text_field(field, "title", limit).await?),
            "artist" => overrides.artist = Some(text_field(field, "artist", limit).await?),
            "album" => overrides.album = Some(text_field(field, "album", limit).await?),
            _ => {}
        }
    }
    let spooled = spooled.ok_or(CatalogError::MissingFile)?;
    Ok(match service.ingest(&caller, spooled, file_name, overrides).await? {
        Uploaded::Created(track) => {
            (StatusCode::ACCEPTED, Json(Accepted { id: track.id, status: track.status.as_str() }))
                .into_response()
        }
        Uploaded::Duplicate(track) => {
            let mut view = TrackView::from(track);
            view.duplicate = Some(true);
            (StatusCode::OK, Json(view)).into_response()
        }
    })
}

/// Tracks, newest first or by title.
#[utoipa::path(get, path = "/v1/tracks", tag = "catalog", security(("bearer" = [])),
    params(TrackListQuery), responses((status = 200, body = Page<TrackSummary>)))]
async fn list_tracks(
    State(service): State<AppState>,
    caller: Caller,
    Query(query): Query<TrackListQuery>,
) -> ApiResult<Json<Page<TrackSummary>>> {
    let sort = match query.sort.as_deref() {
        None | Some("recent") => TrackSort::Recent,
        Some("title") => TrackSort::Title,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "unknown sort `{other}`: use recent or title"
            )));
        }
    };
    let (limit, offset) = PageQuery { limit: query.limit, offset: query.offset }.resolve()?;
    let (tracks, total) = service.tracks(&caller, sort, limit, offset).await?;
    Ok(Json(Page { items: tracks.iter().map(TrackSummary::from).collect(), total, limit, offset }))
}

/// One track, with its processing status.
#[utoipa::path(get, path = "/v1/tracks/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = TrackView), (status = 404, body = Problem)))]
async fn get_track(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<TrackView>> {
    Ok(Json(service.visible_track(&caller, id).await?.into()))
}

/// Edit a track's tags (uploader or admin).
#[utoipa::path(patch, path = "/v1/tracks/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = TrackPatch,
    responses((status = 200, body = TrackView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_track(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(patch): Json<TrackPatch>,
) -> ApiResult<Json<TrackView>> {
    let edit = TrackEdit {
        title: patch.title,
        artist_name: patch.artist,
        album_title: patch.album,
        genre: patch.genre,
        year: patch.year,
        track_number: patch.track_number,
    };
    Ok(Json(service.update(&caller, id, edit).await?.into()))
}

/// Delete a track and its media (uploader or admin); `track.deleted` is published.
#[utoipa::path(delete, path = "/v1/tracks/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_track(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    service.delete(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn album_ref(album: &Album) -> ArtistRef {
    ArtistRef { id: album.artist.id, name: album.artist.name.clone() }
}

/// Albums by title.
#[utoipa::path(get, path = "/v1/albums", tag = "catalog", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = Page<AlbumListItem>)))]
async fn list_albums(
    State(service): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<AlbumListItem>>> {
    let (limit, offset) = page.resolve()?;
    let (albums, total) = service.albums(limit, offset).await?;
    let items = albums
        .into_iter()
        .map(|summary| AlbumListItem {
            artist: album_ref(&summary.album),
            id: summary.album.id,
            title: summary.album.title,
            year: summary.album.year,
            tracks_total: summary.tracks,
        })
        .collect();
    Ok(Json(Page { items, total, limit, offset }))
}

/// An album with its tracks.
#[utoipa::path(get, path = "/v1/albums/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = AlbumView), (status = 404, body = Problem)))]
async fn get_album(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<AlbumView>> {
    let (album, tracks) = service.album(&caller, id).await?;
    Ok(Json(AlbumView {
        artist: album_ref(&album),
        id: album.id,
        title: album.title,
        year: album.year,
        tracks: tracks.iter().map(TrackSummary::from).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArtworkQuery {
    /// Edge length in pixels: 300 or 640 (the default).
    #[param(schema_with = artwork_sizes)]
    size: Option<u32>,
}

fn artwork_sizes() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .enum_values(Some([300, 640]))
        .build()
}

/// An album's cover image, taken from its files' embedded pictures.
#[utoipa::path(get, path = "/v1/albums/{id}/artwork", tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path), ArtworkQuery),
    responses(
        (status = 200, description = "JPEG", content_type = "image/jpeg"),
        (status = 404, body = Problem, description = "No such album, or it has no artwork"),
        (status = 422, body = Problem),
    ))]
async fn get_artwork(
    State(service): State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<ArtworkQuery>,
) -> ApiResult<Response> {
    let jpeg = service.artwork(id, query.size.unwrap_or(640)).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/jpeg"),
            (axum::http::header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        jpeg,
    )
        .into_response())
}

/// Artists by name.
#[utoipa::path(get, path = "/v1/artists", tag = "catalog", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = Page<ArtistListItem>)))]
async fn list_artists(
    State(service): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<ArtistListItem>>> {
    let (limit, offset) = page.resolve()?;
    let (artists, total) = service.artists(limit, offset).await?;
    let items = artists
        .into_iter()
        .map(|summary| ArtistListItem {
            id: summary.artist.id,
            name: summary.artist.name,
            albums_total: summary.albums,
        })
        .collect();
    Ok(Json(Page { items, total, limit, offset }))
}

/// An artist with their albums.
#[utoipa::path(get, path = "/v1/artists/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = ArtistView), (status = 404, body = Problem)))]
async fn get_artist(
    State(service): State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ArtistView>> {
    let (artist, albums) = service.artist(id).await?;
    Ok(Json(ArtistView {
        id: artist.id,
        name: artist.name,
        albums: albums
            .into_iter()
            .map(|album| AlbumOfArtist { id: album.id, title: album.title, year: album.year })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The words to look for; each matches as a prefix or within one edit (two for
    /// words of eight letters or more).
    #[param(pattern = "[^\\W_]")]
    q: String,
    /// Any of `track`, `album`, `artist`, comma-separated; all three when absent or empty.
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = "^((track|album|artist)(,(track|album|artist))*)?$")]
    kinds: Option<String>,
    /// Results per kind, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Results of each kind to skip.
    #[param(minimum = 0, maximum = 2147483647)]
    offset: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    tracks: Option<Page<TrackSummary>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    albums: Option<Page<SearchAlbum>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artists: Option<Page<ArtistRef>>,
}

/// Search tracks, albums and artists, ranked.
#[utoipa::path(get, path = "/v1/search", tag = "catalog", security(("bearer" = [])),
    params(SearchQuery),
    responses((status = 200, body = SearchResponse), (status = 400, body = Problem), (status = 422, body = Problem)))]
async fn search(
    State(service): State<AppState>,
    _caller: Caller,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<SearchResponse>> {
    let (limit, offset) = PageQuery { limit: query.limit, offset: query.offset }.resolve()?;
    let mut kinds: Vec<&str> = query
        .kinds
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect();
    // A client that builds `type=` from an empty selection means no filter, as when absent.
    if kinds.is_empty() {
        kinds = vec!["track", "album", "artist"];
    }
    if let Some(unknown) = kinds.iter().find(|k| !["track", "album", "artist"].contains(k)) {
        return Err(Problem::bad_request(format!(
            "unknown type `{unknown}`: use track, album or artist"
        )));
    }
    let wants = |kind: &str| kinds.contains(&kind);
    let sections =
        Sections { tracks: wants("track"), albums: wants("album"), artists: wants("artist") };
    let results = service.search(&query.q, sections, limit, offset).await?;
    Ok(Json(SearchResponse {
        tracks: sections
            .tracks
            .then(|| page(results.tracks, limit, offset).map(|t| TrackSummary::from(&t))),
        albums: sections.albums.then(|| {
            page(results.albums, limit, offset).map(|(id, title, artist)| SearchAlbum {
                id,
                title,
                artist: ArtistRef { id: artist.id, name: artist.name },
            })
        }),
        artists: sections.artists.then(|| {
            page(results.artists, limit, offset)
                .map(|artist| ArtistRef { id: artist.id, name: artist.name })
        }),
    }))
}

/// A section of search results in the list shape.
fn page<T>(found: Found<T>, limit: u32, offset: u32) -> Page<T> {
    Page::of(found.items, found.total, limit, offset)
}
