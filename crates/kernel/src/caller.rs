//! The caller's identity as the gateway hands it to services.
//!
//! The gateway strips these headers from every incoming request and sets them only after
//! it has verified the access token and the session, so a service behind it can trust
//! them. Services must therefore only be reachable through the gateway.

use std::net::IpAddr;

use axum::{extract::FromRequestParts, http::request::Parts};
use uuid::Uuid;

use crate::{
    grant::{Role, SessionGrant, Tier},
    problem::Problem,
};

pub const USER_ID: &str = "x-tonearm-user-id";
pub const SESSION_ID: &str = "x-tonearm-session-id";
pub const TIER: &str = "x-tonearm-tier";
pub const ROLE: &str = "x-tonearm-role";
pub const CLIENT_IP: &str = "x-tonearm-client-ip";

/// Every header the gateway owns; none of them may come from a client.
pub const IDENTITY_HEADERS: [&str; 5] = [USER_ID, SESSION_ID, TIER, ROLE, CLIENT_IP];

/// A signed-in caller. Extracting it from a request without identity answers 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub tier: Tier,
    pub role: Role,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Headers that carry a session's identity to a service.
    pub fn headers(grant: &SessionGrant) -> [(&'static str, String); 4] {
        let caller = Self {
            user_id: grant.user_id,
            session_id: grant.session_id,
            tier: grant.tier,
            role: grant.role,
        };
        caller.identity()
    }

    /// Headers that carry this identity on to another service.
    pub fn identity(&self) -> [(&'static str, String); 4] {
        [
            (USER_ID, self.user_id.to_string()),
            (SESSION_ID, self.session_id.to_string()),
            (TIER, self.tier.to_string()),
            (ROLE, self.role.to_string()),
        ]
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|value| value.to_str().ok())
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let missing = || Problem::unauthorized("a valid access token is required");
        Ok(Self {
            user_id: header(parts, USER_ID).and_then(|v| v.parse().ok()).ok_or_else(missing)?,
            session_id: header(parts, SESSION_ID)
                .and_then(|v| v.parse().ok())
                .ok_or_else(missing)?,
            tier: header(parts, TIER).and_then(|v| v.parse().ok()).ok_or_else(missing)?,
            role: header(parts, ROLE).and_then(|v| v.parse().ok()).ok_or_else(missing)?,
        })
    }
}

/// Where a request came from, as far as the gateway could tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            ip: header(parts, CLIENT_IP).and_then(|v| v.parse().ok()),
            user_agent: header(parts, "user-agent").map(|v| v.chars().take(256).collect()),
        })
    }
}
