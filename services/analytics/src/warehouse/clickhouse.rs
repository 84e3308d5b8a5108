//! The ClickHouse warehouse, for `tonearm serve analytics` (in progress).

use kernel::db::SqlPool;

use super::WarehouseError;

pub struct ClickHouseWarehouse {
    _ledger: SqlPool,
}

impl ClickHouseWarehouse {
    /// Connects to `clickhouse://host:port/database` (the HTTP interface, port 8123 by
    /// default), creating the database when missing. `ledger` is the analytics service's
    /// own database (migrated by `analytics::store::open`), whose `counted_facts` table
    /// makes a redelivered fact count once.
    pub async fn connect(url: &str, ledger: SqlPool) -> Result<Self, WarehouseError> {
        let _ = (url, ledger);
        Err(WarehouseError::Unavailable("the ClickHouse warehouse is not built yet".into()))
    }
}
