//! The people service's HTTP edge.

// utoipa's expansion of query extractors trips this lint on the handlers' own types.
#![allow(unused_qualifications)]

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use chrono::{DateTime, Utc};
use futures::Stream;
use kernel::{
    Problem,
    api::{Page, PageQuery, millis},
    caller::Caller,
    http::{Json, Path, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    PeopleService,
    domain::{Follow, PeopleError, Person, billing::WebhookError},
    live::Subscription,
    service::{FOLLOWING_CHANGED, NotificationView, NowPlaying, UserRef, WebhookReceipt},
};

type AppState = Arc<PeopleService>;
type ApiResult<T> = Result<T, Problem>;

#[derive(OpenApi)]
#[openapi(tags(
    (name = "people", description = "Follows, notifications, now-playing and the live channel"),
    (name = "billing", description = "Payments that make an account premium"),
))]
struct PeopleApi;

/// The path the payment provider posts its events to.
pub const WEBHOOK_PATH: &str = "/v1/billing/webhook";

/// The public routes and their OpenAPI description.
pub fn router(service: Arc<PeopleService>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, api) = routes().split_for_parts();
    (router.with_state(service), api)
}

/// The OpenAPI description of the public routes, without a running service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(PeopleApi::openapi())
        .routes(routes!(billing_webhook))
        .routes(routes!(search_people))
        .routes(routes!(get_person))
        .routes(routes!(their_followers))
        .routes(routes!(their_following))
        .routes(routes!(my_followers))
        .routes(routes!(my_following))
        .routes(routes!(follow, unfollow))
        .routes(routes!(notifications))
        .routes(routes!(mark_read))
        .routes(routes!(live))
        .routes(routes!(heartbeat, stop_playing))
        .routes(routes!(friends_playing))
        .routes(routes!(get_presence, set_presence))
}

impl From<PeopleError> for Problem {
    fn from(error: PeopleError) -> Self {
        match &error {
            PeopleError::NotFound("customer") => {
                Problem::unprocessable("no account matches the event's customer")
            }
            PeopleError::NotFound(_) => Problem::not_found(error.to_string()),
            PeopleError::FollowSelf | PeopleError::Invalid { .. } => {
                Problem::unprocessable(error.to_string())
            }
            PeopleError::Unavailable(_) => {
                Problem::unavailable(format!("{error}; try again shortly"))
            }
            PeopleError::Webhook(WebhookError::NotConfigured) => {
                Problem::unavailable("billing webhooks are not configured on this server")
            }
            PeopleError::Webhook(_) => Problem::bad_request(error.to_string()),
            PeopleError::Store(store) if store.is_unavailable() => {
                Problem::unavailable("people are unavailable; try again shortly")
            }
            PeopleError::Store(_) => Problem::internal(&error),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    received: bool,
    /// True when this event (or the payment it announces) was received before: nothing
    /// changed this time.
    duplicate: bool,
}

/// Receive a payment provider's event (Stripe-style signature).
///
/// The body must be signed with one of the configured endpoint secrets:
/// `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. `invoice.paid`
/// makes the customer premium until the paid period ends; `charge.refunded` and
/// `customer.subscription.deleted` end it. Other types are acknowledged and ignored; an
/// event id seen before changes nothing.
#[utoipa::path(post, path = "/v1/billing/webhook", tag = "billing",
    params(("Stripe-Signature" = String, Header, description = "t=<unix>,v1=<hex hmac>")),
    request_body(content = WebhookEvent, content_type = "application/json"),
    responses((status = 200, body = WebhookAck), (status = 400, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn billing_webhook(
    State(service): State<AppState>,
    request: Request,
) -> ApiResult<Json<WebhookAck>> {
    let signature = request
        .headers()
        .get(crate::domain::billing::SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let limit = service.config().billing.max_body_bytes;
    let body = axum::body::to_bytes(request.into_body(), limit).await.map_err(|error| {
        if kernel::extract::is_too_large(&error) {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the webhook body is larger than {limit} bytes"),
            )
        } else {
            kernel::extract::body_problem(&error)
        }
    })?;
    let receipt = service.webhook(signature.as_deref(), &body).await?;
    Ok(Json(WebhookAck { received: true, duplicate: receipt == WebhookReceipt::Duplicate }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PersonView {
    id: Uuid,
    display_name: String,
    /// True when the caller follows them.
    followed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    id: Uuid,
    display_name: String,
    followers: u64,
    following: u64,
    /// True when the caller follows them.
    followed: bool,
    /// True when they follow the caller.
    follows_you: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FollowView {
    user: UserRef,
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    followed_at: DateTime<Utc>,
}

impl From<Follow> for FollowView {
    fn from(follow: Follow) -> Self {
        Self { user: UserRef::from(&follow.person), followed_at: follow.followed_at }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Matches people whose display name has a word starting with it (1 to 100
    /// characters, case-insensitive).
    #[param(min_length = 1, max_length = 100, pattern = "\\S")]
    q: String,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 2147483647)]
    offset: Option<u32>,
}

/// Find people by name.
#[utoipa::path(get, path = "/v1/users", tag = "people", security(("bearer" = [])),
    params(SearchQuery), responses((status = 200, body = Page<PersonView>), (status = 422, body = Problem)))]
async fn search_people(
    State(service): State<AppState>,
    caller: Caller,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<Page<PersonView>>> {
    let (limit, offset) = PageQuery { limit: query.limit, offset: query.offset }.resolve()?;
    let (people, total) = service.search(&caller, &query.q, limit, offset).await?;
    let items = people
        .into_iter()
        .map(|(person, followed): (Person, bool)| PersonView {
            id: person.id,
            display_name: person.display_name,
            followed,
        })
        .collect();
    Ok(Json(Page::of(items, total, limit, offset)))
}

/// Someone's profile: their name and follow counts.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = ProfileView), (status = 404, body = Problem)))]
async fn get_person(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ProfileView>> {
    let profile = service.profile(&caller, id).await?;
    Ok(Json(ProfileView {
        id: profile.person.id,
        display_name: profile.person.display_name,
        followers: profile.followers,
        following: profile.following,
        followed: profile.is_followed,
        follows_you: profile.follows_you,
    }))
}

async fn follow_page(
    service: &PeopleService,
    user_id: Uuid,
    page: PageQuery,
    followers: bool,
) -> ApiResult<Json<Page<FollowView>>> {
    let (limit, offset) = page.resolve()?;
    let (follows, total) = if followers {
        service.followers(user_id, limit, offset).await?
    } else {
        service.following(user_id, limit, offset).await?
    };
    Ok(Json(Page::of(follows.into_iter().map(FollowView::from).collect(), total, limit, offset)))
}

/// Who follows someone, most recent first.
#[utoipa::path(get, path = "/v1/users/{id}/followers", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path), PageQuery), responses((status = 200, body = Page<FollowView>), (status = 404, body = Problem)))]
async fn their_followers(
    State(service): State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<FollowView>>> {
    service.person(id).await?;
    follow_page(&service, id, page, true).await
}

/// Whom someone follows, most recent first.
#[utoipa::path(get, path = "/v1/users/{id}/following", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path), PageQuery), responses((status = 200, body = Page<FollowView>), (status = 404, body = Problem)))]
async fn their_following(
    State(service): State<AppState>,
    _caller: Caller,
    Path(id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<FollowView>>> {
    service.person(id).await?;
    follow_page(&service, id, page, false).await
}

/// Who follows the caller, most recent first.
#[utoipa::path(get, path = "/v1/me/followers", tag = "people", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = Page<FollowView>)))]
async fn my_followers(
    State(service): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<FollowView>>> {
    follow_page(&service, caller.user_id, page, true).await
}

/// Whom the caller follows, most recent first.
#[utoipa::path(get, path = "/v1/me/following", tag = "people", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = Page<FollowView>)))]
async fn my_following(
    State(service): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<FollowView>>> {
    follow_page(&service, caller.user_id, page, false).await
}

/// Follow someone (idempotent).
#[utoipa::path(put, path = "/v1/me/following/{user_id}", tag = "people", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn follow(
    State(service): State<AppState>,
    caller: Caller,
    Path(user_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    service.follow(&caller, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop following someone (idempotent).
#[utoipa::path(delete, path = "/v1/me/following/{user_id}", tag = "people", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn unfollow(
    State(service): State<AppState>,
    caller: Caller,
    Path(user_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    service.unfollow(&caller, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only unread notifications.
    #[serde(default)]
    unread_only: bool,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 2147483647)]
    offset: Option<u32>,
}

/// The list shape with the unread count.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationsPage {
    items: Vec<NotificationView>,
    total: u64,
    limit: u32,
    offset: u32,
    unread: u64,
}

/// The caller's notifications, most recently updated first.
#[utoipa::path(get, path = "/v1/me/notifications", tag = "people", security(("bearer" = [])),
    params(NotificationsQuery), responses((status = 200, body = NotificationsPage)))]
async fn notifications(
    State(service): State<AppState>,
    caller: Caller,
    Query(query): Query<NotificationsQuery>,
) -> ApiResult<Json<NotificationsPage>> {
    let (limit, offset) = PageQuery { limit: query.limit, offset: query.offset }.resolve()?;
    let page = service.notifications(&caller, limit, offset, query.unread_only).await?;
    Ok(Json(NotificationsPage {
        items: page.items.into_iter().map(NotificationView::from).collect(),
        total: page.total,
        limit,
        offset,
        unread: page.unread,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MarkRead {
    /// The notifications to mark read (at most 1000); every one when absent.
    #[schema(max_items = 1000)]
    ids: Option<Vec<Uuid>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Unread {
    unread: u64,
}

/// A payment provider's event, as much of it as Tonearm reads; other fields are ignored,
/// and so are event types it does not act on. For the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
struct WebhookEvent {
    /// The provider's event id, which makes a redelivery change nothing.
    #[schema(min_length = 1, max_length = 255)]
    id: String,
    /// e.g. `checkout.session.completed`, `invoice.paid`, `customer.subscription.deleted`.
    #[schema(rename = "type")]
    event_type: String,
    data: WebhookEventData,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct WebhookEventData {
    /// The object the event is about, in the provider's shape (read only for the event
    /// types Tonearm acts on).
    #[schema(value_type = Value)]
    object: serde_json::Value,
}

/// Mark notifications read.
#[utoipa::path(post, path = "/v1/me/notifications/read", tag = "people", security(("bearer" = [])),
    request_body = MarkRead, responses((status = 200, body = Unread), (status = 422, body = Problem)))]
async fn mark_read(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<MarkRead>,
) -> ApiResult<Json<Unread>> {
    let unread = service.mark_read(&caller, body.ids.as_deref()).await?;
    Ok(Json(Unread { unread }))
}

/// The live channel (Server-Sent Events).
///
/// Events: `ready` (`{unread}`, first), `notification` (a notification as the list shows
/// it), `unread` (`{unread}` after marking read), `now_playing` (what someone the caller
/// follows is playing, with `expires_at`) and `presence_ended` (`{user_id}`). A comment
/// every few seconds keeps idle connections open. Send `Accept: text/event-stream` (as
/// `EventSource` does), which tells proxies on the way that the response is a stream. On
/// reconnecting, read `/v1/me/notifications` for what arrived in between.
#[utoipa::path(get, path = "/v1/me/live", tag = "people", security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "A stream of events")))]
async fn live(State(service): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let (subscription, first) = service.live(&caller).await?;
    let keep_alive = Duration::from_secs(service.config().live_keep_alive_secs.max(1));
    let stream = events(service, caller.user_id, subscription, first);
    let mut response =
        Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive)).into_response();
    // Proxies that buffer responses (nginx) must pass events on at once.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

struct LiveState {
    service: AppState,
    user_id: Uuid,
    subscription: Subscription,
    first: std::vec::IntoIter<crate::live::LiveMessage>,
}

fn events(
    service: AppState,
    user_id: Uuid,
    subscription: Subscription,
    first: Vec<crate::live::LiveMessage>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = LiveState { service, user_id, subscription, first: first.into_iter() };
    futures::stream::unfold(state, |mut state| async move {
        if let Some(message) = state.first.next() {
            let event = Event::default().event(&message.event).data(&message.data);
            return Some((Ok(event), state));
        }
        loop {
            let message = state.subscription.next().await?;
            if message.event == FOLLOWING_CHANGED {
                match state.service.live_channels(state.user_id).await {
                    Ok(channels) => state.subscription.set_channels(channels),
                    Err(error) => tracing::warn!(%error, "cannot refresh a live stream's follows"),
                }
                continue;
            }
            let event = Event::default().event(&message.event).data(&message.data);
            return Some((Ok(event), state));
        }
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Heartbeat {
    track_id: Uuid,
    /// How far into the track the player is.
    #[serde(default)]
    #[schema(maximum = 86_400_000)]
    position_ms: u64,
    #[serde(default)]
    paused: bool,
}

/// Say what the caller is playing; followers see it until the presence TTL passes
/// without another heartbeat (unless the caller hides their presence).
#[utoipa::path(put, path = "/v1/me/now-playing", tag = "people", security(("bearer" = [])),
    request_body = Heartbeat,
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn heartbeat(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<Heartbeat>,
) -> ApiResult<StatusCode> {
    service.heartbeat(&caller, body.track_id, body.position_ms, body.paused).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Say the caller stopped playing.
#[utoipa::path(delete, path = "/v1/me/now-playing", tag = "people", security(("bearer" = [])),
    responses((status = 204)))]
async fn stop_playing(State(service): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    service.stop_playing(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the people the caller follows are playing, most recent first.
#[utoipa::path(get, path = "/v1/me/following/now-playing", tag = "people", security(("bearer" = [])),
    responses((status = 200, body = Page<NowPlaying>)))]
async fn friends_playing(
    State(service): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Page<NowPlaying>>> {
    let playing = service.friends_playing(&caller).await?;
    let total = playing.len() as u64;
    let limit = u32::try_from(playing.len()).unwrap_or(u32::MAX);
    Ok(Json(Page::of(playing, total, limit, 0)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresenceSettings {
    /// Whether followers see what the caller is playing.
    visible: bool,
}

/// Whether followers see what the caller is playing.
#[utoipa::path(get, path = "/v1/me/presence", tag = "people", security(("bearer" = [])),
    responses((status = 200, body = PresenceSettings)))]
async fn get_presence(
    State(service): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<PresenceSettings>> {
    Ok(Json(PresenceSettings { visible: service.presence_visible(&caller).await? }))
}

/// Show or hide what the caller is playing; hiding ends what shows now.
#[utoipa::path(put, path = "/v1/me/presence", tag = "people", security(("bearer" = [])),
    request_body = PresenceSettings, responses((status = 200, body = PresenceSettings)))]
async fn set_presence(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<PresenceSettings>,
) -> ApiResult<Json<PresenceSettings>> {
    Ok(Json(PresenceSettings {
        visible: service.set_presence_visible(&caller, body.visible).await?,
    }))
}
