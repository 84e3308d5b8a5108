//! The envelope every event travels in: `{id, type, version, occurred_at, key, payload,
//! headers}`. `key` picks the partition; consumers are idempotent on `id`.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};
use uuid::Uuid;

use crate::{events::Event, port::Message};

/// The W3C trace-context header carried from the producer's span to the consumer's.
pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    #[serde(serialize_with = "millis", deserialize_with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
    pub key: String,
    pub payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an event envelope: {0}")]
    Malformed(String),
    #[error("expected {expected} v{expected_version}, got {found} v{found_version}")]
    WrongType { expected: &'static str, expected_version: u32, found: String, found_version: u32 },
    #[error("{event_type} payload does not match its schema: {reason}")]
    Payload { event_type: String, reason: String },
}

impl Envelope {
    /// Wraps a typed event, stamped now with a fresh UUIDv7 and the current trace.
    pub fn new<E: Event>(event: &E, occurred_at: DateTime<Utc>) -> Self {
        let mut headers = BTreeMap::new();
        if let Some(traceparent) = kernel::telemetry::current_traceparent() {
            headers.insert(TRACEPARENT.to_owned(), traceparent);
        }
        Self {
            id: Uuid::now_v7(),
            event_type: E::TYPE.to_owned(),
            version: E::VERSION,
            occurred_at,
            key: event.key(),
            payload: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
            headers,
        }
    }

    /// The topic an event of this type lives on.
    pub fn topic(&self) -> &str {
        &self.event_type
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
    }

    /// The message that carries this envelope on its topic.
    pub fn to_message(&self) -> Message {
        Message {
            topic: self.event_type.clone(),
            key: self.key.clone(),
            id: Some(self.id),
            value: self.to_bytes(),
        }
    }

    /// The typed event inside, if it is of type `E` at a version `E` reads.
    pub fn decode<E: Event + DeserializeOwned>(&self) -> Result<E, DecodeError> {
        if self.event_type != E::TYPE || self.version != E::VERSION {
            return Err(DecodeError::WrongType {
                expected: E::TYPE,
                expected_version: E::VERSION,
                found: self.event_type.clone(),
                found_version: self.version,
            });
        }
        serde_json::from_value(self.payload.clone()).map_err(|e| DecodeError::Payload {
            event_type: self.event_type.clone(),
            reason: e.to_string(),
        })
    }
}

fn millis<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn rfc3339<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let raw = String::deserialize(deserializer)?;
    DateTime::parse_from_rfc3339(&raw).map(|t| t.to_utc()).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::UserRegistered;

    fn registered() -> UserRegistered {
        UserRegistered {
            user_id: Uuid::now_v7(),
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            tier: "free".into(),
            registered_at: Utc::now(),
        }
    }

    #[test]
    fn envelopes_round_trip_and_decode_to_their_type() {
        let event = registered();
        let envelope = Envelope::new(&event, Utc::now());
        assert_eq!(envelope.event_type, "user.registered");
        assert_eq!(envelope.key, event.user_id.to_string());
        let back = Envelope::from_bytes(&envelope.to_bytes()).unwrap();
        assert_eq!(back.id, envelope.id);
        let decoded: UserRegistered = back.decode().unwrap();
        assert_eq!(decoded.user_id, event.user_id);
        let json: serde_json::Value = serde_json::from_slice(&envelope.to_bytes()).unwrap();
        assert!(json["occurred_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(json["type"], "user.registered");
    }

    #[test]
    fn garbage_and_wrong_types_are_errors_not_panics() {
        assert!(Envelope::from_bytes(b"\xff\x00garbage").is_err());
        assert!(Envelope::from_bytes(b"{\"id\": 1}").is_err());
        let mut envelope = Envelope::new(&registered(), Utc::now());
        envelope.version = 99;
        assert!(matches!(envelope.decode::<UserRegistered>(), Err(DecodeError::WrongType { .. })));
        envelope.version = 1;
        envelope.payload = serde_json::json!({"user_id": "not a uuid"});
        assert!(matches!(envelope.decode::<UserRegistered>(), Err(DecodeError::Payload { .. })));
    }
}
