//! The people store's contract, run on both engines, and the live channel's fan-out
//! across two hubs sharing a real Redis.

// Tests may unwrap (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod live_redis;
mod store_contract;
