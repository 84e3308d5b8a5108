use chrono::{DateTime, Utc};
use kernel::grant::{Role, Tier};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::AuthError;

/// An email address, trimmed and lower-cased, so that one mailbox is one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        let email = raw.trim().to_lowercase();
        if email.len() > 254 || !email_address::EmailAddress::is_valid(&email) {
            return Err(AuthError::invalid("email", "is not a valid email address"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed: 8 to 128 characters, never logged.
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str, field: &'static str) -> Result<Self, AuthError> {
        let chars = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            return Err(AuthError::invalid(
                field,
                format!("must be {} to {} characters long", Self::MIN_CHARS, Self::MAX_CHARS),
            ));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    /// A password that was never valid still gets checked, so a login attempt with an
    /// absurd password costs the same as any other.
    pub fn unchecked(raw: &str) -> Self {
        Self(SecretString::from(raw.chars().take(Self::MAX_CHARS).collect::<String>()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// The name shown to other listeners: 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > Self::MAX_CHARS {
            return Err(AuthError::invalid(
                "display_name",
                format!("must be 1 to {} characters long", Self::MAX_CHARS),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(AuthError::invalid("display_name", "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    /// The tier in force now: premium while a paid period lasts, or when an operator
    /// granted it.
    pub tier: Tier,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// When paid premium ends; absent when none was paid for (or an operator's grant
    /// makes it moot).
    pub premium_until: Option<DateTime<Utc>>,
}

/// The tier in force at `now` for an account whose operator-set tier is `base` and whose
/// paid premium lasts until `premium_until`, and the end worth reporting.
pub fn tier_at(
    base: Tier,
    premium_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Tier, Option<DateTime<Utc>>) {
    match (base, premium_until) {
        (Tier::Premium, _) => (Tier::Premium, None),
        (Tier::Free, Some(until)) if until > now => (Tier::Premium, Some(until)),
        (Tier::Free, _) => (Tier::Free, None),
    }
}

/// A user about to be stored, with the hash of the password they chose.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user: User,
    pub password_hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lowercased_and_validated() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in ["", "ada", "ada@", "@example.com", "a b@example.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn passwords_are_8_to_128_characters() {
        assert!(Password::parse("1234567", "password").is_err());
        assert!(Password::parse("12345678", "password").is_ok());
        assert!(Password::parse(&"é".repeat(128), "password").is_ok(), "characters, not bytes");
        assert!(Password::parse(&"x".repeat(129), "password").is_err());
        assert_eq!(
            format!("{:?}", Password::parse("supersecret", "p").unwrap()),
            "Password([REDACTED])"
        );
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ada ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\u{0007}b").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
    }
}
