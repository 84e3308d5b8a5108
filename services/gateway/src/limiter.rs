//! Per-caller request budgets: a fixed one-minute window opened by the caller's first
//! request. Windows live in the shared cache (Redis under `serve`, so every replica
//! spends one budget); if that cache fails, this replica counts in memory until it is back.

use std::{sync::Arc, time::Duration};

use kernel::{
    cache::{Cache, MemoryCache, WindowHit},
    grant::Tier,
};

use crate::config::RateLimits;

const WINDOW: Duration = Duration::from_secs(60);

/// Whose budget a request spends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Budget {
    User { id: String, tier: Tier },
    Address(String),
}

/// The outcome of counting one request, with what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: u64,
    pub allowed: bool,
}

impl Decision {
    pub fn from_hit(limit: u64, hit: WindowHit) -> Self {
        Self {
            limit,
            remaining: limit.saturating_sub(hit.count),
            // Round up: "0 s" would invite a client to retry too early.
            reset_secs: hit.resets_in.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX),
            allowed: hit.count <= limit,
        }
    }
}

pub struct RateLimiter {
    shared: Arc<dyn Cache>,
    local: MemoryCache,
    limits: RateLimits,
}

impl RateLimiter {
    pub fn new(shared: Arc<dyn Cache>, limits: RateLimits) -> Self {
        metrics::counter!("gateway_rate_limit_fallbacks_total").increment(0);
        // Windows kept here while the shared cache is away: about 200 bytes each.
        Self { shared, local: MemoryCache::new("gateway.local_limits", 16 * 1024 * 1024), limits }
    }

    pub fn limit(&self, budget: &Budget) -> u64 {
        match budget {
            Budget::User { tier: Tier::Free, .. } => self.limits.free_per_minute,
            Budget::User { tier: Tier::Premium, .. } => self.limits.premium_per_minute,
            Budget::Address(_) => self.limits.anonymous_per_minute,
        }
    }

    /// Counts one request against `budget` and decides on it.
    pub async fn spend(&self, budget: &Budget) -> Decision {
        self.decide(budget, self.count(&budget.key()).await)
    }

    /// Counts one request in the window under `key`: in the shared cache, or here while it
    /// is away; `None` when neither can count.
    pub async fn count(&self, key: &str) -> Option<WindowHit> {
        match self.shared.hit(key, WINDOW).await {
            Ok(hit) => Some(hit),
            Err(error) => {
                tracing::warn!(%error, "shared rate-limit store unavailable; counting locally");
                metrics::counter!("gateway_rate_limit_fallbacks_total").increment(1);
                self.local.hit(key, WINDOW).await.ok()
            }
        }
    }

    /// The decision on a counted request; one that could not be counted is let through.
    pub fn decide(&self, budget: &Budget, hit: Option<WindowHit>) -> Decision {
        let limit = self.limit(budget);
        match hit {
            Some(hit) => Decision::from_hit(limit, hit),
            None => Decision { limit, remaining: limit, reset_secs: 60, allowed: true },
        }
    }
}

impl Budget {
    /// The window a budget is counted in; a user's does not depend on the tier, so it can
    /// be counted before the session (and with it the tier) is known.
    pub fn key(&self) -> String {
        match self {
            Budget::User { id, .. } => user_key(id),
            Budget::Address(ip) => format!("ratelimit:ip:{ip}"),
        }
    }
}

/// The window of a user's budget.
pub fn user_key(user_id: &str) -> String {
    format!("ratelimit:user:{user_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(count: u64, millis: u64) -> WindowHit {
        WindowHit { count, resets_in: Duration::from_millis(millis) }
    }

    #[test]
    fn the_request_past_the_limit_is_refused() {
        assert!(Decision::from_hit(100, hit(100, 1_000)).allowed);
        let refused = Decision::from_hit(100, hit(101, 1_000));
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
    }

    #[test]
    fn reset_rounds_up_to_whole_seconds() {
        assert_eq!(Decision::from_hit(100, hit(1, 59_001)).reset_secs, 60);
        assert_eq!(Decision::from_hit(100, hit(1, 1)).reset_secs, 1);
    }

    #[tokio::test]
    async fn budgets_are_per_caller_and_per_tier() {
        let limiter = RateLimiter::new(
            Arc::new(MemoryCache::new("test", 1 << 20)),
            RateLimits { free_per_minute: 2, premium_per_minute: 3, anonymous_per_minute: 1 },
        );
        let ada = Budget::User { id: "ada".into(), tier: Tier::Free };
        let bob = Budget::User { id: "bob".into(), tier: Tier::Free };
        assert!(limiter.spend(&ada).await.allowed);
        assert!(limiter.spend(&ada).await.allowed);
        assert!(!limiter.spend(&ada).await.allowed);
        assert!(limiter.spend(&bob).await.allowed, "another user keeps their budget");
        let ada_premium = Budget::User { id: "ada".into(), tier: Tier::Premium };
        assert!(!limiter.spend(&ada_premium).await.allowed, "4th hit exceeds premium's 3 too");
        let ip = Budget::Address("127.0.0.1".into());
        assert!(limiter.spend(&ip).await.allowed);
        assert!(!limiter.spend(&ip).await.allowed);
    }
}
