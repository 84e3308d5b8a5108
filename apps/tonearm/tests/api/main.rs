//! Tonearm end to end: the app runs on a random port and the tests speak HTTP to it like
//! any client, against real SQLite, PostgreSQL and Redis.

mod accounts;
mod faults;
mod limits;
mod ops;
mod remote;
mod support;
mod tokens;
