//! Asking the catalog about tracks a service's projection has not heard of yet: a track the
//! catalog reports `ready` is accepted at once, before its `track.published` arrives (the
//! API's promise). In one process the app implements [`Catalog`] over the catalog service
//! itself; a service deployed alone uses [`RemoteCatalog`].

use std::time::Duration;

use crate::caller::Caller;
use async_trait::async_trait;
use serde::Deserialize;
use uuid::Uuid;

use crate::api::{AlbumRef, ArtistRef, TrackSummary};

#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Summaries of those of `ids` the catalog reports ready; the others are left out.
    /// An error means the catalog could not be asked.
    async fn ready_tracks(
        &self,
        caller: &Caller,
        ids: &[Uuid],
    ) -> Result<Vec<TrackSummary>, String>;
}

/// The catalog across the network, asked through its public track endpoint with the
/// caller's identity (services trust the gateway's identity headers).
pub struct RemoteCatalog {
    base_url: String,
    client: reqwest::Client,
    key: crate::internal::InternalKey,
}

impl RemoteCatalog {
    /// `key` proves the caller's identity to the catalog, as the gateway's proof does.
    pub fn new(base_url: &str, key: crate::internal::InternalKey) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            // Below the server's keep-alive (75 s): never reuse a connection it is closing.
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { base_url: base_url.trim_end_matches('/').to_owned(), client, key })
    }

    /// The request with the caller's identity, proven, as the gateway would have sent it.
    fn as_caller(
        &self,
        request: reqwest::RequestBuilder,
        caller: &Caller,
    ) -> reqwest::RequestBuilder {
        let mut headers = http::HeaderMap::new();
        for (name, value) in caller.identity() {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        self.key.prove_now(&mut headers);
        crate::telemetry::pass_traceparent(&mut headers);
        request.headers(headers)
    }
}

#[derive(Deserialize)]
struct CatalogTrack {
    id: Uuid,
    title: String,
    artist: Named,
    album: Titled,
    duration_ms: u64,
    status: String,
}

#[derive(Deserialize)]
struct Named {
    id: Uuid,
    name: String,
}

#[derive(Deserialize)]
struct Titled {
    id: Uuid,
    title: String,
}

#[async_trait]
impl Catalog for RemoteCatalog {
    async fn ready_tracks(
        &self,
        caller: &Caller,
        ids: &[Uuid],
    ) -> Result<Vec<TrackSummary>, String> {
        let mut ready = Vec::new();
        for id in ids {
            let reply = self
                .as_caller(self.client.get(format!("{}/v1/tracks/{id}", self.base_url)), caller)
                .send()
                .await
                .map_err(|error| error.to_string())?;
            match reply.status() {
                reqwest::StatusCode::NOT_FOUND => continue,
                status if status.is_success() => {
                    let track: CatalogTrack = reply.json().await.map_err(|e| e.to_string())?;
                    if track.status == "ready" {
                        ready.push(TrackSummary {
                            id: track.id,
                            title: track.title,
                            artist: ArtistRef { id: track.artist.id, name: track.artist.name },
                            album: AlbumRef { id: track.album.id, title: track.album.title },
                            duration_ms: track.duration_ms,
                        });
                    }
                }
                status => return Err(format!("the catalog answered {status}")),
            }
        }
        Ok(ready)
    }
}

/// The catalog's search, as voice search asks it: every section, ranked, first page.
#[async_trait]
pub trait CatalogSearch: Send + Sync + 'static {
    /// An error means the catalog could not be asked.
    async fn search(
        &self,
        caller: &Caller,
        query: &str,
        limit: u32,
    ) -> Result<crate::api::SearchResults, String>;
}

#[async_trait]
impl CatalogSearch for RemoteCatalog {
    async fn search(
        &self,
        caller: &Caller,
        query: &str,
        limit: u32,
    ) -> Result<crate::api::SearchResults, String> {
        let request = self
            .client
            .get(format!("{}/v1/search", self.base_url))
            .query(&[("q", query), ("limit", &limit.to_string())]);
        let reply =
            self.as_caller(request, caller).send().await.map_err(|error| error.to_string())?;
        if !reply.status().is_success() {
            return Err(format!("the catalog answered {}", reply.status()));
        }
        reply.json().await.map_err(|error| error.to_string())
    }
}
