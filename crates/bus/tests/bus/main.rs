//! The bus against real engines: one contract suite on the embedded log and on a Kafka
//! broker, then what only the embedded log promises (recovery, retention, idempotent
//! appends, readers in other processes).

// Tests may unwrap (see clippy.toml); shared case functions are not recognised as tests.
#![allow(clippy::unwrap_used)]

mod contract;
mod embedded;
mod inbox;
mod kafka;
mod support;
