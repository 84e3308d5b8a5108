//! Where the gateway sends a request: a service's router in this process (`tonearm up`)
//! or a service across the network (`tonearm serve gateway`), and the session directory
//! to match.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, Method, header},
    response::{IntoResponse, Response},
};
use futures::TryStreamExt;
use kernel::{
    Problem,
    cache::Cache,
    grant::{self, DirectoryError, SessionDirectory, SessionGrant},
};
use uuid::Uuid;

use kernel::internal::InternalKey;

use crate::breaker::{Admission, Breaker};

/// A service behind the gateway.
#[derive(Clone)]
pub enum Upstream {
    Local(Router),
    Remote(RemoteService),
}

/// How the gateway treats a remote service: deadlines, retries and the breaker.
#[derive(Debug, Clone)]
pub struct UpstreamPolicy {
    /// The deadline of a whole request (event streams: of each read).
    pub timeout: Duration,
    /// Further attempts, on other replicas first, at a request that is safe to repeat
    /// (GET, HEAD, OPTIONS, PUT, DELETE without a body) and met a transport failure.
    pub retries: u32,
    /// Consecutive transport failures that open a replica's breaker, and for how long.
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    /// Proves the gateway's own calls (session grants, keys) to the services.
    pub key: Option<InternalKey>,
}

impl UpstreamPolicy {
    pub fn from_config(config: &crate::GatewayConfig, key: Option<InternalKey>) -> Self {
        Self {
            timeout: Duration::from_secs(config.upstream_timeout_secs),
            retries: config.upstream_retries,
            breaker_failures: config.upstream_breaker_failures,
            breaker_open: Duration::from_secs(config.upstream_breaker_open_secs),
            key,
        }
    }
}

/// One replica of a remote service.
#[derive(Debug)]
struct Replica {
    /// Parsed once: a request's URL is this with the path and query swapped, which spares
    /// parsing the scheme and host (and their IDNA checks) on every call.
    base: url::Url,
    breaker: Breaker,
}

/// What the gateway counts per remote service, by `upstream`.
const FAILURES: &str = "gateway_upstream_failures_total";
const RETRIES: &str = "gateway_upstream_retries_total";
const BREAKERS_OPENED: &str = "gateway_breaker_opened_total";
const BREAKER_REJECTIONS: &str = "gateway_breaker_rejections_total";

impl Replica {
    /// The replica's URL for a path and query (`/v1/me?x=1`) under its base path.
    fn url(&self, path_and_query: &str) -> url::Url {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let mut url = self.base.clone();
        match self.base.path().trim_end_matches('/') {
            "" => url.set_path(path),
            prefix => url.set_path(&format!("{prefix}{path}")),
        }
        url.set_query(query);
        url
    }
}

/// Why a remote service could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("`{url}` is not a base URL: {reason}")]
    Url { url: String, reason: String },
    #[error(transparent)]
    Client(#[from] reqwest::Error),
}

/// A service reached over HTTP, at one or more replicas (`http://a:8082,http://b:8082`),
/// taken in turn.
#[derive(Clone)]
pub struct RemoteService {
    pub name: String,
    replicas: Arc<[Replica]>,
    turn: Arc<AtomicUsize>,
    retries: u32,
    key: Option<InternalKey>,
    pub client: reqwest::Client,
    /// For event streams, which last as long as the client stays: no deadline for the
    /// whole response, only for each read (the service sends keep-alives well within it).
    pub streams: reqwest::Client,
}

impl RemoteService {
    /// `base_urls` is one base URL, or several separated by commas (the replicas).
    pub fn new(
        name: &str,
        base_urls: &str,
        policy: &UpstreamPolicy,
    ) -> Result<Self, UpstreamError> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let streams = reqwest::Client::builder()
            .read_timeout(policy.timeout)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let replicas = base_urls
            .split(',')
            .map(|url| url.trim().trim_end_matches('/'))
            .filter(|url| !url.is_empty())
            .map(|url| {
                let base = url::Url::parse(url)
                    .map_err(|e| e.to_string())
                    .and_then(|base| match base.scheme() {
                        "http" | "https" if base.has_host() => Ok(base),
                        _ => Err("it must be http(s)://host[:port][/path]".to_owned()),
                    })
                    .map_err(|reason| UpstreamError::Url { url: url.to_owned(), reason })?;
                Ok(Replica {
                    base,
                    breaker: Breaker::new(policy.breaker_failures, policy.breaker_open),
                })
            })
            .collect::<Result<Vec<_>, UpstreamError>>()?;
        // The service's failure counters start at 0, so dashboards and alerts see them before
        // the first failure.
        for counter in [FAILURES, RETRIES, BREAKERS_OPENED, BREAKER_REJECTIONS] {
            metrics::counter!(counter, "upstream" => name.to_owned()).increment(0);
        }
        Ok(Self {
            name: name.to_owned(),
            replicas: replicas.into(),
            turn: Arc::default(),
            retries: policy.retries,
            key: policy.key.clone(),
            client,
            streams,
        })
    }

    /// The next replica whose breaker lets a request through, or how long until one will.
    fn pick(&self) -> Result<&Replica, Duration> {
        let now = Instant::now();
        let count = self.replicas.len();
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut soonest = Duration::from_secs(1);
        for offset in 0..count {
            let replica = &self.replicas[(first + offset) % count];
            match replica.breaker.admit(now) {
                Admission::Go => return Ok(replica),
                Admission::Refused { retry_after } => soonest = soonest.min(retry_after),
            }
        }
        Err(soonest)
    }

    fn failed(&self, replica: &Replica, error: &reqwest::Error) {
        tracing::warn!(service = %self.name, replica = %replica.base, %error, "upstream failed");
        metrics::counter!(FAILURES, "upstream" => self.name.clone()).increment(1);
        if replica.breaker.failed(Instant::now()) {
            tracing::warn!(service = %self.name, replica = %replica.base, "breaker open");
            metrics::counter!(BREAKERS_OPENED, "upstream" => self.name.clone()).increment(1);
        }
    }

    /// Sends what `build` makes for a replica to the next replica whose breaker lets it
    /// through, and after a transport failure to the next, `attempts` times in all.
    async fn send(
        &self,
        attempts: u32,
        mut build: impl FnMut(&Replica) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Unanswered> {
        let attempts = attempts.max(1);
        let mut last = String::from("no replica");
        for attempt in 0..attempts {
            let replica = self.pick().map_err(Unanswered::BreakersOpen)?;
            match build(replica).send().await {
                Ok(reply) => {
                    replica.breaker.succeeded();
                    return Ok(reply);
                }
                Err(error) => {
                    self.failed(replica, &error);
                    last = error.to_string();
                    if attempt + 1 < attempts {
                        metrics::counter!(RETRIES, "upstream" => self.name.clone()).increment(1);
                        pause(attempt).await;
                    }
                }
            }
        }
        Err(Unanswered::Failed(last))
    }

    /// A GET of `path`, proven as the gateway's own, with the retries and breakers a
    /// proxied GET gets.
    pub async fn get(&self, path: &str) -> Result<reqwest::Response, String> {
        let build = |replica: &Replica| {
            let mut headers = HeaderMap::new();
            if let Some(key) = &self.key {
                key.prove_now(&mut headers);
            }
            self.client.get(replica.url(path)).headers(headers)
        };
        self.send(1 + self.retries, build).await.map_err(|unanswered| match unanswered {
            Unanswered::BreakersOpen(wait) => {
                format!("{} is unavailable (breaker open for {} s)", self.name, wait.as_secs())
            }
            Unanswered::Failed(error) => error,
        })
    }
}

/// Why no replica answered.
enum Unanswered {
    /// Every replica's breaker is open; the soonest closes after this long.
    BreakersOpen(Duration),
    /// The last attempt's transport failure.
    Failed(String),
}

/// The pause before another attempt: 50 ms, then 100, 200…
async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(50) * 2_u32.saturating_pow(attempt.min(5))).await;
}

/// Headers that describe one hop, not the message, and are never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut forwarded = headers.clone();
    for name in &HOP_BY_HOP {
        forwarded.remove(name);
    }
    forwarded.remove(header::HOST);
    forwarded
}

/// Whether the client asks for a Server-Sent Events stream.
fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}

/// A request that may be sent again: idempotent, and with no body to replay.
fn repeatable(method: &Method, headers: &HeaderMap) -> bool {
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    );
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let bodiless = declared.unwrap_or(0) == 0 && !headers.contains_key(header::TRANSFER_ENCODING);
    idempotent && bodiless
}

/// Forwards a request, streaming both bodies. A request that is safe to repeat is tried
/// again (on the next replica) after a transport failure; a replica whose breaker is open
/// is passed over, and with every one open the answer is 503 with `Retry-After`.
pub async fn proxy(State(service): State<Arc<RemoteService>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = end_to_end(&parts.headers);
    // The service builds URLs that point back at the client's host, not its own.
    if let Some(host) = parts.headers.get(header::HOST)
        && !headers.contains_key("x-forwarded-host")
    {
        headers.insert("x-forwarded-host", host.clone());
    }
    kernel::telemetry::pass_traceparent(&mut headers);
    let client =
        if wants_event_stream(&parts.headers) { &service.streams } else { &service.client };
    let repeatable = repeatable(&parts.method, &parts.headers);
    let attempts = if repeatable { 1 + service.retries } else { 1 };
    let mut body = Some(body);
    let build = |replica: &Replica| {
        let outgoing = match body.take() {
            Some(body) if !repeatable => {
                reqwest::Body::wrap_stream(body.into_data_stream().map_err(std::io::Error::other))
            }
            _ => reqwest::Body::from(bytes::Bytes::new()),
        };
        client
            .request(parts.method.clone(), replica.url(path))
            .headers(headers.clone())
            .body(outgoing)
    };
    match service.send(attempts, build).await {
        Ok(reply) => {
            let mut response = Response::builder().status(reply.status());
            if let Some(headers) = response.headers_mut() {
                *headers = end_to_end(reply.headers());
            }
            response
                .body(Body::from_stream(reply.bytes_stream()))
                .unwrap_or_else(|_| Problem::unavailable("bad upstream response").into_response())
        }
        Err(Unanswered::BreakersOpen(wait)) => {
            metrics::counter!(BREAKER_REJECTIONS, "upstream" => service.name.clone()).increment(1);
            Problem::unavailable(format!("the {} service is unavailable", service.name))
                .with_retry_after(wait.as_secs().max(1))
                .into_response()
        }
        Err(Unanswered::Failed(_)) => {
            Problem::unavailable(format!("the {} service is unavailable", service.name))
                .into_response()
        }
    }
}

/// The auth service across the network, with the shared cache in front of it.
pub struct RemoteDirectory {
    auth: RemoteService,
    cache: Arc<dyn Cache>,
    grant_max_age: Duration,
}

impl RemoteDirectory {
    pub fn new(auth: RemoteService, cache: Arc<dyn Cache>, grant_max_age: Duration) -> Self {
        Self { auth, cache, grant_max_age }
    }

    async fn call(&self, path: &str) -> Result<reqwest::Response, DirectoryError> {
        self.auth.get(path).await.map_err(DirectoryError)
    }
}

#[async_trait]
impl SessionDirectory for RemoteDirectory {
    async fn grant(&self, session_id: Uuid) -> Result<Option<SessionGrant>, DirectoryError> {
        if let Some(cached) =
            grant::fresh_cached_grant(self.cache.as_ref(), session_id, self.grant_max_age).await
        {
            return Ok(Some(cached));
        }
        let reply = self.call(&format!("/internal/v1/sessions/{session_id}")).await?;
        match reply.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                reply.json().await.map(Some).map_err(|e| DirectoryError(e.to_string()))
            }
            status => Err(DirectoryError(format!("auth answered {status}"))),
        }
    }

    async fn jwks(&self) -> Result<serde_json::Value, DirectoryError> {
        let reply = self.call("/.well-known/jwks.json").await?;
        if !reply.status().is_success() {
            return Err(DirectoryError(format!("auth answered {}", reply.status())));
        }
        reply.json().await.map_err(|e| DirectoryError(e.to_string()))
    }
}

/// Readiness of a remote service: its `/healthz` answers.
pub struct UpstreamProbe(pub RemoteService);

#[async_trait]
impl kernel::http::Probe for UpstreamProbe {
    fn name(&self) -> String {
        format!("upstream.{}", self.0.name)
    }

    async fn check(&self) -> Result<(), String> {
        // Ready while any replica answers; each is asked directly, past its breaker.
        let mut failures = Vec::new();
        for replica in self.0.replicas.iter() {
            match self.0.client.get(replica.url("/healthz")).send().await {
                Ok(reply) if reply.status().is_success() => return Ok(()),
                Ok(reply) => failures.push(format!("{} answered {}", replica.base, reply.status())),
                Err(error) => failures.push(format!("{}: {error}", replica.base)),
            }
        }
        Err(failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> UpstreamPolicy {
        UpstreamPolicy {
            timeout: Duration::from_secs(1),
            retries: 0,
            breaker_failures: 1,
            breaker_open: Duration::from_secs(1),
            key: None,
        }
    }

    #[test]
    fn request_urls_keep_the_replicas_base_path_and_the_callers_query() {
        let service =
            RemoteService::new("auth", "http://auth:8081, http://10.0.0.2:9/prefix/", &policy())
                .unwrap();
        let urls: Vec<String> =
            service.replicas.iter().map(|r| r.url("/v1/me?x=1&y=%20").to_string()).collect();
        assert_eq!(
            urls,
            ["http://auth:8081/v1/me?x=1&y=%20", "http://10.0.0.2:9/prefix/v1/me?x=1&y=%20"]
        );
        assert_eq!(service.replicas[0].url("/healthz").to_string(), "http://auth:8081/healthz");
    }

    #[test]
    fn a_base_url_that_is_not_http_is_refused_at_start() {
        for bad in ["auth:8081", "ftp://auth", "http://"] {
            assert!(RemoteService::new("auth", bad, &policy()).is_err(), "{bad}");
        }
    }
}
