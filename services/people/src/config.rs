use std::{path::PathBuf, time::Duration};

use kernel::engine::EngineUrl;
use secrecy::SecretString;
use serde::Deserialize;

/// `[people]` in the config file; `TONEARM_PEOPLE__*` in the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PeopleConfig {
    /// `sqlite://…` or `postgres://…`; unset means `sqlite://<data_dir>/people.db`.
    pub database_url: Option<EngineUrl>,
    /// Where presence lives and how live messages reach every replica: `redis://…`, or
    /// unset for this process's memory (one process only).
    pub cache_url: Option<EngineUrl>,
    /// Under `tonearm serve people`: the auth service's base URL, asked about accounts
    /// whose `user.registered` has not arrived yet.
    pub auth_url: Option<String>,
    /// Under `tonearm serve people`: the catalog's base URL, asked about the tracks people
    /// say they are playing.
    pub catalog_url: Option<String>,
    /// How long a now-playing lasts without a heartbeat or a play.
    pub presence_ttl_secs: u64,
    /// How often a live stream sends a comment to keep idle proxies from closing it.
    pub live_keep_alive_secs: u64,
    /// Messages a slow live stream may fall behind by before it misses some.
    pub live_buffer: usize,
    pub billing: BillingConfig,
    pub mail: MailConfig,
}

impl Default for PeopleConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            cache_url: None,
            auth_url: None,
            catalog_url: None,
            presence_ttl_secs: 60,
            live_keep_alive_secs: 15,
            live_buffer: 64,
            billing: BillingConfig::default(),
            mail: MailConfig::default(),
        }
    }
}

impl PeopleConfig {
    pub fn presence_ttl(&self) -> Duration {
        Duration::from_secs(self.presence_ttl_secs.max(1))
    }
}

/// `[people.billing]`: the payment provider's webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BillingConfig {
    /// Endpoint secrets that sign webhooks; during a rotation, list the new and the old.
    /// Under `tonearm up` with none set, one is made and kept in the data directory.
    pub webhook_secrets: Vec<SecretString>,
    /// How far a signature's timestamp may be from now.
    pub tolerance_secs: u64,
    /// The largest webhook body accepted.
    pub max_body_bytes: usize,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self { webhook_secrets: Vec::new(), tolerance_secs: 300, max_body_bytes: 64 * 1024 }
    }
}

/// `[people.mail]`: how mail leaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MailConfig {
    /// `smtp://[user:password@]host[:port]` (STARTTLS when the relay offers it),
    /// `smtps://…` (TLS from the start), or unset to write `.eml` files to `dir`.
    pub smtp_url: Option<EngineUrl>,
    /// Where messages are written without a relay; unset means `<data_dir>/mail`.
    pub dir: Option<PathBuf>,
    pub from: String,
    /// The player's address, linked from messages.
    pub public_url: String,
    /// How long a sender holds a message while it talks to the relay.
    pub claim_secs: u64,
    /// The longest pause between attempts at a message the relay refused.
    pub max_backoff_secs: u64,
    /// How long one conversation with the relay may take.
    pub timeout_secs: u64,
    /// How often an idle sender looks for mail.
    pub poll_ms: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            dir: None,
            from: "Tonearm <no-reply@tonearm.localhost>".to_owned(),
            public_url: "http://127.0.0.1:8080".to_owned(),
            claim_secs: 60,
            max_backoff_secs: 300,
            timeout_secs: 10,
            poll_ms: 500,
        }
    }
}
