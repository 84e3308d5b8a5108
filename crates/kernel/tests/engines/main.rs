//! The kernel's engines against the real thing: the cache port on its in-process and
//! Redis adapters, and SQL pools on SQLite and PostgreSQL. PostgreSQL and Redis must be
//! running (see `support`); a test fails, never skips, when one is unreachable.

// Tests may unwrap (see clippy.toml); the contract cases are plain async functions that
// clippy does not recognise as tests, so the allowance is spelled out here.
#![allow(clippy::unwrap_used)]

mod cache_connect;
mod cache_contract;
mod sql_pool;
mod support;
