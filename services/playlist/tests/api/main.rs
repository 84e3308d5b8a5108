//! The playlist service against real engines: its store contract on SQLite and
//! PostgreSQL, and its rules around the catalog. PostgreSQL must be running (see `testkit`); the PostgreSQL cases fail, never
//! skip, when it is unreachable.

// Tests may unwrap (see clippy.toml); the contract cases are plain async functions that
// clippy does not recognise as tests, so the allowance is spelled out here.
#![allow(clippy::unwrap_used)]

mod service;
mod store_contract;
