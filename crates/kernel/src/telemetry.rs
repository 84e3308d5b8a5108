//! Logs and traces: pretty logs on a terminal, JSON lines otherwise, filtered by
//! `RUST_LOG`; spans exported over OTLP/HTTP when an endpoint is configured, filtered on
//! their own, so that quieter logs do not thin out the traces.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use serde::Deserialize;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TelemetryConfig {
    /// `auto` (pretty on a terminal, JSON otherwise), `pretty` or `json`.
    pub log_format: LogFormat,
    /// OTLP/HTTP collector, e.g. `http://otel-collector:4318`; unset disables trace export.
    pub otlp_endpoint: Option<String>,
    /// Which spans are exported, in `RUST_LOG`'s syntax. The default keeps Tonearm's own
    /// spans (requests, event handling, jobs) and leaves out the libraries' chatter.
    pub trace_filter: String,
}

/// Spans worth a trace: Tonearm's, not each SQL statement or connection checkout.
pub const DEFAULT_TRACE_FILTER: &str =
    "info,sqlx=warn,hyper=warn,hyper_util=warn,h2=warn,tower=warn,reqwest=warn,rdkafka=warn";

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Auto,
            otlp_endpoint: None,
            trace_filter: DEFAULT_TRACE_FILTER.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Pretty,
    Json,
}

/// Flushes exported spans when dropped; keep it alive for the life of the process.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// The W3C `traceparent` of the current span, when traces are exported, so that work an
/// event causes elsewhere joins the trace that produced it.
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Continues the trace a caller's `traceparent` (from a request or an event) names in
/// `span`, and records its id in the span's `trace_id` field for the log lines inside it.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        follow_traceparent(span, traceparent);
    }
    record_trace_id(span, traceparent);
}

/// Puts the current span's `traceparent` on an outgoing request, so that the service it
/// reaches continues the trace.
pub fn pass_traceparent(headers: &mut http::HeaderMap) {
    if let Some(traceparent) = current_traceparent()
        && let Ok(value) = http::HeaderValue::from_str(&traceparent)
    {
        headers.insert("traceparent", value);
    }
}

/// Makes `span` a child of the trace a `traceparent` names, so that a consumer's work
/// shows under the request that caused the event.
fn follow_traceparent(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    span.set_parent(parent);
}

/// Names the trace `span` belongs to in its `trace_id` field (declared
/// `tracing::field::Empty`), so that every log line written inside it carries the id a
/// trace viewer finds it by: the exported trace's own, or else the one `traceparent` (a
/// caller's) names.
fn record_trace_id(span: &tracing::Span, traceparent: Option<&str>) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    let exported = context.span().span_context().clone();
    let id = if exported.is_valid() {
        Some(exported.trace_id().to_string())
    } else {
        traceparent.and_then(trace_id_of)
    };
    if let Some(id) = id {
        span.record("trace_id", id.as_str());
    }
}

/// The trace id a W3C `traceparent` (`00-<32 hex>-<16 hex>-<flags>`) names, if valid.
fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    let valid = trace_id.len() == 32
        && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
        && trace_id.bytes().any(|b| b != b'0');
    valid.then(|| trace_id.to_ascii_lowercase())
}

/// Installs the global subscriber. Call once, at the start of `main`.
pub fn init(config: &TelemetryConfig, service_name: &str) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let pretty = match config.log_format {
        LogFormat::Auto => std::io::stdout().is_terminal(),
        LogFormat::Pretty => true,
        LogFormat::Json => false,
    };
    let fmt_layer = if pretty {
        tracing_subscriber::fmt::layer().compact().boxed()
    } else {
        tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).boxed()
    };
    let (otel_layer, provider) = match &config.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    Resource::builder().with_service_name(service_name.to_owned()).build(),
                )
                .build();
            let tracer = provider.tracer("tonearm");
            let exported = EnvFilter::try_new(&config.trace_filter)
                .map_err(|e| anyhow::anyhow!("telemetry.trace_filter: {e}"))?;
            let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(exported);
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(filter))
        .with(otel_layer)
        .try_init()?;
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{Router, body::Body, http::Request, routing::get};
    use tower::ServiceExt;
    use tracing_subscriber::{fmt::MakeWriter, layer::SubscriberExt};

    use super::*;

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(), Some(id));
        assert_eq!(trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id_of("00-xyz-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id_of("garbage"), None);
    }

    /// Log output, gathered for a look.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(
                &self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            )
            .into_owned()
        }
    }

    async fn log_inside_a_request(traceparent: Option<&str>) {
        let router = crate::http::observe(Router::new().route(
            "/",
            get(|| async {
                tracing::info!("handling");
            }),
        ));
        let mut request = Request::get("/");
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let answered = router.oneshot(request.body(Body::empty()).unwrap_or_default()).await;
        assert!(answered.is_ok());
    }

    fn json_logs<S>(captured: &Captured) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(captured.clone())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn log_lines_in_a_request_carry_its_callers_trace_id() {
        let captured = Captured::default();
        let _logs = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(json_logs(&captured)),
        );
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        log_inside_a_request(Some(&format!("00-{id}-00f067aa0ba902b7-01"))).await;
        let line =
            captured.text().lines().find(|line| line.contains("handling")).map(str::to_owned);
        let line = line.unwrap_or_else(|| panic!("no log line in {}", captured.text()));
        assert!(line.contains(&format!("\"trace_id\":\"{id}\"")), "{line}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn with_traces_exported_a_new_request_logs_its_own_trace_id() {
        let captured = Captured::default();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(json_logs(&captured))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _logs = tracing::subscriber::set_default(subscriber);
        log_inside_a_request(None).await;
        let text = captured.text();
        let line = text.lines().find(|line| line.contains("handling")).unwrap_or_default();
        let id = line.split("\"trace_id\":\"").nth(1).and_then(|rest| rest.get(..32));
        assert!(
            id.is_some_and(|id| trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")).is_some()),
            "{text}"
        );
    }
}
