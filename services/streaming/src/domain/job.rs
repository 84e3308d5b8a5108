use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Packaged;

/// Where a track's transcode stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting to run (first time, or again after a transient fault at `next_attempt_at`).
    Queued,
    /// Claimed by a worker, which holds it while its lease lasts.
    Running,
    /// Packaged and playable.
    Done,
    /// Gave up: the input cannot be decoded, or faults outlasted every attempt.
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Done, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == raw)
    }
}

/// A transcode to queue, from a `track.uploaded` event.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub track_id: Uuid,
    /// The original's object key.
    pub source_key: String,
    pub format: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub track_id: Uuid,
    pub source_key: String,
    pub format: String,
    pub status: JobStatus,
    /// Claims so far, the current one included.
    pub attempts: u32,
    /// The last failure: why it failed, or the fault it is waiting out.
    pub error: Option<String>,
    /// Present once done.
    pub packaged: Option<Packaged>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How a claimed job ends.
#[derive(Debug, Clone, PartialEq)]
pub enum JobResult {
    Done(Packaged),
    Failed(String),
}
