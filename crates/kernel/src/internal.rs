//! Trust between Tonearm's processes. Deployed apart (`tonearm serve`), a service must not
//! believe identity headers (`x-tonearm-*`) from whoever reaches it, nor answer its
//! internal routes (`/internal/…`) to them. The gateway and every service share a secret
//! (`internal.identity_secret`); whoever sends a request inside Tonearm adds a proof: an
//! expiry and an HMAC-SHA256 over it and the identity headers the request carries. A
//! service's [`guard`] drops identity headers without a valid proof and refuses internal
//! routes to requests without one.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::{caller, problem::Problem};

/// `<unix expiry>.<hex HMAC>` over the expiry and the request's identity headers.
pub const PROOF: &str = "x-tonearm-proof";

/// How long a proof stays valid: long enough for a request to cross a network, short
/// enough that a captured one is soon useless.
const PROOF_LIFETIME_SECS: i64 = 60;

/// `[internal]` in the config file; `TONEARM_INTERNAL__*` in the environment.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct InternalConfig {
    /// The secret the gateway and every service deployed alone share; `tonearm serve`
    /// needs it. (`tonearm up` has no network between its parts and needs none.)
    pub identity_secret: Option<SecretString>,
}

/// The shared secret, ready to prove and check requests.
#[derive(Clone)]
pub struct InternalKey(Arc<SecretString>);

impl std::fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalKey(…)")
    }
}

impl InternalKey {
    pub fn new(secret: SecretString) -> Self {
        Self(Arc::new(secret))
    }

    fn mac(&self, expires: i64, headers: &HeaderMap) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(expires.to_string().as_bytes());
        for name in caller::IDENTITY_HEADERS {
            mac.update(b"\n");
            if let Some(value) = headers.get(name) {
                mac.update(value.as_bytes());
            }
        }
        mac
    }

    /// Adds the proof for the identity headers `headers` carries now (none is fine: it
    /// proves an internal call without a caller).
    pub fn prove(&self, headers: &mut HeaderMap, now: i64) {
        let expires = now.saturating_add(PROOF_LIFETIME_SECS);
        let signature = hex::encode(self.mac(expires, headers).finalize().into_bytes());
        if let Ok(value) = HeaderValue::from_str(&format!("{expires}.{signature}")) {
            headers.insert(PROOF, value);
        }
    }

    /// [`Self::prove`] as of now: what a request about to leave carries.
    pub fn prove_now(&self, headers: &mut HeaderMap) {
        self.prove(headers, chrono::Utc::now().timestamp());
    }

    /// Whether `headers` carry a valid, unexpired proof of their identity headers.
    pub fn check(&self, headers: &HeaderMap, now: i64) -> bool {
        let Some((expires, signature)) = headers
            .get(PROOF)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once('.'))
        else {
            return false;
        };
        let (Ok(expires), Ok(signature)) = (expires.parse::<i64>(), hex::decode(signature)) else {
            return false;
        };
        let fresh = now <= expires && expires - now <= PROOF_LIFETIME_SECS;
        fresh && self.mac(expires, headers).verify_slice(&signature).is_ok()
    }
}

/// The middleware a service deployed alone runs first: identity headers without a valid
/// proof are dropped (the caller is then anonymous: 401 where one is needed), and internal
/// routes are refused to requests without one.
pub async fn guard(State(key): State<InternalKey>, mut request: Request, next: Next) -> Response {
    let now = chrono::Utc::now().timestamp();
    if !key.check(request.headers(), now) {
        if request.uri().path().starts_with("/internal/") {
            return Problem::forbidden("internal routes answer only Tonearm's own services")
                .into_response();
        }
        let headers = request.headers_mut();
        for name in caller::IDENTITY_HEADERS {
            headers.remove(name);
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> InternalKey {
        InternalKey::new(secret.to_owned().into())
    }

    fn identified() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(caller::USER_ID, HeaderValue::from_static("u"));
        headers.insert(caller::TIER, HeaderValue::from_static("free"));
        headers
    }

    #[test]
    fn a_proof_holds_for_the_same_secret_and_identity_until_it_expires() {
        let now = 1_000_000;
        let mut headers = identified();
        key("s").prove(&mut headers, now);
        assert!(key("s").check(&headers, now));
        assert!(key("s").check(&headers, now + PROOF_LIFETIME_SECS));
        assert!(!key("s").check(&headers, now + PROOF_LIFETIME_SECS + 1), "expired");
        assert!(!key("other").check(&headers, now), "another secret");
        headers.insert(caller::TIER, HeaderValue::from_static("premium"));
        assert!(!key("s").check(&headers, now), "a changed identity");
    }

    #[test]
    fn missing_or_malformed_proofs_fail() {
        let mut headers = identified();
        assert!(!key("s").check(&headers, 0));
        for bad in ["", "1", "x.00", "99999999999.zz", "1.00"] {
            headers.insert(PROOF, HeaderValue::from_static(bad));
            assert!(!key("s").check(&headers, 0), "{bad}");
        }
        // A proof from far in the future is refused too: it would outlive its lifetime.
        let mut future = identified();
        key("s").prove(&mut future, 10_000);
        assert!(!key("s").check(&future, 0));
    }
}
