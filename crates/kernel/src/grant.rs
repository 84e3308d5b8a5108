//! Who a signed-in caller is, as the auth service decides and the gateway enforces.
//!
//! An access token proves a session existed when it was issued; the *grant* says what that
//! session may do now. Grants live in the shared cache under [`session_key`], written by
//! the auth service and read by the gateway, so a revoked session or a new tier applies to
//! the very next request.

use std::{fmt, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::cache::Cache;

/// The default `iss` and `aud` of access tokens; both sides read them from config.
pub const DEFAULT_ISSUER: &str = "tonearm";
pub const DEFAULT_AUDIENCE: &str = "tonearm-api";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Premium,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected {expected})")]
pub struct UnknownVariant {
    kind: &'static str,
    value: String,
    expected: &'static str,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Premium => "premium",
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
}

impl FromStr for Tier {
    type Err = UnknownVariant;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "free" => Ok(Self::Free),
            "premium" => Ok(Self::Premium),
            _ => {
                Err(UnknownVariant { kind: "tier", value: value.into(), expected: "free|premium" })
            }
        }
    }
}

impl FromStr for Role {
    type Err = UnknownVariant;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "user" => Ok(Self::User),
            "admin" => Ok(Self::Admin),
            _ => Err(UnknownVariant { kind: "role", value: value.into(), expected: "user|admin" }),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of a Tonearm access token (header `kid`, algorithm EdDSA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub tier: Tier,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// What a live session may do right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub tier: Tier,
    pub role: Role,
    /// When the auth service last confirmed this grant against its database.
    pub checked_at: DateTime<Utc>,
    /// When a paid premium `tier` ends (absent for free accounts and for premium an
    /// operator granted).
    #[serde(default)]
    pub premium_until: Option<DateTime<Utc>>,
}

impl SessionGrant {
    /// A cached grant older than `max_age` is confirmed again before it is trusted, which
    /// bounds how long a change made while the cache was unreachable can go unseen.
    /// A grant whose paid premium has ended is stale at once, so the next request sees
    /// the free tier.
    pub fn is_fresh(&self, now: DateTime<Utc>, max_age: Duration) -> bool {
        let age = now.signed_duration_since(self.checked_at);
        let premium_over = self.premium_until.is_some_and(|until| until <= now);
        !premium_over
            && age >= chrono::Duration::zero()
            && age.to_std().is_ok_and(|age| age <= max_age)
    }
}

pub fn session_key(session_id: Uuid) -> String {
    format!("session:{session_id}")
}

/// Reads a grant from the shared cache if it is younger than `max_age`; a stale entry or
/// a cache fault reads as a miss.
pub async fn fresh_cached_grant(
    cache: &dyn Cache,
    session_id: Uuid,
    max_age: Duration,
) -> Option<SessionGrant> {
    match cache.get(&session_key(session_id)).await {
        Ok(Some(raw)) => serde_json::from_str::<SessionGrant>(&raw)
            .ok()
            .filter(|grant| grant.is_fresh(Utc::now(), max_age)),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, "session cache unavailable; asking the session directory");
            None
        }
    }
}

/// Where the gateway learns what a session may do and which keys sign access tokens.
/// In one process it is the auth service itself; across processes, an HTTP client.
#[async_trait]
pub trait SessionDirectory: Send + Sync + 'static {
    /// The grant of a live session, or `None` when it is unknown, revoked or expired.
    async fn grant(&self, session_id: Uuid) -> Result<Option<SessionGrant>, DirectoryError>;
    /// The JSON Web Key Set that verifies access tokens.
    async fn jwks(&self) -> Result<serde_json::Value, DirectoryError>;
}

#[derive(Debug, thiserror::Error)]
#[error("session directory unavailable: {0}")]
pub struct DirectoryError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_and_roles_round_trip_through_text() {
        for tier in [Tier::Free, Tier::Premium] {
            assert_eq!(tier.as_str().parse::<Tier>().unwrap(), tier);
        }
        for role in [Role::User, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("gold".parse::<Tier>().is_err());
    }

    #[test]
    fn a_grant_goes_stale_after_its_max_age() {
        let now = Utc::now();
        let grant = SessionGrant {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            tier: Tier::Free,
            role: Role::User,
            checked_at: now - chrono::Duration::seconds(61),
            premium_until: None,
        };
        assert!(!grant.is_fresh(now, Duration::from_secs(60)));
        assert!(grant.is_fresh(now, Duration::from_secs(120)));
    }

    #[test]
    fn a_grant_goes_stale_when_its_paid_premium_ends() {
        let now = Utc::now();
        let grant = SessionGrant {
            user_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            tier: Tier::Premium,
            role: Role::User,
            checked_at: now,
            premium_until: Some(now + chrono::Duration::seconds(1)),
        };
        let max_age = Duration::from_secs(60);
        assert!(grant.is_fresh(now, max_age));
        assert!(!grant.is_fresh(now + chrono::Duration::seconds(1), max_age));
    }
}
