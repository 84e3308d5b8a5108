use kernel::engine::EngineUrl;
use serde::Deserialize;

/// `[analytics]` in the config file; `TONEARM_ANALYTICS__*` in the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AnalyticsConfig {
    /// The service's own records: `sqlite://…` or `postgres://…`; unset means
    /// `sqlite://<data_dir>/analytics.db`.
    pub database_url: Option<EngineUrl>,
    /// Where plays are counted: `clickhouse://host:8123/database`, or unset for the
    /// embedded warehouse, `<data_dir>/analytics-warehouse.db`.
    pub warehouse_url: Option<EngineUrl>,
    /// Under `tonearm serve analytics`: the catalog's base URL, asked about tracks whose
    /// `track.published` has not arrived yet.
    pub catalog_url: Option<String>,
    /// The most events the warehouse takes in one insert.
    pub ingest_batch: usize,
    /// The embedded warehouse's page cache, in MiB: its writer's (which keeps the rollups
    /// a batch of plays dirties), and an eighth of it for each of its readers.
    pub warehouse_cache_mib: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            warehouse_url: None,
            catalog_url: None,
            ingest_batch: 5_000,
            warehouse_cache_mib: 64,
        }
    }
}
