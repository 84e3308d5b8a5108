//! Composes Tonearm's services into one process (`up`) or runs one of them alone on the
//! engines its configuration names (`serve`). This crate is the only one that knows every
//! service; the services meet here, through HTTP routers, the session directory and events.

pub mod compose;
pub mod import;
pub mod settings;

pub use compose::{App, ServiceName};
pub use settings::Settings;
