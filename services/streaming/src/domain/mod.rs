//! Streaming's plain types and rules: no HTTP, no SQL, no processes.

pub mod job;
pub mod ladder;
pub mod manifest;
pub mod signing;

pub use job::{Job, JobResult, JobStatus, NewJob};
pub use ladder::{LADDER, Packaged, PackagedRendition, Segment};
pub use signing::{SignatureError, SigningKey, UrlSigner};
