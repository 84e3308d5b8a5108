//! The embedded warehouse, for `tonearm up` (in progress).

use std::path::Path;

use super::WarehouseError;

pub struct EmbeddedWarehouse {}

impl EmbeddedWarehouse {
    /// Opens (creating when missing) the warehouse file at `path`, e.g.
    /// `<data_dir>/analytics-warehouse.db`.
    pub async fn open(path: &Path) -> Result<Self, WarehouseError> {
        let _ = path;
        Err(WarehouseError::Unavailable("the embedded warehouse is not built yet".into()))
    }
}
