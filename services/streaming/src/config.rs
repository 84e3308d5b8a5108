use std::path::PathBuf;

use kernel::engine::EngineUrl;
use serde::Deserialize;

/// `[streaming]` in the config file; `TONEARM_STREAMING__*` in the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StreamingConfig {
    /// `sqlite://…` or `postgres://…`; unset means `sqlite://<data_dir>/streaming.db`.
    pub database_url: Option<EngineUrl>,
    /// Playlists cached briefly (`redis://…` or `memory://`); unset means `memory://`.
    pub cache_url: Option<EngineUrl>,
    /// The ffmpeg and ffprobe programs (a name on the PATH, or a path).
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// Transcodes run at once; 0 means one per CPU core.
    pub workers: usize,
    /// Scratch space for transcodes; unset means `<data_dir>/transcode`.
    pub work_dir: Option<PathBuf>,
    /// Attempts at a transcode that keeps meeting transient faults before it fails.
    pub max_attempts: u32,
    /// The pause before the first retry, in seconds; each further retry doubles it.
    pub retry_backoff_secs: u64,
    /// Inputs longer than this are refused (failed), in seconds.
    pub max_duration_secs: u64,
    /// How long a signed URL stays valid, at least, in seconds.
    pub url_ttl_secs: u64,
    /// Where signed URLs point: a CDN or the public gateway, e.g.
    /// `https://media.example.com`. Empty: the host the request came to.
    pub public_url: String,
    /// How long rendered playlists and manifests stay cached, in seconds.
    pub playlist_cache_secs: u64,
    /// Memory for recently served segments, in MiB (0 turns the cache off).
    pub segment_cache_mib: u64,
    /// Send cached segments stored on the local filesystem with `sendfile` rather than
    /// copying them into the socket; off, for a filesystem that does not support it.
    pub sendfile: bool,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            cache_url: None,
            ffmpeg: PathBuf::from("ffmpeg"),
            ffprobe: PathBuf::from("ffprobe"),
            workers: 0,
            work_dir: None,
            max_attempts: 5,
            retry_backoff_secs: 5,
            max_duration_secs: 4 * 3600,
            url_ttl_secs: 6 * 3600,
            public_url: String::new(),
            playlist_cache_secs: 30,
            segment_cache_mib: 256,
            sendfile: true,
        }
    }
}

impl StreamingConfig {
    /// How many transcodes run at once.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }
}
