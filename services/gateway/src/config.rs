use std::{collections::BTreeMap, path::PathBuf};

use kernel::engine::EngineUrl;
use serde::Deserialize;

/// `[gateway]` in the config file; `TONEARM_GATEWAY__*` in the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// Where rate-limit windows live: `memory://` (one process) or `redis://…` (shared by
    /// every gateway replica). Unset means `memory://`.
    pub cache_url: Option<EngineUrl>,
    /// Base URLs of the services under `tonearm serve gateway`, e.g. `auth = "http://auth:8081"`.
    /// Several replicas of one service may be listed, separated by commas: they are taken
    /// in turn, and a failed request that is safe to repeat goes to the next.
    pub upstreams: BTreeMap<String, String>,
    pub upstream_timeout_secs: u64,
    /// Further attempts at a request that is safe to repeat (idempotent, no body) after a
    /// transport failure.
    pub upstream_retries: u32,
    /// Consecutive transport failures after which a replica is skipped, and for how long.
    pub upstream_breaker_failures: u32,
    pub upstream_breaker_open_secs: u64,
    pub rate_limits: RateLimits,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Origins allowed by CORS; empty allows any origin (tokens travel in headers, not cookies).
    pub cors_allowed_origins: Vec<String>,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    pub issuer: String,
    pub audience: String,
    /// How long a session grant read from the shared cache is trusted.
    pub grant_max_age_secs: u64,
    /// The per-IP guard on signed media requests (playlists and segments), which skip the
    /// API budgets: a sustained rate and a burst, sized for players (a few segments per
    /// minute per stream, a burst on start and seek) behind a shared address.
    pub media_per_ip_per_second: u32,
    pub media_burst_per_ip: u32,
    /// How often the request samples gathered for analytics go out as `api.request` events.
    pub request_events_flush_ms: u64,
    /// Most samples in one `api.request` event; a busier interval goes out as several.
    pub request_events_max_batch: usize,
    /// How long `GET /v1/home` waits for each of its parts before answering without it.
    pub home_part_timeout_ms: u64,
    /// The built web player, served at `/` (relative to the working directory); unset
    /// serves none.
    pub web_dir: Option<PathBuf>,
}

/// Requests per minute.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RateLimits {
    pub free_per_minute: u64,
    pub premium_per_minute: u64,
    pub anonymous_per_minute: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { free_per_minute: 100, premium_per_minute: 1000, anonymous_per_minute: 100 }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            cache_url: None,
            upstreams: BTreeMap::new(),
            upstream_timeout_secs: 30,
            upstream_retries: 2,
            upstream_breaker_failures: 5,
            upstream_breaker_open_secs: 10,
            rate_limits: RateLimits::default(),
            body_limit_bytes: 1024 * 1024,
            cors_allowed_origins: Vec::new(),
            trust_forwarded_for: false,
            issuer: kernel::grant::DEFAULT_ISSUER.to_owned(),
            audience: kernel::grant::DEFAULT_AUDIENCE.to_owned(),
            grant_max_age_secs: 60,
            media_per_ip_per_second: 50,
            media_burst_per_ip: 200,
            request_events_flush_ms: 1000,
            request_events_max_batch: 5000,
            home_part_timeout_ms: 2_000,
            web_dir: Some(PathBuf::from("web/dist")),
        }
    }
}
