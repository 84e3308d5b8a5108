//! The analytics service's tests, one binary: the warehouse and store contracts, each run
//! on both of their engines, and the event consumers end to end.

// Tests may unwrap (see clippy.toml); helpers shared by the tests are plain functions
// that clippy does not recognise as tests, so the allowance is spelled out here.
#![allow(clippy::unwrap_used)]

mod events;
mod store_contract;
mod warehouse;
