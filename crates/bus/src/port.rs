//! The bus port: publish batches durably, consume as a group with explicit commits, read
//! from any position.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::envelope::{DecodeError, Envelope};

/// What a producer hands the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    /// Picks the partition: messages with one key keep their order.
    pub key: String,
    /// The event id, which makes a repeated publish of the same event land once.
    pub id: Option<Uuid>,
    pub value: Vec<u8>,
}

/// What a consumer gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub timestamp: DateTime<Utc>,
    pub key: String,
    pub value: Vec<u8>,
}

impl Record {
    pub fn envelope(&self) -> Result<Envelope, DecodeError> {
        Envelope::from_bytes(&self.value)
    }
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Beginning,
    End,
    /// The same offset in every partition.
    Offset(u64),
    /// The first record at or after this time, in every partition.
    Time(DateTime<Utc>),
}

impl std::str::FromStr for Position {
    type Err = String;

    /// `beginning`, `end`, an offset, or an RFC 3339 time.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "beginning" | "earliest" => Ok(Self::Beginning),
            "end" | "latest" => Ok(Self::End),
            _ => raw
                .parse::<u64>()
                .map(Self::Offset)
                .or_else(|_| DateTime::parse_from_rfc3339(raw).map(|t| Self::Time(t.to_utc())))
                .map_err(|_| format!("`{raw}` is neither an offset nor an RFC 3339 time")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
    /// Records currently retained, where the engine can tell cheaply.
    pub records: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    #[error("no such topic: {0}")]
    UnknownTopic(String),
    #[error("{0}")]
    Invalid(String),
    #[error("event log I/O: {0}")]
    Io(#[from] std::io::Error),
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Appends a batch and returns once it is durable: fsynced (embedded) or acknowledged
    /// by every in-sync replica (Kafka). A message whose id was already appended is not
    /// appended again.
    async fn publish(&self, batch: &[Message]) -> Result<(), BusError>;

    /// Joins consumer group `group` on `topic`, starting from the group's committed
    /// position (the beginning for a new group).
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError>;

    /// Reads `topic` from `from` without a group, for tools.
    async fn read(&self, topic: &str, from: Position) -> Result<Box<dyn Subscription>, BusError>;

    /// Moves a group's committed position on a topic. The group's consumers pick it up on
    /// their next poll (embedded) or must be stopped first (Kafka).
    async fn reset_group(&self, topic: &str, group: &str, to: Position) -> Result<(), BusError>;

    async fn topics(&self) -> Result<Vec<TopicInfo>, BusError>;

    /// Creates a topic with the configured partitions if it does not exist.
    async fn ensure_topic(&self, topic: &str) -> Result<(), BusError>;

    async fn ping(&self) -> Result<(), BusError>;

    fn engine(&self) -> &'static str;

    /// Whether other processes share this bus, so that a service may run as several
    /// replicas on it (Kafka). An embedded log belongs to the one process that opened it.
    fn shared_between_processes(&self) -> bool {
        false
    }
}

#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` records, waiting at most `wait` for the first; in order per partition.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError>;

    /// Commits every record up to and including these (one per partition is enough):
    /// after a restart the group resumes after them.
    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError>;

    /// Records appended past the group's committed offsets in the partitions this
    /// subscription holds (the consumer lag), where the engine knows without a request:
    /// the embedded log in the process that appends, Kafka from the client's statistics.
    fn lag(&self) -> Option<u64> {
        None
    }
}
