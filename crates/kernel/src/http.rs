//! HTTP plumbing every service mounts the same way: problem-aware extractors, request
//! ids, per-route metrics, request logs, panic capture, health and readiness probes,
//! Prometheus exposition, and a server that drains in-flight requests on shutdown.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, LazyLock, OnceLock, PoisonError, RwLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderName, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::{TcpListener, TcpSocket};
use tower::{ServiceBuilder, ServiceExt as _, util::BoxCloneSyncService};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, OnResponse as _, TraceLayer},
};
use tracing::Level;

use crate::{cache::Cache, db::SqlPool, problem::Problem, sendfile::SendfileListener};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub use crate::extract::{Json, Multipart, Path, Query};

/// Wraps a service's router in the layers every Tonearm server has. Routes added after
/// this call are not observed, so call it last.
pub fn observe(router: Router) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let request_id =
                request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let span = tracing::info_span!(
                "request",
                method = %request.method(),
                path = %request.uri().path(),
                request_id,
                trace_id = tracing::field::Empty,
            );
            // A request the gateway (or another service) forwarded continues its trace.
            let traceparent = request.headers().get("traceparent").and_then(|v| v.to_str().ok());
            crate::telemetry::continue_trace(&span, traceparent);
            span
        })
        .on_request(())
        .on_response(log_response);
    // Install the recorder before the first request records anything.
    prometheus();
    router
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .layer(middleware::from_fn(measure))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(trace)
                .layer(CatchPanicLayer::custom(panic_as_problem)),
        )
}

/// The service behind a hot path, boxed as [`split`] takes it.
pub type HotService = BoxCloneSyncService<Request, Response, Infallible>;

/// Wraps one service of a hot path (signed media) in what [`observe`] gives a router, but
/// for the trace span and log line, which such requests never get: request ids, metrics
/// (every request counted under `route`), problem+json for bare errors, panic capture. No
/// router runs: the service answers every path it is given.
pub fn observe_service<S>(route: &'static str, service: S) -> HotService
where
    S: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    prometheus();
    let observed = ServiceBuilder::new()
        .map_response(|response: Response<_>| response.map(axum::body::Body::new))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(CatchPanicLayer::custom(panic_as_problem))
        .service(Measured { route, inner: service });
    BoxCloneSyncService::new(observed)
}

/// Counts and times a service's requests under one route, as [`measure`] does a router's.
#[derive(Clone)]
struct Measured<S> {
    route: &'static str,
    inner: S,
}

impl<S> tower::Service<Request> for Measured<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let method = request.method().clone();
        let route = self.route;
        let answered = self.inner.call(request);
        Box::pin(async move {
            let Ok(response) = answered.await;
            let response = as_problem(response).await;
            record(&method, route, response.status(), started);
            Ok(response)
        })
    }
}

fn panic_as_problem(_panic: Box<dyn std::any::Any + Send>) -> Response {
    tracing::error!("handler panicked");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "an internal error occurred").into_response()
}

/// One router serving paths under `prefix` with `hot` ([`observe_service`]) and every
/// other path with `rest` ([`observe`]), so that the hot path (signed media) passes none of
/// the other routes' layers.
pub fn split(prefix: &'static str, hot: HotService, rest: Router) -> Router {
    Router::new().fallback_service(Split { prefix, hot, rest })
}

#[derive(Clone)]
struct Split {
    prefix: &'static str,
    hot: HotService,
    rest: Router,
}

impl tower::Service<Request> for Split {
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::Either<
        <HotService as tower::Service<Request>>::Future,
        <Router as tower::Service<Request>>::Future,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Both sides are always ready (routers, and services that answer every request).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.uri().path().starts_with(self.prefix) {
            futures::future::Either::Left(self.hot.call(request))
        } else {
            futures::future::Either::Right(self.rest.call(request))
        }
    }
}

/// Marks a response that gets no log line of its own (media segments and playlists, the
/// hot path): it is still counted in the request metrics.
#[derive(Debug, Clone, Copy)]
pub struct Unlogged;

fn log_response<B>(response: &Response<B>, latency: Duration, span: &tracing::Span) {
    if response.extensions().get::<Unlogged>().is_none() {
        DefaultOnResponse::new().level(Level::INFO).on_response(response, latency, span);
    }
}

/// Counts each request and its latency by route, and turns error responses made by
/// layers or the framework (a 405, a 408, a 413 without a body) into problem+json too, so
/// that clients meet one error shape.
async fn measure(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = as_problem(next.run(request).await).await;
    record(
        &method,
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status(),
        started,
    );
    response
}

fn record(method: &Method, route: &str, status: StatusCode, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    REQUEST_METRICS.record(method_label(method), route, status.as_u16(), seconds);
}

/// Every request's counter and latency histogram, by method, route and status. Finding a
/// metric by its labels allocates and hashes each of them; requests repeat a few
/// combinations, so their handles are kept and found by a cheaper key.
static REQUEST_METRICS: LazyLock<RequestMetrics> = LazyLock::new(RequestMetrics::default);

type RequestHandles = HashMap<(&'static str, u16), (metrics::Counter, metrics::Histogram)>;

#[derive(Default)]
struct RequestMetrics {
    by_route: RwLock<HashMap<String, RequestHandles>>,
}

impl RequestMetrics {
    fn record(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let read = self.by_route.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((requests, latency)) =
            read.get(route).and_then(|handles| handles.get(&(method, status)))
        {
            requests.increment(1);
            latency.record(seconds);
            return;
        }
        drop(read);
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let requests = metrics::counter!("http_requests_total", &labels);
        let latency = metrics::histogram!("http_request_duration_seconds", &labels);
        requests.increment(1);
        latency.record(seconds);
        let mut write = self.by_route.write().unwrap_or_else(PoisonError::into_inner);
        write.entry(route.to_owned()).or_default().insert((method, status), (requests, latency));
    }
}

/// The method as a metric label: any method outside HTTP's own is `OTHER`, so that
/// clients cannot add labels without bound.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

async fn as_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == crate::problem::CONTENT_TYPE.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    // A framework's or a layer's own error (a rejection in plain text, a bare 405): its
    // words are kept for a client error, never for a server error.
    let (parts, body) = response.into_parts();
    let plain_text = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/plain"));
    let said = if status.is_client_error() && plain_text {
        axum::body::to_bytes(body, 2048)
            .await
            .ok()
            .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    } else {
        None
    };
    let detail = said.unwrap_or_else(|| {
        if status.is_server_error() {
            "an internal error occurred".to_owned()
        } else {
            status.canonical_reason().unwrap_or("error").to_lowercase()
        }
    });
    let mut problem = Problem::new(status, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets =
            [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => {
                // Histograms keep their samples until someone drains them; a scrape does,
                // but a server nobody scrapes would grow by every request it answers.
                let upkeep = handle.clone();
                let _ =
                    std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                        loop {
                            std::thread::sleep(Duration::from_secs(5));
                            upkeep.run_upkeep();
                        }
                    });
                handle
            }
            // Another recorder is already installed (an embedding program chose its own):
            // keep ours private so /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// Something `/readyz` checks: a database, a cache, a broker, an upstream.
#[async_trait]
pub trait Probe: Send + Sync + 'static {
    fn name(&self) -> String;
    async fn check(&self) -> Result<(), String>;
    /// Whether a failure makes the process unready. An optional part (models not yet
    /// fetched, say) is reported in `/readyz` without taking the rest out of service.
    fn required(&self) -> bool {
        true
    }
}

pub struct SqlProbe {
    pub name: String,
    pub pool: SqlPool,
}

#[async_trait]
impl Probe for SqlProbe {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn check(&self) -> Result<(), String> {
        let result = match &self.pool {
            SqlPool::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            SqlPool::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        };
        result.map_err(|e| e.to_string())
    }
}

pub struct CacheProbe {
    pub name: String,
    pub cache: Arc<dyn Cache>,
}

#[async_trait]
impl Probe for CacheProbe {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn check(&self) -> Result<(), String> {
        self.cache.ping().await.map_err(|e| e.to_string())
    }
}

type Probes = Arc<Vec<Arc<dyn Probe>>>;

/// `/healthz` (the process answers), `/readyz` (every probe passes) and `/metrics`.
pub fn ops_router(probes: Vec<Arc<dyn Probe>>) -> Router {
    let probes: Probes = Arc::new(probes);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(probes)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(healthz, readyz, render_metrics),
    tags((name = "operations", description = "Health, readiness and metrics"))
)]
struct OpsApi;

/// The OpenAPI description of the operations endpoints.
pub fn ops_openapi() -> utoipa::openapi::OpenApi {
    <OpsApi as utoipa::OpenApi>::openapi()
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", content_type = "application/json")))]
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Every store, cache and upstream this process needs answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", content_type = "application/json"),
        (status = 503, body = Problem, description = "A dependency is unavailable"),
    ))]
async fn readyz(State(probes): State<Probes>) -> Result<axum::Json<serde_json::Value>, Problem> {
    let checks = run_probes(&probes).await;
    // Every check's counter exists from the first probe on, so a rate over it reads 0, not
    // nothing, until one fails.
    for (name, _, result) in &checks {
        metrics::counter!("readiness_check_failures_total", "check" => name.clone())
            .increment(u64::from(result.is_err()));
    }
    let failing: Vec<String> = checks
        .iter()
        .filter(|(_, required, _)| *required)
        .filter_map(|(name, _, result)| result.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    // Readiness as Prometheus sees it between probes: alerts watch it flap.
    metrics::gauge!("service_ready").set(if failing.is_empty() { 1.0 } else { 0.0 });
    if failing.is_empty() {
        let degraded = checks.iter().any(|(_, _, result)| result.is_err());
        let names: serde_json::Map<String, serde_json::Value> = checks
            .into_iter()
            .map(|(name, _, result)| {
                let status = match result {
                    Ok(()) => "ok".to_owned(),
                    Err(error) => format!("unavailable: {error}"),
                };
                (name, status.into())
            })
            .collect();
        let status = if degraded { "degraded" } else { "ready" };
        Ok(axum::Json(serde_json::json!({"status": status, "checks": names})))
    } else {
        Err(Problem::unavailable(format!("not ready: {}", failing.join("; "))))
    }
}

async fn run_probes(probes: &Probes) -> Vec<(String, bool, Result<(), String>)> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, probe) in probes.iter().cloned().enumerate() {
        tasks.spawn(async move {
            let outcome = tokio::time::timeout(Duration::from_secs(2), probe.check())
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
            (index, probe.name(), probe.required(), outcome)
        });
    }
    let mut results = tasks.join_all().await;
    results.sort_by_key(|(index, _, _, _)| *index);
    results.into_iter().map(|(_, name, required, outcome)| (name, required, outcome)).collect()
}

/// Prometheus text exposition: request counts and latency histograms by route and status.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn render_metrics() -> Response {
    let handle = prometheus();
    metrics::gauge!("sendfile_open_files").set(crate::sendfile::open_files() as f64);
    metrics::counter!("sendfile_bytes_total").absolute(crate::sendfile::bytes_sent_from_files());
    crate::memory::record().await;
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
        .into_response()
}

/// What a server lets each client hold, so that slow or idle clients cannot use it up.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// How long in-flight requests may run on after shutdown begins.
    pub grace: Duration,
    /// Connections held at once; further clients wait in the kernel's accept queue until
    /// one closes. Never more than the open-file limit allows (less a reserve for files,
    /// databases and outgoing calls).
    pub max_connections: usize,
    /// How long a new connection may stay silent: a client that connects and sends
    /// nothing is disconnected after it, having cost a socket and a small task.
    pub header_timeout: Duration,
    /// How long a request head may take, from the connection's first byte or the previous
    /// response: an idle kept-alive connection, or a head trickled byte by byte
    /// (slowloris), is disconnected after it. Longer than the idle timeout of the pools
    /// and load balancers in front (60 s is common), so that none of them sends a request
    /// on a connection the server is closing.
    pub keep_alive: Duration,
    /// The most bytes a request head may take; a larger one is refused with 431.
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
            max_connections: 20_000,
            header_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(75),
            max_header_bytes: 32 * 1024,
        }
    }
}

/// Descriptors kept back from connections for the files, databases and outgoing calls a
/// server opens itself.
const RESERVED_DESCRIPTORS: usize = 512;
/// Connections the kernel completes before they are accepted (capped by
/// `net.core.somaxconn`): room for a burst of clients, as busy servers configure it.
const LISTEN_BACKLOG: u32 = 4096;
/// hyper reads a request's head into a buffer no smaller than this.
const MIN_HEAD_BUFFER: usize = 8 * 1024;

/// A bound listener; binding first lets tests ask for port 0 and read the real port.
/// Its connections send file-backed bodies without copying them ([`crate::sendfile`]).
pub struct Server {
    listener: TcpListener,
    limits: ServerLimits,
}

impl Server {
    pub async fn bind(addr: SocketAddr, limits: ServerLimits) -> std::io::Result<Self> {
        let max_connections = limits.max_connections.min(connection_budget());
        if max_connections < limits.max_connections {
            tracing::info!(
                configured = limits.max_connections,
                max_connections,
                "the open-file limit allows fewer connections than configured"
            );
        }
        let limits = ServerLimits { max_connections: max_connections.max(1), ..limits };
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        Ok(Self { listener: socket.listen(LISTEN_BACKLOG)?, limits })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for at most
    /// the grace period.
    pub async fn run(
        self,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self { listener, limits } = self;
        let mut listener = SendfileListener::new(listener);
        let builder = connection_builder(&limits);
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        metrics::gauge!("http_connections_open").set(0.0);
        metrics::gauge!("http_connections_max").set(limits.max_connections as f64);
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                () = &mut shutdown => break,
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            };
            // Responses are written whole; holding back small packets only adds latency.
            let _ = stream.get_ref().set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(app.clone().map_request(
                move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    request
                },
            ));
            let watcher = graceful.watcher();
            let builder = builder.clone();
            let header_timeout = limits.header_timeout;
            tokio::spawn(async move {
                let _slot = slot;
                let _open = OpenConnection::count();
                // An idle client costs a socket and this small task, not hyper's buffers,
                // until its first bytes arrive.
                let mut first = [0_u8; 1];
                match tokio::time::timeout(header_timeout, stream.get_ref().peek(&mut first)).await
                {
                    Ok(Ok(read)) if read > 0 => {}
                    _ => return,
                }
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%peer, error = %error, "connection ended with an error");
                }
            });
        }
        tracing::info!(grace_secs = limits.grace.as_secs(), "shutting down; draining requests");
        drop(listener);
        if tokio::time::timeout(limits.grace, graceful.shutdown()).await.is_err() {
            tracing::warn!("grace period over; dropping the requests still running");
        }
        Ok(())
    }
}

/// HTTP/1.1 and HTTP/2 (prior knowledge) on one port, as `axum::serve` offers, with the
/// head limits of [`ServerLimits`].
fn connection_builder(
    limits: &ServerLimits,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.keep_alive)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEAD_BUFFER));
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// How many connections the open-file limit leaves room for.
fn connection_budget() -> usize {
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(current) = limit.current {
            return usize::try_from(current)
                .unwrap_or(usize::MAX)
                .saturating_sub(RESERVED_DESCRIPTORS)
                .max(1);
        }
    }
    usize::MAX
}

/// One open connection in `http_connections_open`, for as long as it lives.
struct OpenConnection;

impl OpenConnection {
    fn count() -> Self {
        metrics::gauge!("http_connections_open").increment(1.0);
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::sync::Notify;

    #[tokio::test]
    async fn shutdown_lets_a_slow_request_finish() {
        // Shutdown must wait for the handler to be running, not for a guessed delay: a
        // connection whose request has not been read yet is idle and may be closed.
        let started = Arc::new(Notify::new());
        let app = observe(Router::new().route(
            "/slow",
            get({
                let started = started.clone();
                move || async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    "done"
                }
            }),
        ));
        let limits = ServerLimits { grace: Duration::from_secs(10), ..ServerLimits::default() };
        let server = Server::bind((Ipv4Addr::LOCALHOST, 0).into(), limits).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(app, async {
            let _ = stopped.await;
        }));
        let request = tokio::spawn(reqwest::get(format!("http://{addr}/slow")));
        started.notified().await;
        stop.send(()).unwrap();
        let response = request.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "done");
        running.await.unwrap().unwrap();
        assert!(
            reqwest::get(format!("http://{addr}/slow")).await.is_err(),
            "a stopped server accepts no new requests"
        );
    }

    /// A server answering `GET /` with "hi", under `limits`; stopped when the sender drops.
    async fn limited(limits: ServerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let server = Server::bind((Ipv4Addr::LOCALHOST, 0).into(), limits).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = observe(Router::new().route("/", get(|| async { "hi" })));
        tokio::spawn(server.run(app, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads until the server closes the connection; what it sent, or `None` when it is
    /// still open after `within`.
    async fn until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
        use tokio::io::AsyncReadExt as _;
        let mut received = Vec::new();
        match tokio::time::timeout(within, stream.read_to_end(&mut received)).await {
            Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn silent_idle_and_trickling_clients_are_disconnected() {
        use tokio::io::AsyncWriteExt as _;
        let timeout = Duration::from_millis(500);
        let limits = ServerLimits {
            header_timeout: timeout,
            keep_alive: timeout,
            ..ServerLimits::default()
        };
        let (addr, _stop) = limited(limits).await;

        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let closed = until_closed(&mut silent, Duration::from_secs(10)).await;
        assert_eq!(closed.as_deref(), Some(""), "a client that sends nothing is let go");

        // Slowloris: a head that never ends, a byte at a time, each within the timeout.
        let mut trickling = tokio::net::TcpStream::connect(addr).await.unwrap();
        trickling.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = Instant::now();
        let mut cut_off = false;
        while started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickling.write_all(b"X").await.is_err() {
                cut_off = true;
                break;
            }
        }
        assert!(cut_off, "a head trickled byte by byte is cut off");

        // Kept alive after a response, then silent: let go too.
        let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answered = until_closed(&mut kept, Duration::from_secs(10)).await.unwrap();
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        assert!(answered.ends_with("hi"), "{answered}");
    }

    #[tokio::test]
    async fn an_oversized_head_gets_431() {
        use tokio::io::AsyncWriteExt as _;
        let (addr, _stop) =
            limited(ServerLimits { max_header_bytes: 16 * 1024, ..ServerLimits::default() }).await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let huge = "a".repeat(64 * 1024);
        let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Padding: {huge}\r\n\r\n");
        // The server may close before it has read everything; what it answered still counts.
        let _ = client.write_all(request.as_bytes()).await;
        let answered = until_closed(&mut client, Duration::from_secs(10)).await.unwrap_or_default();
        assert!(answered.starts_with("HTTP/1.1 431"), "{answered:?}");

        let fine = reqwest::Client::new()
            .get(format!("http://{addr}/"))
            .header("x-padding", "a".repeat(8 * 1024))
            .send()
            .await
            .unwrap();
        assert_eq!(fine.status(), 200, "a head under the limit is served");
    }

    #[tokio::test]
    async fn past_max_connections_clients_wait_until_one_closes() {
        let limits = ServerLimits {
            max_connections: 2,
            header_timeout: Duration::from_secs(30),
            ..ServerLimits::default()
        };
        let (addr, _stop) = limited(limits).await;
        let first = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/");
        let waiting = tokio::spawn(async move { client.get(url).send().await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "a third connection is not served while two are held");
        drop(first);
        let response = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("served once a connection closes")
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    #[test]
    fn requests_are_counted_by_method_route_and_status_with_bounded_methods() {
        let metrics = prometheus();
        let brew = Method::from_bytes(b"BREW").unwrap();
        record(&brew, "/kernel-test/pot", StatusCode::OK, Instant::now());
        for _ in 0..2 {
            record(&Method::GET, "/kernel-test/pot", StatusCode::OK, Instant::now());
        }
        record(&Method::GET, "/kernel-test/pot", StatusCode::NOT_FOUND, Instant::now());
        let text = metrics.render();
        for line in [
            r#"http_requests_total{method="OTHER",route="/kernel-test/pot",status="200"} 1"#,
            r#"http_requests_total{method="GET",route="/kernel-test/pot",status="200"} 2"#,
            r#"http_requests_total{method="GET",route="/kernel-test/pot",status="404"} 1"#,
            r#"http_request_duration_seconds_count{method="GET",route="/kernel-test/pot",status="200"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains("BREW"), "a client's own method is no label");
    }

    #[tokio::test]
    async fn a_hot_path_is_served_apart_and_observed_like_the_rest() {
        use tower::ServiceExt;
        let hot = tower::service_fn(|request: Request| async move {
            if request.uri().path() == "/hot/boom" {
                panic!("kaboom");
            }
            if request.uri().path() == "/hot/teapot" {
                // A bare error, as a layer or framework would make it.
                return Ok::<_, Infallible>(StatusCode::IM_A_TEAPOT.into_response());
            }
            Ok(format!("hot {}", request.uri().path()).into_response())
        });
        let rest = observe(Router::new().route("/hotel", get(|| async { "rest" })));
        let app = split("/hot/", observe_service("/hot/{path}", hot), rest);
        let call = |path: &'static str| {
            let app = app.clone();
            async move {
                let request = Request::get(path).body(axum::body::Body::empty()).unwrap();
                app.oneshot(request).await.unwrap()
            }
        };
        let body = |response: Response| async move {
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        };

        let served = call("/hot/a/b").await;
        assert_eq!(served.status(), StatusCode::OK);
        assert!(served.headers().contains_key(REQUEST_ID));
        assert_eq!(body(served).await, "hot /hot/a/b");
        assert_eq!(
            body(call("/hotel").await).await,
            "rest",
            "only the prefix goes to the hot side"
        );
        for (path, status) in [
            ("/hot/boom", StatusCode::INTERNAL_SERVER_ERROR),
            ("/hot/teapot", StatusCode::IM_A_TEAPOT),
        ] {
            let response = call(path).await;
            assert_eq!(response.status(), status, "{path}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], crate::problem::CONTENT_TYPE);
            assert!(response.headers().contains_key(REQUEST_ID), "{path}");
        }
        let metrics = prometheus().render();
        assert!(metrics.contains(r#"route="/hot/{path}""#), "{metrics}");
    }

    #[tokio::test]
    async fn unknown_routes_and_panics_answer_problem_json_with_a_request_id() {
        use tower::ServiceExt;
        let app = observe(Router::new().route(
            "/boom",
            get(|| async {
                panic!("kaboom");
                #[allow(unreachable_code)]
                ""
            }),
        ))
        .merge(Router::new());
        for path in ["/nope", "/boom"] {
            let response = app
                .clone()
                .oneshot(Request::get(path).body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                crate::problem::CONTENT_TYPE,
                "{path}"
            );
            assert!(response.headers().contains_key(REQUEST_ID), "{path}");
        }
    }
}
