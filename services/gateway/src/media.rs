//! Signed media (playlists and segments) bypasses the API budgets: a player fetches a
//! segment every few seconds per stream, and its URL's signature already authorises it.
//! What remains is a per-IP guard against floods, kept in this process.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use axum::{
    Router,
    extract::{ConnectInfo, Request},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::any,
};
use futures::future::{Either, Ready, ready};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};
use kernel::Problem;
use tower::{Layer as _, Service, util::BoxCloneSyncService};
use tower_http::cors::CorsLayer;

use crate::{GatewayConfig, upstream::RemoteService};

/// Per-IP token buckets; idle addresses are dropped once the table grows.
pub struct MediaGuard {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    trust_forwarded_for: bool,
    /// Requests checked, so that the table's size (a walk over every shard) is looked at
    /// only now and then.
    checked: AtomicU64,
}

/// How often, in requests, the table's size is looked at.
const PRUNE_CHECK_EVERY: u64 = 4096;

/// Addresses kept before buckets that are full again are pruned.
const PRUNE_ABOVE: usize = 100_000;

impl MediaGuard {
    /// The client's address, as [`crate::client_address`] finds it, without allocating:
    /// this runs on every segment.
    fn client_ip(&self, request: &Request) -> IpAddr {
        let connected =
            request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        let forwarded = crate::forwarded_for(request.headers(), self.trust_forwarded_for)
            .and_then(|ip| ip.parse().ok());
        forwarded.or(connected).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    pub fn new(config: &GatewayConfig) -> Self {
        let rate = NonZeroU32::new(config.media_per_ip_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.media_burst_per_ip).unwrap_or(rate);
        metrics::counter!("media_requests_throttled_total").increment(0);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            trust_forwarded_for: config.trust_forwarded_for,
            checked: AtomicU64::new(0),
        }
    }
}

/// Where signed media is answered.
pub enum MediaUpstream {
    /// A service in this process, called directly: the hot path needs no router.
    Local(kernel::http::HotService),
    /// The streaming service across the network, through the proxy.
    Remote(RemoteService),
}

/// Signed media behind the guard, observed like every route (request ids, metrics,
/// problem+json) but outside the API's layers.
pub fn service(
    upstream: MediaUpstream,
    guard: Arc<MediaGuard>,
    cors: CorsLayer,
) -> kernel::http::HotService {
    let inner = match upstream {
        MediaUpstream::Local(service) => service,
        MediaUpstream::Remote(service) => BoxCloneSyncService::new(
            Router::new()
                .route("/media/{*path}", any(crate::upstream::proxy).with_state(Arc::new(service))),
        ),
    };
    kernel::http::observe_service(kernel::api::MEDIA_ROUTE, cors.layer(Guarded { guard, inner }))
}

/// A media service behind the per-IP guard.
#[derive(Clone)]
struct Guarded<S> {
    guard: Arc<MediaGuard>,
    inner: S,
}

impl<S> Service<Request> for Guarded<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.guard.refusal(&request) {
            None => Either::Right(self.inner.call(request)),
            Some(refused) => Either::Left(ready(Ok(refused))),
        }
    }
}

impl MediaGuard {
    /// Spends one token of the caller's bucket; past the budget, the 429 to answer.
    fn refusal(&self, request: &Request) -> Option<Response> {
        let address = self.client_ip(request);
        if self.checked.fetch_add(1, Ordering::Relaxed).is_multiple_of(PRUNE_CHECK_EVERY)
            && self.limiter.len() > PRUNE_ABOVE
        {
            self.limiter.retain_recent();
        }
        let not_until = self.limiter.check_key(&address).err()?;
        metrics::counter!("media_requests_throttled_total").increment(1);
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        let retry_after = wait.as_secs().max(1);
        let mut response = Problem::too_many_requests(retry_after).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        Some(response)
    }
}
