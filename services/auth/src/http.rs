//! The auth service's HTTP edge: request and response shapes, handlers, error mapping.

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use kernel::{
    Problem,
    api::{Page, PageQuery, millis},
    caller::{Caller, ClientInfo},
    grant::{Role, Tier},
    http::{Json, Path, Query},
};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    domain::{AuthError, Session, User},
    service::{AuthService, Registration, SignedIn},
};

type AppState = Arc<AuthService>;

#[derive(OpenApi)]
#[openapi(tags((name = "auth", description = "Accounts, sign-in and sessions")))]
struct AuthApi;

/// The public routes and their OpenAPI description.
pub fn router(service: Arc<AuthService>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, api) = routes().split_for_parts();
    (router.with_state(service), api)
}

/// The OpenAPI description of the public routes, without a running service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(AuthApi::openapi())
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me, update_me, delete_me))
        .routes(routes!(change_password))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(jwks))
}

/// Routes only the gateway calls, never exposed publicly.
pub fn internal_router(service: Arc<AuthService>) -> Router {
    Router::new()
        .route("/internal/v1/sessions/{id}", get(internal_grant))
        .route("/internal/v1/users/{id}", get(internal_account))
        .route("/internal/v1/users", get(internal_account_by_email))
        .with_state(service)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    email: String,
    #[schema(example = "correct horse battery staple", min_length = 8, max_length = 128)]
    password: String,
    #[schema(example = "Ada")]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\s\\u0000-\\u001f\\u007f-\\u009f]([^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f])?$"
    )]
    display_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMeRequest {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\s\\u0000-\\u001f\\u007f-\\u009f]([^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f])?$"
    )]
    display_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteMeRequest {
    password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    id: Uuid,
    email: String,
    display_name: String,
    tier: Tier,
    role: Role,
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    /// When paid premium ends; absent unless the premium tier was paid for.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "optional_millis")]
    #[schema(value_type = Option<String>, format = DateTime)]
    premium_until: Option<DateTime<Utc>>,
}

fn optional_millis<S: serde::Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => millis(time, serializer),
        None => serializer.serialize_none(),
    }
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            tier: user.tier,
            role: user.role,
            created_at: user.created_at,
            premium_until: user.premium_until,
        }
    }
}

/// An account as other services ask about it.
#[derive(Debug, Serialize)]
struct AccountView {
    id: Uuid,
    display_name: String,
    email: String,
    #[serde(serialize_with = "millis")]
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    user: UserView,
    /// A JWT (EdDSA) to send as `Authorization: Bearer …`.
    access_token: String,
    /// Opaque; exchange it at `/v1/auth/refresh` for a new pair. Single use.
    refresh_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
}

impl From<SignedIn> for TokenResponse {
    fn from(signed_in: SignedIn) -> Self {
        Self {
            user: signed_in.user.into(),
            access_token: signed_in.access_token,
            refresh_token: signed_in.refresh_token.token().to_owned(),
            token_type: "Bearer",
            expires_in: signed_in.expires_in.as_secs(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    id: Uuid,
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "millis")]
    #[schema(value_type = String, format = DateTime)]
    last_seen_at: DateTime<Utc>,
    user_agent: Option<String>,
    /// True for the session the request was made with.
    current: bool,
}

impl SessionView {
    fn new(session: Session, current: Uuid) -> Self {
        Self {
            current: session.id == current,
            id: session.id,
            created_at: session.created_at,
            last_seen_at: session.last_seen_at,
            user_agent: session.user_agent,
        }
    }
}

/// The edge's one mapping from domain errors to statuses; no wildcard arm, so a new
/// variant must be decided here.
impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Invalid { .. } => Problem::unprocessable(error.to_string()),
            AuthError::EmailTaken => Problem::conflict(error.to_string()).with_type("email-taken"),
            AuthError::InvalidCredentials => Problem::unauthorized(error.to_string()),
            // The token is fine (401 would tell a client to sign in again): the request
            // is refused for want of the right password.
            AuthError::WrongPassword { .. } => Problem::forbidden(error.to_string()),
            AuthError::Throttled { retry_after } => {
                Problem::too_many_requests(retry_after.as_secs().max(1))
            }
            AuthError::InvalidRefreshToken => Problem::unauthorized(error.to_string()),
            AuthError::SessionNotFound | AuthError::UserNotFound => {
                Problem::not_found(error.to_string())
            }
            AuthError::Store(ref store) if store.is_unavailable() => {
                Problem::unavailable("the account store is unavailable; try again shortly")
            }
            AuthError::Store(_) | AuthError::Signing(_) => Problem::internal(&error),
        }
    }
}

type ApiResult<T> = Result<T, Problem>;

/// Create an account and sign in.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, body = TokenResponse),
        (status = 400, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem),
    ))]
async fn register(
    State(service): State<AppState>,
    client: ClientInfo,
    Json(body): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    let registration = Registration {
        email: &body.email,
        password: &body.password,
        display_name: &body.display_name,
    };
    let signed_in = service.register(registration, &client).await?;
    Ok((StatusCode::CREATED, Json(signed_in.into())))
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = Problem, description = "The same answer whether or not the email exists"),
        (status = 429, body = Problem, description = "Too many failed attempts for this email or address"),
    ))]
async fn login(
    State(service): State<AppState>,
    client: ClientInfo,
    Json(body): Json<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(service.login(&body.email, &body.password, &client).await?.into()))
}

/// Exchange a refresh token for a new pair; the presented token is retired.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = Problem, description = "Unknown, expired or already used; a reused token revokes its session"),
    ))]
async fn refresh(
    State(service): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(service.refresh(&body.refresh_token).await?.into()))
}

/// Sign out: the session and its tokens stop working at once.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<StatusCode> {
    service.logout(&caller, &body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = Problem)))]
async fn me(State(service): State<AppState>, caller: Caller) -> ApiResult<Json<UserView>> {
    Ok(Json(service.me(&caller).await?.into()))
}

/// Change the display name.
#[utoipa::path(patch, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses((status = 200, body = UserView), (status = 422, body = Problem)))]
async fn update_me(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<UpdateMeRequest>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(service.rename(&caller, &body.display_name).await?.into()))
}

/// Delete the account; `user.deleted` is published.
#[utoipa::path(delete, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    request_body = DeleteMeRequest,
    responses((status = 204), (status = 401, body = Problem, description = "Wrong password")))]
async fn delete_me(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<DeleteMeRequest>,
) -> ApiResult<StatusCode> {
    service.delete_account(&caller, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password; every other session is revoked.
#[utoipa::path(post, path = "/v1/me/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn change_password(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    service.change_password(&caller, &body.current_password, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user's live sessions, newest first.
#[utoipa::path(get, path = "/v1/me/sessions", tag = "auth", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<SessionView>)))]
async fn list_sessions(
    State(service): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<SessionView>>> {
    let (limit, offset) = page.resolve()?;
    let sessions = service.sessions(&caller).await?;
    let views = sessions.into_iter().map(|s| SessionView::new(s, caller.session_id)).collect();
    Ok(Json(Page::slice(views, limit, offset)))
}

/// Revoke one of the user's sessions.
#[utoipa::path(delete, path = "/v1/me/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn revoke_session(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    service.revoke_session(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "A JSON Web Key Set", content_type = "application/json")))]
async fn jwks(State(service): State<AppState>) -> Response {
    ([(axum::http::header::CACHE_CONTROL, "public, max-age=300")], axum::Json(service.jwks()))
        .into_response()
}

async fn internal_grant(
    State(service): State<AppState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<kernel::grant::SessionGrant>> {
    service.grant(id).await?.map(Json).ok_or_else(|| Problem::not_found("no live session"))
}

async fn internal_account(
    State(service): State<AppState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<AccountView>> {
    let user = service.user(id).await?.ok_or_else(|| Problem::not_found("no such user"))?;
    Ok(Json(AccountView::from(user)))
}

#[derive(Debug, Deserialize)]
struct EmailQuery {
    email: String,
}

async fn internal_account_by_email(
    State(service): State<AppState>,
    Query(query): Query<EmailQuery>,
) -> ApiResult<Json<AccountView>> {
    match service.user_by_email(&query.email).await {
        Ok(user) => Ok(Json(AccountView::from(user))),
        Err(AuthError::UserNotFound | AuthError::Invalid { .. }) => {
            Err(Problem::not_found("no such user"))
        }
        Err(other) => Err(other.into()),
    }
}

impl From<User> for AccountView {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            display_name: user.display_name,
            email: user.email,
            created_at: user.created_at,
        }
    }
}
