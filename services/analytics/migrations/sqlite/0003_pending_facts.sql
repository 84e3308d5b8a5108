-- Facts on their way to the ClickHouse warehouse, written (and committed) before the
-- insert and removed in the transaction that claims them in `counted_facts`. A fact found
-- here when it is claimed again may already be in ClickHouse (the insert was acknowledged
-- but the claim's commit was lost), so the warehouse is asked before it is inserted.
CREATE TABLE pending_facts (
    fact_id    BLOB PRIMARY KEY NOT NULL,
    pending_at TEXT NOT NULL
) WITHOUT ROWID;
