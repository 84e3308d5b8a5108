//! Accounts, sessions and tokens as plain types and rules: no HTTP, no SQL.

mod account;
mod error;
mod session;

pub use account::{DisplayName, Email, NewUser, Password, User, tier_at};
pub use error::AuthError;
pub use session::{
    NewSession, RefreshRecord, RefreshSecret, RefreshVerdict, Session, judge_refresh,
};
