//! Access-token verification against the auth service's JWKS, cached and refreshed when a
//! token names a key the gateway has not seen (a rotation).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use kernel::grant::{AccessClaims, SessionDirectory};
use tokio::sync::{Mutex, RwLock};

/// Keys are re-read at least this often, so a retired key stops verifying.
const KEYS_TTL: Duration = Duration::from_secs(300);
/// An unknown `kid` triggers at most one re-read per this interval.
const MISS_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is invalid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("cannot check tokens right now: {0}")]
    KeysUnavailable(String),
}

/// Tokens already verified, so that a player's every request does not check the same
/// Ed25519 signature again (the largest part of the gateway's own work per request).
/// Entries live no longer than the keys themselves are trusted, and expiry is still
/// checked on each use.
const VERIFIED_CAPACITY: u64 = 50_000;

pub struct TokenVerifier {
    directory: Arc<dyn SessionDirectory>,
    validation: Validation,
    keys: RwLock<KeyCache>,
    refreshing: Mutex<()>,
    verified: moka::sync::Cache<String, Arc<AccessClaims>>,
}

#[derive(Default)]
struct KeyCache {
    by_kid: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
}

impl KeyCache {
    fn is_stale(&self, after: Duration) -> bool {
        self.fetched_at.is_none_or(|at| at.elapsed() >= after)
    }
}

impl TokenVerifier {
    pub fn new(directory: Arc<dyn SessionDirectory>, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let verified = moka::sync::Cache::builder()
            .max_capacity(VERIFIED_CAPACITY)
            .time_to_live(KEYS_TTL)
            .build();
        Self {
            directory,
            validation,
            keys: RwLock::default(),
            refreshing: Mutex::new(()),
            verified,
        }
    }

    pub fn directory(&self) -> &dyn SessionDirectory {
        self.directory.as_ref()
    }

    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
            if claims.exp.saturating_add(leeway) < chrono::Utc::now().timestamp() {
                self.verified.invalidate(token);
                return Err(TokenError::Expired);
            }
            return Ok(claims.as_ref().clone());
        }
        let claims = self.check(token).await?;
        self.verified.insert(token.to_owned(), Arc::new(claims.clone()));
        Ok(claims)
    }

    async fn check(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = self.key(&kid).await?.ok_or(TokenError::Invalid)?;
        jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }

    async fn key(&self, kid: &str) -> Result<Option<Arc<DecodingKey>>, TokenError> {
        {
            let keys = self.keys.read().await;
            let known = keys.by_kid.get(kid).cloned();
            if known.is_some() && !keys.is_stale(KEYS_TTL) {
                return Ok(known);
            }
            if known.is_none() && !keys.is_stale(MISS_BACKOFF) {
                return Ok(None);
            }
        }
        let _one_at_a_time = self.refreshing.lock().await;
        {
            // Whoever held the lock before us may have fetched what we need.
            let keys = self.keys.read().await;
            if !keys.is_stale(MISS_BACKOFF) {
                return Ok(keys.by_kid.get(kid).cloned());
            }
        }
        match self.fetch().await {
            Ok(fresh) => {
                let mut keys = self.keys.write().await;
                *keys = fresh;
                Ok(keys.by_kid.get(kid).cloned())
            }
            Err(error) => {
                // Keep verifying with the keys we have while the directory is away.
                let keys = self.keys.read().await;
                match keys.by_kid.get(kid) {
                    Some(key) => Ok(Some(key.clone())),
                    None => Err(error),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<KeyCache, TokenError> {
        let raw =
            self.directory.jwks().await.map_err(|e| TokenError::KeysUnavailable(e.to_string()))?;
        let set: JwkSet =
            serde_json::from_value(raw).map_err(|e| TokenError::KeysUnavailable(e.to_string()))?;
        let by_kid = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, Arc::new(key)))
            })
            .collect();
        Ok(KeyCache { by_kid, fetched_at: Some(Instant::now()) })
    }
}
