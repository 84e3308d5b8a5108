//! Signed media (playlists and segments) bypasses the API budgets: a player fetches a
//! segment every few seconds per stream, and its URL's signature already authorises it.
//! What remains is a per-IP guard against floods, kept in this process.

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc};

use axum::{
    Router,
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::any,
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};
use kernel::Problem;

use crate::{GatewayConfig, upstream::Upstream};

/// Per-IP token buckets; idle addresses are dropped once the table grows.
pub struct MediaGuard {
    limiter: DefaultKeyedRateLimiter<String>,
    trust_forwarded_for: bool,
}

/// Addresses kept before buckets that are full again are pruned.
const PRUNE_ABOVE: usize = 100_000;

impl MediaGuard {
    pub fn new(config: &GatewayConfig) -> Self {
        let rate = NonZeroU32::new(config.media_per_ip_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.media_burst_per_ip).unwrap_or(rate);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            trust_forwarded_for: config.trust_forwarded_for,
        }
    }
}

/// The media routes behind the guard: the service's own router in one process, or a
/// proxy to it across the network.
pub fn routes(upstream: Upstream, guard: Arc<MediaGuard>) -> Router {
    let router = match upstream {
        Upstream::Local(router) => router,
        Upstream::Remote(service) => {
            Router::new().route("/media/{*path}", any(crate::upstream::proxy).with_state(service))
        }
    };
    router.layer(middleware::from_fn_with_state(guard, admit_media))
}

async fn admit_media(
    State(guard): State<Arc<MediaGuard>>,
    request: Request,
    next: Next,
) -> Response {
    let connected =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_string());
    let address = crate::client_address(request.headers(), connected, guard.trust_forwarded_for);
    if guard.limiter.len() > PRUNE_ABOVE {
        guard.limiter.retain_recent();
    }
    match guard.limiter.check_key(&address) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            metrics::counter!("media_requests_throttled_total").increment(1);
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let retry_after = wait.as_secs().max(1);
            let mut response = Problem::too_many_requests(retry_after).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
    }
}
