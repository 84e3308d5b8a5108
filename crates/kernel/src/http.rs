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
    serve::ListenerExt as _,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::{net::TcpListener, sync::Notify};
use tower::{ServiceBuilder, util::BoxCloneSyncService};
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

/// A bound listener; binding first lets tests ask for port 0 and read the real port.
/// Its connections send file-backed bodies without copying them ([`crate::sendfile`]).
pub struct Server {
    listener: TcpListener,
    grace: Duration,
}

impl Server {
    pub async fn bind(addr: SocketAddr, grace: Duration) -> std::io::Result<Self> {
        Ok(Self { listener: TcpListener::bind(addr).await?, grace })
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
        let stopping = Arc::new(Notify::new());
        let notifier = stopping.clone();
        let listener = SendfileListener::new(self.listener).tap_io(|stream| {
            // Responses are written whole; holding back small packets only adds latency.
            let _ = stream.get_ref().set_nodelay(true);
        });
        let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown.await;
                notifier.notify_one();
            });
        let mut server = tokio::spawn(async move { serve.await });
        tokio::select! {
            finished = &mut server => return finished.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            () = stopping.notified() => tracing::info!(grace_secs = self.grace.as_secs(), "shutting down; draining requests"),
        }
        match tokio::time::timeout(self.grace, &mut server).await {
            Ok(finished) => finished.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            Err(_) => {
                tracing::warn!("grace period over; dropping the requests still running");
                server.abort();
                Ok(())
            }
        }
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
        let server =
            Server::bind((Ipv4Addr::LOCALHOST, 0).into(), Duration::from_secs(10)).await.unwrap();
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
