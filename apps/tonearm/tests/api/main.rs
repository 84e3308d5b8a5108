//! Tonearm end to end: the app runs on a random port and the tests speak HTTP to it like
//! any client, against real SQLite, PostgreSQL and Redis.

// Tests may unwrap (see clippy.toml); helpers shared by the tests are plain functions
// that clippy does not recognise as tests, so the allowance is spelled out here.
#![allow(clippy::unwrap_used)]

mod abuse;
mod accounts;
mod analytics;
mod authorization;
mod catalog;
mod cluster;
mod deploy;
mod events;
mod faults;
mod home;
mod limits;
mod ops;
mod outages;
mod people;
mod playlists;
mod probe;
mod recommendations;
mod remote;
mod request_events;
mod schema_fuzz;
mod streaming;
mod support;
mod tokens;
mod upstreams;
mod voice;
mod web;
