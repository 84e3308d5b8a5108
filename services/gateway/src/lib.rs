//! The gateway is Tonearm's only public entry. It routes each documented path to the
//! service that owns it (in this process or across the network), verifies access tokens
//! and the live session behind them, hands the caller's identity to services, spends
//! per-tier rate budgets, limits request bodies, answers CORS, and serves the API docs
//! and the web player.

pub mod breaker;
pub mod config;
pub mod document;
pub mod home;
pub mod limiter;
pub mod media;
pub mod request_events;
pub mod upstream;
pub mod verifier;
pub mod web;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use http_body_util::Limited;
use kernel::{
    Problem,
    background::Background,
    cache::Cache,
    caller::{self, Caller},
    grant::{AccessClaims, SessionDirectory, SessionGrant, Tier},
    http::Probe,
};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::{Config, SwaggerUi};

pub use config::{GatewayConfig, RateLimits};
use limiter::{Budget, Decision, RateLimiter};
pub use media::MediaUpstream;
pub use upstream::{RemoteDirectory, RemoteService, Upstream, UpstreamPolicy, UpstreamProbe};
use verifier::{TokenError, TokenVerifier};

/// A service the gateway fronts. A remote service's public paths are those its OpenAPI
/// document lists, so an endpoint is routable exactly when it is documented.
pub struct Route {
    pub upstream: Upstream,
    pub api: OpenApi,
}

pub struct GatewayParts {
    pub config: GatewayConfig,
    pub directory: Arc<dyn SessionDirectory>,
    pub cache: Arc<dyn Cache>,
    pub routes: Vec<Route>,
    /// The whole public API, served at `/v1/openapi.json` and browsable at `/docs`.
    pub api: OpenApi,
    pub probes: Vec<Arc<dyn Probe>>,
    /// Paths (as documented, e.g. `/v1/tracks`) that accept bodies larger than
    /// `body_limit_bytes`, with their own limit.
    pub route_body_limits: Vec<(String, usize)>,
    /// The service behind signed media URLs (`/media/…`), if any: mounted outside the API
    /// budgets, behind a per-IP guard.
    pub media: Option<MediaUpstream>,
    /// Where each answered API request goes as a sample in `api.request` events, for
    /// analytics; `None` records nothing.
    pub request_events: Option<Arc<dyn bus::EventBus>>,
    /// Proves the identity the gateway hands to services across the network (see
    /// `kernel::internal`); `None` in one process, where nothing crosses a network.
    pub internal_key: Option<kernel::internal::InternalKey>,
}

struct Gateway {
    verifier: TokenVerifier,
    limiter: RateLimiter,
    trust_forwarded_for: bool,
    body_limit: usize,
    /// Routes that take larger bodies than the default (uploads), by matched path.
    route_body_limits: std::collections::HashMap<String, usize>,
    internal_key: Option<kernel::internal::InternalKey>,
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Builds the gateway's router; serve it with [`kernel::http::Server`]. With
/// `request_events`, also the task that publishes them: stop it after the server, so that
/// the last requests' samples go out.
pub fn router(parts: GatewayParts) -> (Router, Option<Background>) {
    let gateway = Arc::new(Gateway {
        verifier: TokenVerifier::new(parts.directory, &parts.config.issuer, &parts.config.audience),
        limiter: RateLimiter::new(parts.cache, parts.config.rate_limits),
        trust_forwarded_for: parts.config.trust_forwarded_for,
        body_limit: parts.config.body_limit_bytes,
        route_body_limits: parts.route_body_limits.into_iter().collect(),
        internal_key: parts.internal_key,
    });
    let mut api = Router::new();
    for route in parts.routes {
        api = match route.upstream {
            // In one process the service's own router serves its paths directly.
            Upstream::Local(service) => api.merge(service),
            Upstream::Remote(service) => {
                let service = Arc::new(service);
                route.api.paths.paths.keys().fold(api, |api, path| {
                    api.route(path, any(upstream::proxy).with_state(service.clone()))
                })
            }
        };
    }
    // The home page's parts are asked of the services' routes directly: the page's own
    // request was admitted (and paid for) once.
    let deadline = Duration::from_millis(parts.config.home_part_timeout_ms);
    let (home, home_api) = home::router(api.clone(), deadline);
    let api = api.merge(home);
    let mut document = parts.api;
    document.merge(home_api);
    let served = Arc::new(document::complete(&document));
    // Only the service routes are API traffic; everything else is marked so that the
    // request recorder, which must wrap the whole router to see unmatched requests,
    // leaves it out.
    let unrecorded = || middleware::map_response(request_events::unrecorded);
    let viewer: Router = SwaggerUi::new("/docs").config(Config::new(["/v1/openapi.json"])).into();
    let docs = Router::new()
        .route("/v1/openapi.json", get(move || async move { axum::Json(served.as_ref().clone()) }))
        .merge(viewer.layer(middleware::map_response(docs_policy)))
        .route_layer(unrecorded());
    let api = api.merge(docs).layer(middleware::from_fn_with_state(gateway, admit));
    let ops = kernel::http::ops_router(parts.probes).route_layer(unrecorded());
    let router = kernel::http::observe(api.merge(ops).layer(cors(&parts.config)));
    let (router, flusher) = match parts.request_events {
        Some(bus) => {
            let (recorder, flusher) = request_events::start(bus, &parts.config);
            let recorded =
                router.layer(middleware::from_fn_with_state(recorder, request_events::record));
            (recorded, Some(flusher))
        }
        None => (router, None),
    };
    // Media is the hot path: it passes its guard and CORS, and none of the API's layers
    // (token checks, budgets, request samples, trace spans).
    let router = match parts.media {
        Some(upstream) => {
            let guard = Arc::new(media::MediaGuard::new(&parts.config));
            let media = media::service(upstream, guard, cors(&parts.config));
            kernel::http::split(kernel::api::MEDIA_PREFIX, media, router)
        }
        None => router,
    };
    // The player owns every path the API does not.
    let router = match &parts.config.web_dir {
        Some(dir) => web::mount(router, document.paths.paths.keys().map(String::as_str), dir),
        None => router,
    };
    (router, flusher)
}

/// The docs viewer's pages load nothing but what this server sends: its assets are built
/// into the binary. (Swagger UI styles some elements inline.)
const DOCS_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'",
);

async fn docs_policy(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, DOCS_POLICY);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn cors(config: &GatewayConfig) -> CorsLayer {
    let origins = if config.cors_allowed_origins.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(config.cors_allowed_origins.iter().filter_map(|o| o.parse().ok()))
    };
    CorsLayer::new().allow_origin(origins).allow_methods(Any).allow_headers(Any).expose_headers([
        RATELIMIT_LIMIT,
        RATELIMIT_REMAINING,
        RATELIMIT_RESET,
        header::RETRY_AFTER,
        kernel::http::REQUEST_ID,
    ])
}

/// Who is calling, as far as the token says.
enum Identity {
    Anonymous,
    User(SessionGrant),
    Refused(Problem),
}

/// Every API request passes here: identity, budget, body limit, then the service.
async fn admit(State(gateway): State<Arc<Gateway>>, mut request: Request, next: Next) -> Response {
    for name in caller::IDENTITY_HEADERS {
        request.headers_mut().remove(name);
    }
    request.headers_mut().remove(kernel::internal::PROOF);
    let client_ip = gateway.client_ip(&request);
    let (identity, decision) = gateway.identify_and_spend(request.headers(), &client_ip).await;
    let mut response = if !decision.allowed {
        Problem::too_many_requests(decision.reset_secs).into_response()
    } else if let Some(problem) = gateway.oversized(&request) {
        problem.into_response()
    } else {
        match identity {
            Identity::Refused(problem) => problem.into_response(),
            Identity::Anonymous => next.run(gateway.prepare(request, None, &client_ip)).await,
            Identity::User(grant) => {
                next.run(gateway.prepare(request, Some(&grant), &client_ip)).await
            }
        }
    };
    stamp(response.headers_mut(), decision);
    response
}

/// The client's address: the first `X-Forwarded-For` hop behind a trusted proxy, else the
/// connection's peer.
fn client_address(headers: &HeaderMap, connected: Option<String>, trust_forwarded: bool) -> String {
    let forwarded = forwarded_for(headers, trust_forwarded).map(str::to_owned);
    forwarded.or(connected).unwrap_or_else(|| "unknown".to_owned())
}

/// The first `X-Forwarded-For` hop, when a trusted proxy sets it.
fn forwarded_for(headers: &HeaderMap, trust_forwarded: bool) -> Option<&str> {
    trust_forwarded
        .then(|| headers.get("x-forwarded-for"))
        .flatten()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(str::trim)
}

fn stamp(headers: &mut HeaderMap, decision: Decision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(decision.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(decision.reset_secs));
}

impl Gateway {
    /// Who is calling, and their budget spent. A signed token names its user before the
    /// session is looked up, so the session and the user's budget are asked of the shared
    /// cache together (one round trip, pipelined); anything else spends the address's.
    async fn identify_and_spend(
        &self,
        headers: &HeaderMap,
        client_ip: &str,
    ) -> (Identity, Decision) {
        let by_address = || Budget::Address(client_ip.to_owned());
        let claims = match self.verified_claims(headers).await {
            Ok(Some(claims)) => claims,
            Ok(None) => return (Identity::Anonymous, self.limiter.spend(&by_address()).await),
            Err(problem) => {
                return (Identity::Refused(problem), self.limiter.spend(&by_address()).await);
            }
        };
        let user_id = claims.sub.to_string();
        let window = limiter::user_key(&user_id);
        let (identity, hit) =
            tokio::join!(self.session(claims.sid, claims.sub), self.limiter.count(&window));
        let tier = match &identity {
            Identity::User(grant) => grant.tier,
            Identity::Anonymous | Identity::Refused(_) => Tier::Free,
        };
        let decision = self.limiter.decide(&Budget::User { id: user_id, tier }, hit);
        (identity, decision)
    }

    /// The claims of a valid bearer token; `None` without one.
    async fn verified_claims(&self, headers: &HeaderMap) -> Result<Option<AccessClaims>, Problem> {
        let Some(authorization) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = authorization.to_str().ok().and_then(|value| {
            value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))
        });
        let Some(token) = token.map(str::trim) else {
            return Err(Problem::unauthorized("the Authorization header must be `Bearer <token>`"));
        };
        match self.verifier.verify(token).await {
            Ok(claims) => Ok(Some(claims)),
            Err(TokenError::KeysUnavailable(reason)) => {
                tracing::warn!(%reason, "cannot verify tokens");
                Err(Problem::unavailable("sign-in is unavailable; try again shortly"))
            }
            Err(error) => Err(Problem::unauthorized(error.to_string())),
        }
    }

    /// The live session a token belongs to.
    async fn session(&self, session_id: uuid::Uuid, user_id: uuid::Uuid) -> Identity {
        match self.verifier.directory().grant(session_id).await {
            Ok(Some(grant)) if grant.user_id == user_id => Identity::User(grant),
            Ok(_) => {
                Identity::Refused(Problem::unauthorized("the session has ended; sign in again"))
            }
            Err(error) => {
                tracing::warn!(%error, "cannot check sessions");
                Identity::Refused(Problem::unavailable("sign-in is unavailable; try again shortly"))
            }
        }
    }

    fn client_ip(&self, request: &Request) -> String {
        let connected = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_string());
        client_address(request.headers(), connected, self.trust_forwarded_for)
    }

    /// The body limit of the route a request matched.
    fn body_limit(&self, request: &Request) -> usize {
        request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .and_then(|path| self.route_body_limits.get(path.as_str()))
            .copied()
            .unwrap_or(self.body_limit)
    }

    fn oversized(&self, request: &Request) -> Option<Problem> {
        let limit = self.body_limit(request);
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok())?;
        (declared > limit).then(|| {
            Problem::new(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {limit} bytes"),
            )
        })
    }

    /// Sets the identity headers services trust and bounds the body even when its
    /// length was not declared.
    fn prepare(&self, request: Request, grant: Option<&SessionGrant>, client_ip: &str) -> Request {
        let limit = self.body_limit(&request);
        let (mut parts, body) = request.into_parts();
        if let Some(grant) = grant {
            for (name, value) in Caller::headers(grant) {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    parts.headers.insert(name, value);
                }
            }
        }
        if let Ok(value) = HeaderValue::from_str(client_ip) {
            parts.headers.insert(caller::CLIENT_IP, value);
        }
        if let Some(key) = &self.internal_key {
            key.prove_now(&mut parts.headers);
        }
        Request::from_parts(parts, Body::new(Limited::new(body, limit)))
    }
}
