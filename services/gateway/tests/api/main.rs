//! The gateway's router called without a socket: a local service and signed media behind
//! it, on a fake session directory, an in-memory cache and an embedded event log.

// Tests may unwrap (see clippy.toml); helpers shared by the tests are plain functions
// that clippy does not recognise as tests, so the allowance is spelled out here.
#![allow(clippy::unwrap_used)]

mod request_events;
mod support;
