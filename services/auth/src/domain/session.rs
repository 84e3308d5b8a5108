use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A signed-in device. Its refresh tokens form one family: rotating one retires it, and
/// presenting a retired one again revokes the whole session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub session: Session,
    pub refresh: RefreshSecret,
    pub refresh_expires_at: DateTime<Utc>,
}

/// A refresh token as handed to the client; only its hash is ever stored.
#[derive(Clone)]
pub struct RefreshSecret {
    token: String,
}

impl RefreshSecret {
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self { token: URL_SAFE_NO_PAD.encode(bytes) }
    }

    pub fn from_client(token: &str) -> Self {
        Self { token: token.trim().to_owned() }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// SHA-256 suffices: the token carries 256 random bits, so no one guesses it offline.
    pub fn hash(&self) -> String {
        let digest = Sha256::digest(self.token.as_bytes());
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl std::fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshSecret([REDACTED])")
    }
}

/// What the store knows about a presented refresh token and its session.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub session_revoked_at: Option<DateTime<Utc>>,
    pub session_expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshVerdict {
    /// Rotate: retire this token and hand out a new pair.
    Rotate,
    /// A retired token came back: someone holds a copy, so the family dies.
    Reused,
    /// Expired or its session is gone: refuse, change nothing.
    Refuse,
}

pub fn judge_refresh(record: &RefreshRecord, now: DateTime<Utc>) -> RefreshVerdict {
    if record.session_revoked_at.is_some() || record.session_expires_at <= now {
        return RefreshVerdict::Refuse;
    }
    if record.rotated_at.is_some() {
        return RefreshVerdict::Reused;
    }
    if record.expires_at <= now {
        return RefreshVerdict::Refuse;
    }
    RefreshVerdict::Rotate
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn record(now: DateTime<Utc>) -> RefreshRecord {
        RefreshRecord {
            session_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            expires_at: now + Duration::days(30),
            rotated_at: None,
            session_revoked_at: None,
            session_expires_at: now + Duration::days(30),
        }
    }

    #[test]
    fn a_fresh_token_rotates() {
        let now = Utc::now();
        assert_eq!(judge_refresh(&record(now), now), RefreshVerdict::Rotate);
    }

    #[test]
    fn a_rotated_token_presented_again_is_reuse() {
        let now = Utc::now();
        let mut used = record(now);
        used.rotated_at = Some(now - Duration::minutes(1));
        assert_eq!(judge_refresh(&used, now), RefreshVerdict::Reused);
    }

    #[test]
    fn expired_tokens_and_dead_sessions_are_refused() {
        let now = Utc::now();
        let mut expired = record(now);
        expired.expires_at = now - Duration::seconds(1);
        assert_eq!(judge_refresh(&expired, now), RefreshVerdict::Refuse);
        let mut revoked = record(now);
        revoked.session_revoked_at = Some(now);
        revoked.rotated_at = Some(now);
        assert_eq!(judge_refresh(&revoked, now), RefreshVerdict::Refuse, "nothing left to revoke");
    }

    #[test]
    fn refresh_secrets_are_random_and_hashed() {
        let a = RefreshSecret::generate();
        let b = RefreshSecret::generate();
        assert_ne!(a.token(), b.token());
        assert_eq!(a.hash().len(), 64);
        assert_eq!(RefreshSecret::from_client(a.token()).hash(), a.hash());
        assert!(!format!("{a:?}").contains(a.token()));
    }
}
