//! Events a service records in its own outbox table, in the same transaction as the change
//! they describe, so that a change and its event are never separated. Publishing the rows
//! to the bus is the relay's job.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// One event waiting in an outbox. `key` picks the partition (a user or track id).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub id: Uuid,
    pub event_type: &'static str,
    pub version: i32,
    pub key: String,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

impl OutboxEvent {
    pub fn new(
        event_type: &'static str,
        version: i32,
        key: impl Into<String>,
        payload: &impl Serialize,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type,
            version,
            key: key.into(),
            payload: serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),
            occurred_at,
        }
    }
}
