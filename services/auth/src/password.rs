//! Password hashing with argon2id at OWASP's recommended cost (19 MiB, 2 passes, 1 lane).
//! Hashing runs on the blocking pool and at most a few at a time, so a burst of logins
//! neither stalls the async workers nor exhausts memory.

use std::sync::{Arc, OnceLock};

use argon2::{
    Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _,
    password_hash::{SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::domain::{AuthError, Password};

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self { permits: Arc::new(Semaphore::new(cores * 2)) }
    }
}

fn argon2() -> Argon2<'static> {
    // Argon2id v19 with m = 19456 KiB, t = 2, p = 1: the OWASP minimum.
    Argon2::default()
}

/// A hash of a password nobody knows, verified when an email is unknown so that the
/// answer takes as long as for a real account.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(b"tonearm-dummy-password", &salt)
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

impl PasswordHasher {
    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let secret = password.expose().to_owned();
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(secret.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| AuthError::Signing(format!("argon2: {e}")))
        })
        .await?
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no
    /// account, so both cases cost the same.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<bool, AuthError> {
        let secret = password.expose().to_owned();
        let known = stored.is_some();
        let stored = stored.map_or_else(|| dummy_hash().to_owned(), str::to_owned);
        let matches = self
            .blocking(move || {
                PasswordHash::new(&stored)
                    .is_ok_and(|hash| argon2().verify_password(secret.as_bytes(), &hash).is_ok())
            })
            .await?;
        Ok(known && matches)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit =
            self.permits.acquire().await.map_err(|_| AuthError::Signing("hasher closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AuthError::Signing(format!("hashing task failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_never_match() {
        let hasher = PasswordHasher::default();
        let password = Password::parse("correct horse", "password").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify(&password, Some(&hash)).await.unwrap());
        let wrong = Password::parse("wrong horse", "password").unwrap();
        assert!(!hasher.verify(&wrong, Some(&hash)).await.unwrap());
        assert!(!hasher.verify(&password, None).await.unwrap());
    }
}
