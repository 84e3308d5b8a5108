//! Where the gateway sends a request: a service's router in this process (`tonearm up`)
//! or a service across the network (`tonearm serve gateway`), and the session directory
//! to match.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, header},
    response::{IntoResponse, Response},
};
use futures::TryStreamExt;
use kernel::{
    Problem,
    cache::Cache,
    grant::{self, DirectoryError, SessionDirectory, SessionGrant},
};
use uuid::Uuid;

/// A service behind the gateway.
#[derive(Clone)]
pub enum Upstream {
    Local(Router),
    Remote(RemoteService),
}

/// A service reached over HTTP.
#[derive(Clone)]
pub struct RemoteService {
    pub name: String,
    pub base_url: String,
    pub client: reqwest::Client,
    /// For event streams, which last as long as the client stays: no deadline for the
    /// whole response, only for each read (the service sends keep-alives well within it).
    pub streams: reqwest::Client,
}

impl RemoteService {
    pub fn new(name: &str, base_url: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let streams = reqwest::Client::builder()
            .read_timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            client,
            streams,
        })
    }
}

/// Whether the client asks for a Server-Sent Events stream.
fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
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

/// Forwards a request as it is, streaming both bodies.
pub async fn proxy(State(service): State<RemoteService>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let mut headers = end_to_end(&parts.headers);
    // The service builds URLs that point back at the client's host, not its own.
    if let Some(host) = parts.headers.get(header::HOST)
        && !headers.contains_key("x-forwarded-host")
    {
        headers.insert("x-forwarded-host", host.clone());
    }
    let client =
        if wants_event_stream(&parts.headers) { &service.streams } else { &service.client };
    let upstream = client
        .request(parts.method, format!("{}{path}", service.base_url))
        .headers(headers)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    match upstream {
        Ok(reply) => {
            let mut response = Response::builder().status(reply.status());
            if let Some(headers) = response.headers_mut() {
                *headers = end_to_end(reply.headers());
            }
            response
                .body(Body::from_stream(reply.bytes_stream()))
                .unwrap_or_else(|_| Problem::unavailable("bad upstream response").into_response())
        }
        Err(error) => {
            tracing::warn!(service = %service.name, %error, "upstream unavailable");
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
        let url = format!("{}{path}", self.auth.base_url);
        self.auth.client.get(url).send().await.map_err(|e| DirectoryError(e.to_string()))
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
        let url = format!("{}/healthz", self.0.base_url);
        match self.0.client.get(url).send().await {
            Ok(reply) if reply.status().is_success() => Ok(()),
            Ok(reply) => Err(format!("answered {}", reply.status())),
            Err(error) => Err(error.to_string()),
        }
    }
}
