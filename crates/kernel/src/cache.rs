//! The cache port: short-lived shared state (session grants, rate-limit windows).
//!
//! `memory://` keeps it in this process (`tonearm up`); `redis://` shares it between
//! processes and replicas. The cache is never the source of truth: callers treat an error
//! as a miss and fall back to their store, so losing the cache degrades speed, not data.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use moka::{Expiry, sync::Cache as MokaCache};
use redis::{AsyncCommands, aio::ConnectionManager};

use crate::engine::{EngineError, EngineUrl};

#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct CacheError(String);

/// One hit counted in a fixed window that starts at the window's first hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowHit {
    /// Hits in the current window, this one included.
    pub count: u64,
    /// Time until the window closes and the count starts over.
    pub resets_in: Duration,
}

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError>;
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, keys: &[String]) -> Result<(), CacheError>;
    /// Counts a hit against `key`; the first hit opens a window of `window` length.
    async fn hit(&self, key: &str, window: Duration) -> Result<WindowHit, CacheError>;
    /// Takes back one hit counted by `hit` in the window still open: for a count taken
    /// before its outcome was known (a login attempt), when the outcome does not count.
    /// Never below zero; a window that has closed stays closed.
    async fn unhit(&self, key: &str) -> Result<(), CacheError>;
    /// The current window of `key` without counting a hit.
    async fn peek(&self, key: &str) -> Result<Option<WindowHit>, CacheError>;
    async fn ping(&self) -> Result<(), CacheError>;
    fn engine(&self) -> &'static str;
}

/// How much a `memory://` cache holds at most unless its URL says (`?max_mib=`).
pub const DEFAULT_MEMORY_MIB: u64 = 64;

/// Opens the cache a URL names: `memory://[?max_mib=N]` or `redis://host:port[/db]`.
/// `name` labels an in-process cache in the memory metrics.
pub async fn connect(name: &'static str, url: &EngineUrl) -> Result<Arc<dyn Cache>, EngineError> {
    match url.scheme() {
        "memory" => Ok(Arc::new(MemoryCache::new(name, memory_budget(url)?))),
        "redis" | "rediss" => Ok(Arc::new(RedisCache::connect(url).await?)),
        scheme => Err(EngineError::UnsupportedScheme {
            url: url.redacted(),
            scheme: scheme.to_owned(),
            supported: "memory://, redis://",
        }),
    }
}

/// The byte budget a `memory://` URL gives, `?max_mib=N` (default [`DEFAULT_MEMORY_MIB`]).
fn memory_budget(url: &EngineUrl) -> Result<u64, EngineError> {
    let invalid = |reason: String| EngineError::Invalid { url: url.redacted(), reason };
    let query = url.expose().split_once('?').map_or("", |(_, query)| query);
    let mut mib = DEFAULT_MEMORY_MIB;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "max_mib" => {
                mib = value.parse().ok().filter(|mib| *mib > 0).ok_or_else(|| {
                    invalid(format!("max_mib must be a whole number of MiB, not {value}"))
                })?;
            }
            other => {
                return Err(invalid(format!("unknown option {other}; memory:// takes max_mib")));
            }
        }
    }
    Ok(mib.saturating_mul(1024 * 1024))
}

/// The in-process adapter: bounded in bytes, with per-entry expiry. Past its budget the
/// least useful entries go first (for a rate-limit window, a fresh window then opens).
#[derive(Clone)]
pub struct MemoryCache {
    entries: Arc<MokaCache<String, Arc<MemoryEntry>>>,
}

struct MemoryEntry {
    value: Option<String>,
    hits: AtomicU64,
    created: Instant,
    ttl: Duration,
}

impl MemoryEntry {
    fn window(&self, now: Instant) -> WindowHit {
        WindowHit {
            count: self.hits.load(Ordering::Acquire),
            resets_in: (self.created + self.ttl).saturating_duration_since(now),
        }
    }
}

struct PerEntryTtl;

impl Expiry<String, Arc<MemoryEntry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<MemoryEntry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    /// A `set` over an existing key starts the new entry's own TTL, as Redis `PSETEX` does;
    /// moka's default would keep the replaced entry's expiry.
    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<MemoryEntry>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// What an entry costs beyond its key and value: the entry, its `Arc`, moka's bookkeeping.
const ENTRY_OVERHEAD_BYTES: usize = 160;

impl MemoryCache {
    /// A cache of at most `max_bytes` (keys, values and their bookkeeping), reported under
    /// `name` in the memory metrics.
    pub fn new(name: &'static str, max_bytes: u64) -> Self {
        let entries = Arc::new(
            MokaCache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, entry: &Arc<MemoryEntry>| {
                    let value = entry.value.as_ref().map_or(0, String::len);
                    u32::try_from(key.len() + value + ENTRY_OVERHEAD_BYTES).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .build(),
        );
        let holder: Arc<dyn crate::memory::Holder> = entries.clone();
        crate::memory::watch(name, &holder);
        Self { entries }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        Ok(self.entries.get(key).map(|entry| match &entry.value {
            Some(value) => value.clone(),
            None => entry.hits.load(Ordering::Acquire).to_string(),
        }))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        let entry = MemoryEntry {
            value: Some(value.to_owned()),
            hits: AtomicU64::new(0),
            created: Instant::now(),
            ttl,
        };
        self.entries.insert(key.to_owned(), Arc::new(entry));
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), CacheError> {
        for key in keys {
            self.entries.invalidate(key);
        }
        Ok(())
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<WindowHit, CacheError> {
        let now = Instant::now();
        let entry = self
            .entries
            .entry_by_ref(key)
            .or_insert_with(|| {
                Arc::new(MemoryEntry {
                    value: None,
                    hits: AtomicU64::new(0),
                    created: now,
                    ttl: window,
                })
            })
            .into_value();
        entry.hits.fetch_add(1, Ordering::AcqRel);
        Ok(entry.window(now))
    }

    async fn unhit(&self, key: &str) -> Result<(), CacheError> {
        if let Some(entry) = self.entries.get(key).filter(|entry| entry.value.is_none()) {
            let _ = entry
                .hits
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hits| hits.checked_sub(1));
        }
        Ok(())
    }

    async fn peek(&self, key: &str) -> Result<Option<WindowHit>, CacheError> {
        let now = Instant::now();
        Ok(self.entries.get(key).filter(|entry| entry.value.is_none()).map(|e| e.window(now)))
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }

    fn engine(&self) -> &'static str {
        "memory"
    }
}

/// The Redis adapter. Every call is bounded in time so that a Redis that hangs or dies
/// costs a request a few hundred milliseconds at most before the caller falls back.
#[derive(Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

const HIT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
";

/// `DECR` keeps the key's expiry, so the window ends when it would have.
const UNHIT_SCRIPT: &str = r"
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count and count > 0 then redis.call('DECR', KEYS[1]) end
return 0
";

impl RedisCache {
    pub async fn connect(url: &EngineUrl) -> Result<Self, EngineError> {
        let unreachable = |reason: String| EngineError::Unreachable {
            engine: "redis",
            url: url.redacted(),
            reason,
        };
        let client = redis::Client::open(url.expose())
            .map_err(|e| EngineError::Invalid { url: url.redacted(), reason: e.to_string() })?;
        // A direct first connection reports why Redis is unreachable (refused, unknown
        // host) at once; the manager's own retries would only report a timeout.
        tokio::time::timeout(Duration::from_secs(3), client.get_multiplexed_tokio_connection())
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let timeout = Duration::from_millis(500);
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            .set_number_of_retries(2)
            .set_max_delay(2_000);
        let connection = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let cache = Self { connection, prefix: "tonearm:".to_owned(), timeout };
        cache.ping().await.map_err(|e| unreachable(e.to_string()))?;
        Ok(cache)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn run<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(CacheError(error.to_string())),
            Err(_) => Err(CacheError("redis did not answer in time".into())),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        let mut connection = self.connection.clone();
        self.run(connection.get(self.key(key))).await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        self.run(connection.pset_ex(self.key(key), value, millis(ttl))).await
    }

    async fn delete(&self, keys: &[String]) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let keys: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        self.run(connection.del(keys)).await
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<WindowHit, CacheError> {
        let mut connection = self.connection.clone();
        // Made once: a script hashes its source when made, and this runs on every request.
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(HIT_SCRIPT));
        let mut invocation = SCRIPT.key(self.key(key));
        invocation.arg(millis(window));
        let (count, ttl_ms): (u64, i64) =
            self.run(invocation.invoke_async(&mut connection)).await?;
        Ok(WindowHit { count, resets_in: Duration::from_millis(ttl_ms.max(0).unsigned_abs()) })
    }

    async fn unhit(&self, key: &str) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(UNHIT_SCRIPT));
        self.run(SCRIPT.key(self.key(key)).invoke_async::<i64>(&mut connection)).await.map(drop)
    }

    async fn peek(&self, key: &str) -> Result<Option<WindowHit>, CacheError> {
        let mut connection = self.connection.clone();
        let key = self.key(key);
        let (count, ttl_ms): (Option<u64>, i64) =
            self.run(redis::pipe().get(&key).pttl(&key).query_async(&mut connection)).await?;
        Ok(count.map(|count| WindowHit {
            count,
            resets_in: Duration::from_millis(ttl_ms.max(0).unsigned_abs()),
        }))
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        self.run(redis::cmd("PING").query_async::<String>(&mut connection)).await.map(drop)
    }

    fn engine(&self) -> &'static str {
        "redis"
    }
}
