//! A trace collector for tests: it takes OTLP/HTTP exports (protobuf, as Tonearm sends
//! them) on a random loopback port and keeps every span, so a test can check the trace a
//! request left across processes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{Router, extract::State, http::StatusCode, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value,
};
use prost::Message;

/// One exported span, flattened.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    /// The exporting process's `service.name`.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a trace's root.
    pub parent_span_id: String,
    /// String, integer and boolean attributes, as text.
    pub attributes: HashMap<String, String>,
}

/// Listens until dropped; point `telemetry.otlp_endpoint` at [`Collector::endpoint`].
pub struct Collector {
    pub endpoint: String,
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().expect("an address"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().route("/v1/traces", post(collect)).with_state(spans.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { endpoint, spans, server }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.spans.lock().expect("not poisoned").clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn collect(
    State(spans): State<Arc<Mutex<Vec<CollectedSpan>>>>,
    body: bytes::Bytes,
) -> StatusCode {
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut collected = Vec::new();
    for resource_spans in export.resource_spans {
        let resource = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
        let service = text_attributes(&resource).remove("service.name").unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                collected.push(CollectedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: text_attributes(&span.attributes),
                });
            }
        }
    }
    spans.lock().expect("not poisoned").extend(collected);
    StatusCode::OK
}

fn text_attributes(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| {
            let text = match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(text) => text.clone(),
                Value::IntValue(number) => number.to_string(),
                Value::BoolValue(flag) => flag.to_string(),
                Value::DoubleValue(number) => number.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), text))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
