use std::time::Duration;

use kernel::engine::EngineUrl;
use secrecy::SecretString;
use serde::Deserialize;

/// `[auth]` in the config file; `TONEARM_AUTH__*` in the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// `sqlite://…` or `postgres://…`; unset means `sqlite://<data_dir>/auth.db`.
    pub database_url: Option<EngineUrl>,
    /// `memory://` or `redis://…`; unset means `memory://`.
    pub cache_url: Option<EngineUrl>,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub session_cache_ttl_secs: u64,
    /// How long a cached session grant is trusted before it is confirmed in the database.
    pub grant_max_age_secs: u64,
    /// An Ed25519 PKCS#8 PEM private key; unset means one is generated and stored.
    pub signing_key_pem: Option<SecretString>,
    pub login_throttle: LoginThrottle,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LoginThrottle {
    pub window_secs: u64,
    pub max_failures_per_email: u64,
    pub max_failures_per_ip: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            cache_url: None,
            issuer: kernel::grant::DEFAULT_ISSUER.to_owned(),
            audience: kernel::grant::DEFAULT_AUDIENCE.to_owned(),
            access_token_ttl_secs: 7 * 24 * 3600,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            session_cache_ttl_secs: 7 * 24 * 3600,
            grant_max_age_secs: 60,
            signing_key_pem: None,
            login_throttle: LoginThrottle::default(),
        }
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self { window_secs: 15 * 60, max_failures_per_email: 10, max_failures_per_ip: 100 }
    }
}

impl AuthConfig {
    pub fn access_token_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    pub fn refresh_token_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_secs)
    }

    pub fn session_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.session_cache_ttl_secs)
    }

    pub fn grant_max_age(&self) -> Duration {
        Duration::from_secs(self.grant_max_age_secs)
    }
}
