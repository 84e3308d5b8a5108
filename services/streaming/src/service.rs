//! Streaming's operations: queue transcodes, hand out signed URLs, serve what they sign.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use bus::events::TrackUploaded;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use kernel::cache::Cache;
use objects::{ObjectKey, Objects, ObjectsError};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    config::StreamingConfig,
    domain::{
        JobStatus, NewJob, Packaged, SignatureError, SigningKey, UrlSigner,
        manifest::{MASTER, MPD, MediaFile},
        signing::{self, SignedQuery},
    },
    store::{StoreError, StreamingStore},
    transcoder::Transcoder,
};

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The track exists but cannot be streamed (yet): still processing, or failed.
    #[error("{0}")]
    NotPlayable(String),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Objects(#[from] ObjectsError),
}

/// Which manifest a signed URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manifest {
    Hls,
    Dash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// A served media response.
#[derive(Debug, Clone)]
pub enum Media {
    /// A playlist or manifest, rendered and signed for this request's expiry.
    Text { content_type: &'static str, body: String },
    /// An initialisation or media segment; immutable, so its tag never changes. The tag
    /// is shared bytes, so a cache hit copies neither.
    Segment { bytes: Bytes, etag: Bytes },
}

/// The consumer names under which handled events are recorded.
pub const UPLOADS_CONSUMER: &str = "streaming.uploads";
pub const DELETIONS_CONSUMER: &str = "streaming.deletions";

/// Signing keys are re-read at most this often when a URL names an unknown key (another
/// replica rotated).
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// How long a segment stays in a replica's memory after it was fetched from storage.
const SEGMENT_CACHE_TTL: Duration = Duration::from_secs(600);

pub struct StreamingService {
    store: Arc<dyn StreamingStore>,
    objects: Objects,
    cache: Arc<dyn Cache>,
    config: StreamingConfig,
    signer: RwLock<Arc<UrlSigner>>,
    keys_loaded_at: Mutex<Instant>,
    segments: Arc<moka::future::Cache<ObjectKey, (Bytes, Bytes)>>,
    /// Tracks deleted lately. A read that began before a deletion can put a segment back
    /// in the cache after it was dropped; no cached segment of these is served again.
    deleted: moka::sync::Cache<Uuid, ()>,
    transcoder: Transcoder,
    work_dir: PathBuf,
    /// Rung when a job is queued, so an idle worker starts at once.
    wake: Arc<Notify>,
}

/// Where a track's packaged media lives in object storage.
pub fn media_prefix(track_id: Uuid) -> Result<ObjectKey, ObjectsError> {
    ObjectKey::parse(&format!("streams/{track_id}"))
}

/// A file under [`media_prefix`], named in one parse (this is on every segment request).
fn media_key(track_id: Uuid, path_in_track: &str) -> Result<ObjectKey, ObjectsError> {
    ObjectKey::parse(&format!("streams/{track_id}/{path_in_track}"))
}

/// The public path of a file under a track (what a URL's signature covers).
pub fn media_path(track_id: Uuid, path_in_track: &str) -> String {
    format!("/media/{track_id}/{path_in_track}")
}

impl StreamingService {
    /// Builds the service, creating the first URL signing key on a new database.
    pub async fn open(
        store: Arc<dyn StreamingStore>,
        objects: Objects,
        cache: Arc<dyn Cache>,
        config: StreamingConfig,
        data_dir: &std::path::Path,
    ) -> Result<Self, StreamingError> {
        let signer = load_signer(store.as_ref()).await?;
        let segments = Arc::new(
            moka::future::Cache::builder()
                .max_capacity(config.segment_cache_mib.saturating_mul(1024 * 1024))
                .weigher(|_key: &ObjectKey, (bytes, _): &(Bytes, Bytes)| {
                    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(SEGMENT_CACHE_TTL)
                // A deleted track's segments are dropped from memory too.
                .support_invalidation_closures()
                .build(),
        );
        let holder: Arc<dyn kernel::memory::Holder> = segments.clone();
        kernel::memory::watch("streaming.segments", &holder);
        let transcoder = Transcoder::new(
            config.ffmpeg.clone(),
            config.ffprobe.clone(),
            Duration::from_secs(config.max_duration_secs),
        );
        let work_dir = config.work_dir.clone().unwrap_or_else(|| data_dir.join("transcode"));
        Ok(Self {
            store,
            objects,
            cache,
            config,
            signer: RwLock::new(Arc::new(signer)),
            // The first unknown key may be looked up at once.
            keys_loaded_at: Mutex::new(
                Instant::now().checked_sub(KEY_RELOAD_INTERVAL).unwrap_or_else(Instant::now),
            ),
            segments,
            // Twice the cache's lifetime: a read in flight at the deletion can put a segment
            // back, and that entry lives one more lifetime from then.
            deleted: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(SEGMENT_CACHE_TTL * 2)
                .build(),
            transcoder,
            work_dir,
            wake: Arc::new(Notify::new()),
        })
    }

    pub fn store(&self) -> &Arc<dyn StreamingStore> {
        &self.store
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    pub fn config(&self) -> &StreamingConfig {
        &self.config
    }

    pub fn transcoder(&self) -> &Transcoder {
        &self.transcoder
    }

    pub fn work_dir(&self) -> &std::path::Path {
        &self.work_dir
    }

    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
    }

    /// Queues a track's transcode, once per upload event.
    pub async fn enqueue(
        &self,
        event_id: Uuid,
        uploaded: &TrackUploaded,
    ) -> Result<bool, StreamingError> {
        let job = NewJob {
            track_id: uploaded.track_id,
            source_key: uploaded.source_key.clone(),
            format: uploaded.format.clone(),
            created_at: Utc::now(),
        };
        let queued = self.store.enqueue(UPLOADS_CONSUMER, event_id, &job).await?;
        if queued {
            tracing::info!(track_id = %job.track_id, "transcode queued");
            self.wake.notify_one();
        }
        Ok(queued)
    }

    /// Forgets a deleted track: its job, and its media (a transcode still running finds
    /// its job gone and removes what it wrote).
    pub async fn forget(&self, event_id: Uuid, track_id: Uuid) -> Result<(), StreamingError> {
        if self.store.forget(DELETIONS_CONSUMER, event_id, track_id).await? {
            tracing::info!(%track_id, "stream deleted with its track");
        }
        self.stop_serving(track_id);
        self.objects.delete_prefix(&media_prefix(track_id)?).await?;
        Ok(())
    }

    /// Stops serving a deleted track's media from this replica and drops its segments
    /// from memory. Every replica does so for each deleted track (see
    /// [`crate::events::CachedSegments`]); only one of them runs [`Self::forget`].
    pub fn stop_serving(&self, track_id: Uuid) {
        self.deleted.insert(track_id, ());
        let Ok(media) = media_prefix(track_id) else { return };
        let prefix = format!("{}/", media.as_str());
        if let Err(error) =
            self.segments.invalidate_entries_if(move |key, _| key.as_str().starts_with(&prefix))
        {
            tracing::warn!(%track_id, %error, "cannot drop cached segments");
        }
    }

    /// A signed URL of a ready track's HLS master playlist or DASH manifest. `base` is the
    /// scheme and host the URL starts with when no public URL is configured.
    pub async fn signed_url(
        &self,
        track_id: Uuid,
        manifest: Manifest,
        base: &str,
    ) -> Result<SignedUrl, StreamingError> {
        self.packaged(track_id).await?;
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.config.url_ttl_secs).unwrap_or(i64::MAX / 2);
        let expires = signing::expiry(now, ttl);
        let file = match manifest {
            Manifest::Hls => MASTER,
            Manifest::Dash => MPD,
        };
        let path = media_path(track_id, file);
        let query = self.signer().sign(&path, expires);
        let base = if self.config.public_url.is_empty() { base } else { &self.config.public_url };
        Ok(SignedUrl {
            url: format!("{}{path}?{query}", base.trim_end_matches('/')),
            expires_at: Utc.timestamp_opt(expires, 0).single().unwrap_or_else(Utc::now),
        })
    }

    /// Serves a file under a track for a signed request: a playlist or manifest rendered
    /// with every URI signed alike, or a segment.
    pub async fn media(
        &self,
        track_id: Uuid,
        path_in_track: &str,
        query: &SignedQuery,
    ) -> Result<Media, StreamingError> {
        let path = media_path(track_id, path_in_track);
        self.verify(&path, query).await?;
        if self.deleted.contains_key(&track_id) {
            return Err(StreamingError::NotFound("track"));
        }
        let expires: i64 = query.exp.as_deref().and_then(|e| e.parse().ok()).unwrap_or_default();
        let is_text = path_in_track.ends_with(".m3u8") || path_in_track.ends_with(".mpd");
        if is_text {
            return self.render(track_id, path_in_track, expires).await;
        }
        // Only the server signs, and it signs only packaged files: a valid signature
        // already names a segment, so the hot path needs no database read.
        let key = media_key(track_id, path_in_track)?;
        if let Some((bytes, etag)) = self.segments.get(&key).await {
            return Ok(Media::Segment { bytes, etag });
        }
        let objects = self.objects.clone();
        let sendfile = self.config.sendfile;
        // Concurrent misses for one segment share a single read.
        let fetched = self
            .segments
            .try_get_with(key.clone(), async move {
                let bytes = if sendfile {
                    objects.get_for_serving(&key).await?
                } else {
                    objects.get(&key).await?
                };
                let etag = Bytes::from(format!("\"{}\"", short_hash(&bytes)));
                Ok::<_, ObjectsError>((bytes, etag))
            })
            .await;
        match fetched {
            Ok((bytes, etag)) => Ok(Media::Segment { bytes, etag }),
            Err(error) => match error.as_ref() {
                ObjectsError::NotFound(_) => Err(StreamingError::NotFound("segment")),
                // The cache shares one read's error among every request that waited on it.
                other => Err(other.clone().into()),
            },
        }
    }

    async fn render(
        &self,
        track_id: Uuid,
        path_in_track: &str,
        expires: i64,
    ) -> Result<Media, StreamingError> {
        let signer = self.signer();
        let cache_key = format!(
            "streaming:rendered:{track_id}:{path_in_track}:{}:{expires}",
            signer.active_key_id()
        );
        let content_type = if path_in_track.ends_with(".mpd") {
            "application/dash+xml"
        } else {
            "application/vnd.apple.mpegurl"
        };
        match self.cache.get(&cache_key).await {
            Ok(Some(body)) => return Ok(Media::Text { content_type, body }),
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "playlist cache unavailable; rendering"),
        }
        let packaged = self.packaged(track_id).await?;
        let sign = |path: &str| signer.sign(&media_path(track_id, path), expires);
        let body = match packaged.resolve(path_in_track) {
            Some(MediaFile::Master) => packaged.master_playlist(&sign),
            Some(MediaFile::Mpd) => packaged.mpd(&sign),
            Some(MediaFile::MediaPlaylist(rendition)) => {
                let dir = format!("{}/", rendition.dir);
                let sign_in_dir = |file: &str| {
                    let in_track = file.strip_prefix(&dir).unwrap_or(file);
                    sign(&format!("{dir}{in_track}"))
                };
                Packaged::media_playlist(rendition, &sign_in_dir)
            }
            Some(MediaFile::Segment(_)) | None => return Err(StreamingError::NotFound("file")),
        };
        let ttl = Duration::from_secs(self.config.playlist_cache_secs);
        if !ttl.is_zero()
            && let Err(error) = self.cache.set(&cache_key, &body, ttl).await
        {
            tracing::debug!(%error, "cannot cache a playlist");
        }
        Ok(Media::Text { content_type, body })
    }

    /// A ready track's packaging, or why it cannot be streamed.
    async fn packaged(&self, track_id: Uuid) -> Result<Packaged, StreamingError> {
        let job = self.store.job(track_id).await?.ok_or(StreamingError::NotFound("track"))?;
        match (job.status, job.packaged) {
            (JobStatus::Done, Some(packaged)) => Ok(packaged),
            // A failed track is its uploader's business: the catalog tells them why. To
            // anyone here it does not exist.
            (JobStatus::Failed, _) => Err(StreamingError::NotFound("track")),
            _ => Err(StreamingError::NotPlayable("the track is still processing".to_owned())),
        }
    }

    fn signer(&self) -> Arc<UrlSigner> {
        match self.signer.read() {
            Ok(signer) => signer.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn verify(&self, path: &str, query: &SignedQuery) -> Result<(), SignatureError> {
        let now = Utc::now().timestamp();
        match self.signer().verify(path, query, now) {
            // Another replica may have rotated: look again, rarely, then decide.
            Err(SignatureError::UnknownKey) if self.may_reload_keys() => {
                match load_signer(self.store.as_ref()).await {
                    Ok(signer) => self.replace_signer(signer),
                    Err(error) => tracing::warn!(%error, "cannot reload URL signing keys"),
                }
                self.signer().verify(path, query, now)
            }
            other => other,
        }
    }

    fn may_reload_keys(&self) -> bool {
        let Ok(mut loaded_at) = self.keys_loaded_at.lock() else { return false };
        if loaded_at.elapsed() < KEY_RELOAD_INTERVAL {
            return false;
        }
        *loaded_at = Instant::now();
        true
    }

    fn replace_signer(&self, signer: UrlSigner) {
        match self.signer.write() {
            Ok(mut current) => *current = Arc::new(signer),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(signer),
        }
    }

    /// Adds a new signing key and signs with it from now on; URLs signed with older keys
    /// stay valid until they expire.
    pub async fn rotate_signing_key(&self) -> Result<String, StreamingError> {
        let key = SigningKey::generate(Utc::now());
        self.store.add_signing_key(&key).await?;
        self.replace_signer(load_signer(self.store.as_ref()).await?);
        Ok(key.id)
    }
}

/// Reads the signing keys, creating the first one on a new database.
async fn load_signer(store: &dyn StreamingStore) -> Result<UrlSigner, StreamingError> {
    if let Some(signer) = UrlSigner::new(store.signing_keys().await?) {
        return Ok(signer);
    }
    match store.add_signing_key(&SigningKey::generate(Utc::now())).await {
        // Another replica created it first.
        Ok(()) | Err(StoreError::Conflict) => {}
        Err(error) => return Err(error.into()),
    }
    UrlSigner::new(store.signing_keys().await?)
        .ok_or_else(|| StoreError::Corrupt("no signing key after creating one".into()).into())
}

/// A short content tag for ETags.
fn short_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().take(12).map(|b| format!("{b:02x}")).collect()
}
