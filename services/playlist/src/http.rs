//! The playlist service's HTTP edge.

// utoipa's expansion of query extractors trips this lint on the handlers' own types.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::{Router, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use kernel::{
    Problem,
    api::{AlbumRef, ArtistRef, Page, PageQuery, TrackSummary as TrackView, millis},
    caller::Caller,
    http::{Json, Path, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    PlaylistService,
    domain::{Entry, Like, Playlist, PlaylistEdit, PlaylistError, TrackChange, TrackSummary},
};

type AppState = Arc<PlaylistService>;
type ApiResult<T> = Result<T, Problem>;

#[derive(OpenApi)]
#[openapi(tags((name = "playlists", description = "Playlists, follows and liked songs")))]
struct PlaylistApi;

/// The public routes and their OpenAPI description.
pub fn router(service: Arc<PlaylistService>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, api) = routes().split_for_parts();
    (router.with_state(service), api)
}

/// The OpenAPI description of the public routes, without a running service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(PlaylistApi::openapi())
        .routes(routes!(create_playlist))
        .routes(routes!(my_playlists))
        .routes(routes!(get_playlist, update_playlist, delete_playlist))
        .routes(routes!(follow, unfollow))
        .routes(routes!(list_tracks, add_tracks, remove_tracks, reorder_tracks))
        .routes(routes!(like, unlike))
        .routes(routes!(list_likes))
        .routes(routes!(likes_contain))
}

impl From<PlaylistError> for Problem {
    fn from(error: PlaylistError) -> Self {
        match &error {
            PlaylistError::Invalid { .. } | PlaylistError::Full => {
                Problem::unprocessable(error.to_string())
            }
            PlaylistError::Position(_) | PlaylistError::UnknownTracks(_) => {
                Problem::unprocessable(error.to_string())
            }
            PlaylistError::NotFound(_) => Problem::not_found(error.to_string()),
            PlaylistError::NotYours => Problem::forbidden(error.to_string()),
            PlaylistError::Stale(_) => Problem::conflict(error.to_string()),
            PlaylistError::CatalogUnavailable(_) => {
                Problem::unavailable("the catalog is unavailable; try again shortly")
            }
            PlaylistError::Store(store) if store.is_unavailable() => {
                Problem::unavailable("playlists are unavailable; try again shortly")
            }
            PlaylistError::Store(_) => Problem::internal(&error),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlaylistView {
    id: Uuid,
    owner_id: Uuid,
    name: String,
    description: Option<String>,
    public: bool,
    tracks_total: u64,
    snapshot_id: String,
    /// True when the caller follows it (someone else's playlist).
    followed: bool,
}

impl PlaylistView {
    fn new(playlist: Playlist, followed: bool) -> Self {
        Self {
            snapshot_id: playlist.snapshot_id(),
            id: playlist.id,
            owner_id: playlist.owner_id,
            name: playlist.name,
            description: playlist.description,
            public: playlist.public,
            tracks_total: playlist.tracks_total,
            followed,
        }
    }
}

impl From<TrackSummary> for TrackView {
    fn from(track: TrackSummary) -> Self {
        TrackView {
            id: track.id,
            title: track.title,
            artist: ArtistRef { id: track.artist_id, name: track.artist_name },
            album: AlbumRef { id: track.album_id, title: track.album_title },
            duration_ms: track.duration_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    position: u64,
    track: TrackView,
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    added_at: DateTime<Utc>,
}

impl From<Entry> for EntryView {
    fn from(entry: Entry) -> Self {
        Self { position: entry.position, track: entry.track.into(), added_at: entry.added_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LikeView {
    track: TrackView,
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    liked_at: DateTime<Utc>,
}

impl From<Like> for LikeView {
    fn from(like: Like) -> Self {
        Self { track: like.track.into(), liked_at: like.liked_at }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPlaylistBody {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    #[schema(max_length = 1000)]
    description: Option<String>,
    /// Public playlists can be read and followed by anyone; private ones by the owner.
    #[serde(default)]
    public: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PlaylistPatch {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<String>,
    #[schema(max_length = 1000)]
    description: Option<String>,
    public: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Snapshot {
    snapshot_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddTracks {
    #[schema(min_items = 1, max_items = 100)]
    track_ids: Vec<Uuid>,
    /// Where to insert, 0-based; the end when absent.
    position: Option<usize>,
    /// The snapshot the change was made against; a stale one is refused with 409.
    snapshot_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RemoveTracks {
    #[schema(min_items = 1, max_items = 100)]
    positions: Vec<usize>,
    snapshot_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReorderTracks {
    range_start: usize,
    insert_before: usize,
    /// Entries to move; 1 when absent.
    range_length: Option<usize>,
    snapshot_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContainsQuery {
    /// Comma-separated track ids, at most 100.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(,[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}){0,99}$"
    )]
    ids: String,
}

/// Create a playlist.
#[utoipa::path(post, path = "/v1/playlists", tag = "playlists", security(("bearer" = [])),
    request_body = NewPlaylistBody,
    responses((status = 201, body = PlaylistView), (status = 422, body = Problem)))]
async fn create_playlist(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<NewPlaylistBody>,
) -> ApiResult<(StatusCode, Json<PlaylistView>)> {
    let playlist = service.create(&caller, &body.name, body.description, body.public).await?;
    Ok((StatusCode::CREATED, Json(PlaylistView::new(playlist, false))))
}

/// The caller's playlists and those it follows (`followed: true`), newest first.
#[utoipa::path(get, path = "/v1/me/playlists", tag = "playlists", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = Page<PlaylistView>)))]
async fn my_playlists(
    State(service): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<PlaylistView>>> {
    let (limit, offset) = page.resolve()?;
    let (playlists, total) = service.mine(&caller, limit, offset).await?;
    let items = playlists.into_iter().map(|(p, followed)| PlaylistView::new(p, followed)).collect();
    Ok(Json(Page { items, total, limit, offset }))
}

/// A public playlist, or one of the caller's own.
#[utoipa::path(get, path = "/v1/playlists/{id}", tag = "playlists", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = PlaylistView), (status = 404, body = Problem)))]
async fn get_playlist(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<PlaylistView>> {
    let (playlist, followed) = service.playlist(&caller, id).await?;
    Ok(Json(PlaylistView::new(playlist, followed)))
}

/// Change a playlist's name, description or visibility (the owner only).
#[utoipa::path(patch, path = "/v1/playlists/{id}", tag = "playlists", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = PlaylistPatch,
    responses((status = 200, body = PlaylistView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_playlist(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(patch): Json<PlaylistPatch>,
) -> ApiResult<Json<PlaylistView>> {
    let edit =
        PlaylistEdit { name: patch.name, description: patch.description, public: patch.public };
    Ok(Json(PlaylistView::new(service.update(&caller, id, edit).await?, false)))
}

/// Delete a playlist (the owner only).
#[utoipa::path(delete, path = "/v1/playlists/{id}", tag = "playlists", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_playlist(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    service.delete(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Follow a public playlist.
#[utoipa::path(put, path = "/v1/playlists/{id}/followers", tag = "playlists", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 404, body = Problem)))]
async fn follow(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    service.follow(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop following a playlist.
#[utoipa::path(delete, path = "/v1/playlists/{id}/followers", tag = "playlists", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204), (status = 404, body = Problem)))]
async fn unfollow(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    service.unfollow(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of a playlist's tracks in order.
#[utoipa::path(get, path = "/v1/playlists/{id}/tracks", tag = "playlists", security(("bearer" = [])),
    params(("id" = Uuid, Path), PageQuery), responses((status = 200, body = Page<EntryView>), (status = 404, body = Problem)))]
async fn list_tracks(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<EntryView>>> {
    let (limit, offset) = page.resolve()?;
    let (entries, total) = service.tracks(&caller, id, limit, offset).await?;
    Ok(Json(Page { items: entries.into_iter().map(Into::into).collect(), total, limit, offset }))
}

/// Add tracks at a position, or at the end.
#[utoipa::path(post, path = "/v1/playlists/{id}/tracks", tag = "playlists", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = AddTracks,
    responses((status = 201, body = Snapshot), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Stale snapshot"), (status = 422, body = Problem, description = "Unknown track ids, or a position past the end")))]
async fn add_tracks(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<AddTracks>,
) -> ApiResult<(StatusCode, Json<Snapshot>)> {
    let change = TrackChange::Add { track_ids: body.track_ids, position: body.position };
    let snapshot_id = service.change(&caller, id, body.snapshot_id.as_deref(), change).await?;
    Ok((StatusCode::CREATED, Json(Snapshot { snapshot_id })))
}

/// Remove the tracks at these positions.
#[utoipa::path(delete, path = "/v1/playlists/{id}/tracks", tag = "playlists", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = RemoveTracks,
    responses((status = 200, body = Snapshot), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn remove_tracks(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<RemoveTracks>,
) -> ApiResult<Json<Snapshot>> {
    let change = TrackChange::Remove { positions: body.positions };
    let snapshot_id = service.change(&caller, id, body.snapshot_id.as_deref(), change).await?;
    Ok(Json(Snapshot { snapshot_id }))
}

/// Move `range_length` tracks from `range_start` to before `insert_before`.
#[utoipa::path(put, path = "/v1/playlists/{id}/tracks", tag = "playlists", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ReorderTracks,
    responses((status = 200, body = Snapshot), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Stale snapshot"), (status = 422, body = Problem)))]
async fn reorder_tracks(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<ReorderTracks>,
) -> ApiResult<Json<Snapshot>> {
    let change = TrackChange::Reorder {
        range_start: body.range_start,
        range_length: body.range_length.unwrap_or(1),
        insert_before: body.insert_before,
    };
    let snapshot_id = service.change(&caller, id, body.snapshot_id.as_deref(), change).await?;
    Ok(Json(Snapshot { snapshot_id }))
}

/// Like a track (idempotent; the first like's time stays).
#[utoipa::path(put, path = "/v1/me/likes/{track_id}", tag = "playlists", security(("bearer" = [])),
    params(("track_id" = Uuid, Path)), responses((status = 204), (status = 404, body = Problem)))]
async fn like(
    State(service): State<AppState>,
    caller: Caller,
    Path(track_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    service.like(&caller, track_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unlike a track (idempotent).
#[utoipa::path(delete, path = "/v1/me/likes/{track_id}", tag = "playlists", security(("bearer" = [])),
    params(("track_id" = Uuid, Path)), responses((status = 204)))]
async fn unlike(
    State(service): State<AppState>,
    caller: Caller,
    Path(track_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    service.unlike(&caller, track_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's liked songs, newest first.
#[utoipa::path(get, path = "/v1/me/likes", tag = "playlists", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = Page<LikeView>)))]
async fn list_likes(
    State(service): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<LikeView>>> {
    let (limit, offset) = page.resolve()?;
    let (likes, total) = service.likes(&caller, limit, offset).await?;
    Ok(Json(Page { items: likes.into_iter().map(Into::into).collect(), total, limit, offset }))
}

/// For each id, in order, whether the caller likes it (a player's heart icons).
#[utoipa::path(get, path = "/v1/me/likes/contains", tag = "playlists", security(("bearer" = [])),
    params(ContainsQuery), responses((status = 200, body = Vec<bool>), (status = 400, body = Problem), (status = 422, body = Problem)))]
async fn likes_contain(
    State(service): State<AppState>,
    caller: Caller,
    Query(query): Query<ContainsQuery>,
) -> ApiResult<Json<Vec<bool>>> {
    let ids: Result<Vec<Uuid>, _> = query
        .ids
        .split(',')
        .filter(|id| !id.trim().is_empty())
        .map(|id| id.trim().parse())
        .collect();
    let ids = ids.map_err(|_| Problem::bad_request("ids must be comma-separated track ids"))?;
    Ok(Json(service.contains(&caller, &ids).await?))
}
