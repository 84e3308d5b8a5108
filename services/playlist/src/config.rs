use kernel::engine::EngineUrl;
use serde::Deserialize;

/// `[playlist]` in the config file; `TONEARM_PLAYLIST__*` in the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PlaylistConfig {
    /// `sqlite://…` or `postgres://…`; unset means `sqlite://<data_dir>/playlist.db`.
    pub database_url: Option<EngineUrl>,
    /// Under `tonearm serve playlist`: the catalog's base URL, asked about tracks whose
    /// `track.published` has not arrived yet.
    pub catalog_url: Option<String>,
    /// The most tracks one playlist holds.
    pub max_tracks: usize,
}

impl Default for PlaylistConfig {
    fn default() -> Self {
        Self { database_url: None, catalog_url: None, max_tracks: crate::domain::MAX_TRACKS }
    }
}
