//! The catalog service against real engines: its store contract and its search, on SQLite
//! and PostgreSQL.
//! PostgreSQL must be running (see `testkit`); the PostgreSQL cases fail, never skip, when
//! it is unreachable.

// Tests may unwrap (see clippy.toml); the contract cases are plain async functions that
// clippy does not recognise as tests, so the allowance is spelled out here.
#![allow(clippy::unwrap_used)]

mod search;
mod store_contract;
