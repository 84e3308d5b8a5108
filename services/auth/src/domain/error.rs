use std::time::Duration;

/// Everything an account operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("that email is already registered")]
    EmailTaken,
    #[error("email or password is incorrect")]
    InvalidCredentials,
    /// A signed-in user's confirmation of their password (to change it, or to delete the
    /// account) did not match.
    #[error("{field} is incorrect")]
    WrongPassword { field: &'static str },
    #[error("too many failed sign-in attempts")]
    Throttled { retry_after: Duration },
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    #[error("no such session")]
    SessionNotFound,
    #[error("no such user")]
    UserNotFound,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("signing failed: {0}")]
    Signing(String),
}

impl AuthError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }
}
