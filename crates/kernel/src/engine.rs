//! Engines are chosen by URL scheme in one place; a URL names exactly one engine.

use std::fmt;

use serde::Deserialize;

/// A connection URL whose password never reaches a log line.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct EngineUrl(String);

impl EngineUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn scheme(&self) -> &str {
        self.0.split_once(':').map_or("", |(scheme, _)| scheme)
    }

    /// The URL with any password replaced, fit for logs and error messages.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut parsed) if parsed.password().is_some() => {
                let _ = parsed.set_password(Some("***"));
                parsed.to_string()
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for EngineUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for EngineUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Why an engine could not be opened. Startup stops on these: Tonearm never falls back
/// to another engine than the one configured.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{url}: the `{scheme}` scheme is not supported here (supported: {supported})")]
    UnsupportedScheme { url: String, scheme: String, supported: &'static str },
    #[error("{url}: cannot reach {engine}: {reason}")]
    Unreachable { engine: &'static str, url: String, reason: String },
    #[error("{url}: {reason}")]
    Invalid { url: String, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_but_keeps_the_rest() {
        let url = EngineUrl::new("postgres://app:hunter2@db:5432/tonearm_auth");
        assert_eq!(url.redacted(), "postgres://app:***@db:5432/tonearm_auth");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(url.scheme(), "postgres");
        assert_eq!(EngineUrl::new("memory://").redacted(), "memory://");
    }
}
