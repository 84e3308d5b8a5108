use kernel::engine::EngineUrl;
use serde::Deserialize;

/// `[catalog]` in the config file; `TONEARM_CATALOG__*` in the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CatalogConfig {
    /// `sqlite://…` or `postgres://…`; unset means `sqlite://<data_dir>/catalog.db`.
    pub database_url: Option<EngineUrl>,
    /// The largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self { database_url: None, max_upload_bytes: 200 * 1024 * 1024 }
    }
}
