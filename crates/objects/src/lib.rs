//! Object storage for media: uploads, renditions, segments and artwork.
//!
//! `file://<dir>` (the default under `tonearm up`: `<data_dir>/media`) keeps objects on the
//! local filesystem; `s3://<bucket>` keeps them in S3 or any S3-compatible store (MinIO in
//! production). Both sit behind the `object_store` crate's trait; this crate adds the choice
//! by URL, streamed writes, and [`ObjectKey`], which refuses any name that could escape the
//! storage root.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use kernel::engine::{EngineError, EngineUrl};
use object_store::{
    ObjectStore, PutPayload, RetryConfig, WriteMultipart, aws::AmazonS3Builder,
    local::LocalFileSystem, path::Path as StorePath,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// `[storage]` in the config file; `TONEARM_STORAGE__*` in the environment.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct StorageConfig {
    /// `file://<dir>` or `s3://<bucket>`; unset means `file://<data_dir>/media`.
    pub url: Option<EngineUrl>,
    /// S3: the endpoint of an S3-compatible store, e.g. `http://minio:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectsError {
    #[error("invalid object key `{0}`")]
    InvalidKey(String),
    #[error("no such object: {0}")]
    NotFound(String),
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
}

impl From<object_store::Error> for ObjectsError {
    fn from(error: object_store::Error) -> Self {
        match error {
            object_store::Error::NotFound { path, .. } => Self::NotFound(path),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// A validated object name: `/`-separated segments of letters, digits, `.`, `_` and `-`,
/// none of them `.` or `..`, so that no key names anything outside the store's root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn parse(raw: &str) -> Result<Self, ObjectsError> {
        let valid = !raw.is_empty()
            && raw.len() <= 512
            && raw.split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            });
        if valid { Ok(Self(raw.to_owned())) } else { Err(ObjectsError::InvalidKey(raw.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key below this one.
    pub fn join(&self, child: &str) -> Result<Self, ObjectsError> {
        Self::parse(&format!("{}/{child}", self.0))
    }

    fn path(&self) -> StorePath {
        StorePath::from(self.0.as_str())
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is known about a stored object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub etag: Option<String>,
}

#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    engine: &'static str,
    /// The directory of a `file://` store, where objects are files of their key's name.
    root: Option<PathBuf>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Objects({})", self.engine)
    }
}

impl Objects {
    /// Opens the store the config names and checks that it answers.
    pub async fn connect(config: &StorageConfig, data_dir: &Path) -> Result<Self, EngineError> {
        let default_url = EngineUrl::new(format!("file://{}", data_dir.join("media").display()));
        let url = config.url.as_ref().unwrap_or(&default_url);
        let invalid = |reason: String| EngineError::Invalid { url: url.redacted(), reason };
        let objects = match url.scheme() {
            "file" => {
                let root = url.expose().trim_start_matches("file://");
                std::fs::create_dir_all(root).map_err(|e| invalid(e.to_string()))?;
                let store =
                    LocalFileSystem::new_with_prefix(root).map_err(|e| invalid(e.to_string()))?;
                Self { store: Arc::new(store), engine: "file", root: Some(PathBuf::from(root)) }
            }
            "s3" => {
                let bucket = url.expose().trim_start_matches("s3://").trim_end_matches('/');
                // A few quick retries: a store that stays away is an outage to report,
                // not something to wait three minutes for.
                let retry = RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(15),
                    ..RetryConfig::default()
                };
                let mut builder = AmazonS3Builder::new()
                    .with_retry(retry)
                    .with_bucket_name(bucket)
                    .with_region(config.region.as_deref().unwrap_or("us-east-1"));
                if let Some(endpoint) = &config.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let (Some(key), Some(secret)) =
                    (&config.access_key_id, &config.secret_access_key)
                {
                    builder = builder
                        .with_access_key_id(key)
                        .with_secret_access_key(secret.expose_secret());
                }
                let store = builder.build().map_err(|e| invalid(e.to_string()))?;
                Self { store: Arc::new(store), engine: "s3", root: None }
            }
            scheme => {
                return Err(EngineError::UnsupportedScheme {
                    url: url.redacted(),
                    scheme: scheme.to_owned(),
                    supported: "file://, s3://",
                });
            }
        };
        objects.ping().await.map_err(|error| EngineError::Unreachable {
            engine: objects.engine,
            url: url.redacted(),
            reason: error.to_string(),
        })?;
        Ok(objects)
    }

    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// Lists one key to prove the store answers and the credentials hold.
    pub async fn ping(&self) -> Result<(), ObjectsError> {
        let mut listing = self.store.list(None);
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(error.into()),
        }
    }

    pub async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), ObjectsError> {
        self.store.put(&key.path(), PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Writes a stream as it arrives, never holding it whole in memory; returns its size.
    /// A stream that fails leaves no object behind.
    pub async fn put_stream<S, E>(&self, key: &ObjectKey, stream: S) -> Result<u64, ObjectsError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let upload = self.store.put_multipart(&key.path()).await?;
        let mut writer = WriteMultipart::new(upload);
        let mut size = 0_u64;
        futures::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    size += chunk.len() as u64;
                    writer.wait_for_capacity(4).await?;
                    writer.write(&chunk);
                }
                Err(error) => {
                    let _ = writer.abort().await;
                    return Err(ObjectsError::Unavailable(format!("upload interrupted: {error}")));
                }
            }
        }
        writer.finish().await?;
        Ok(size)
    }

    pub async fn get(&self, key: &ObjectKey) -> Result<Bytes, ObjectsError> {
        Ok(self.store.get(&key.path()).await?.bytes().await?)
    }

    /// The whole object, to be served over HTTP. From the local filesystem, the bytes
    /// remember their file, so that the server sends them with `sendfile` instead of
    /// copying them (see [`kernel::sendfile`]); from S3 they are what [`Self::get`] reads.
    pub async fn get_for_serving(&self, key: &ObjectKey) -> Result<Bytes, ObjectsError> {
        let Some(root) = &self.root else { return self.get(key).await };
        // A valid key names only files below the root.
        let path = root.join(key.as_str());
        let read = tokio::task::spawn_blocking(move || kernel::sendfile::read(&path))
            .await
            .unwrap_or_else(|stopped| Err(std::io::Error::other(stopped)));
        read.map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory => {
                ObjectsError::NotFound(key.to_string())
            }
            _ => ObjectsError::Unavailable(format!("cannot read {key}: {error}")),
        })
    }

    /// The object as a stream of chunks, for serving large files.
    pub async fn get_stream(
        &self,
        key: &ObjectKey,
    ) -> Result<impl Stream<Item = Result<Bytes, ObjectsError>> + use<>, ObjectsError> {
        let result = self.store.get(&key.path()).await?;
        Ok(result.into_stream().map_err(ObjectsError::from))
    }

    pub async fn get_range(
        &self,
        key: &ObjectKey,
        range: Range<u64>,
    ) -> Result<Bytes, ObjectsError> {
        Ok(self.store.get_range(&key.path(), range).await?)
    }

    pub async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectInfo>, ObjectsError> {
        match self.store.head(&key.path()).await {
            Ok(meta) => Ok(Some(ObjectInfo { size: meta.size, etag: meta.e_tag })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectsError> {
        match self.store.delete(&key.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes every object under `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &ObjectKey) -> Result<u64, ObjectsError> {
        let keys: Vec<StorePath> = self
            .store
            .list(Some(&prefix.path()))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        let mut deleted = 0;
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(deleted)
    }

    /// Keys under `prefix`, in no particular order.
    pub async fn list(&self, prefix: &ObjectKey) -> Result<Vec<String>, ObjectsError> {
        Ok(self
            .store
            .list(Some(&prefix.path()))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await?)
    }
}

/// Readiness of object storage, for `/readyz`.
pub struct ObjectsProbe(pub Objects);

#[async_trait::async_trait]
impl kernel::http::Probe for ObjectsProbe {
    fn name(&self) -> String {
        format!("storage.{}", self.0.engine())
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        for bad in ["", "/abs", "a//b", "../x", "a/../b", "a/./b", "a b", "a\\b", "trailing/", "é"]
        {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
        let key = ObjectKey::parse("tracks/01a2/original.flac").unwrap();
        assert_eq!(
            key.join("hls/128k.m3u8").unwrap().as_str(),
            "tracks/01a2/original.flac/hls/128k.m3u8"
        );
        assert!(key.join("../x").is_err());
    }
}
