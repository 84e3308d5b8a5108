//! Password hashing with argon2id at OWASP's recommended cost (19 MiB, 2 passes, 1 lane).
//! Hashing runs on the blocking pool and at most one per core at a time, so a burst of
//! logins neither stalls the async workers nor exhausts memory. Each hash works in a
//! 19 MiB buffer kept for the next one: allocated afresh on whichever blocking thread ran
//! it, such buffers stayed with that thread's allocator, and resident memory climbed with
//! every new thread that hashed.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::domain::{AuthError, Password};

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// One working buffer per permit, at most, reused from hash to hash.
    buffers: Arc<Buffers>,
}

#[derive(Default)]
struct Buffers(Mutex<Vec<Vec<Block>>>);

impl Buffers {
    fn take(&self) -> Vec<Block> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default()
    }

    fn give_back(&self, buffer: Vec<Block>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(buffer);
    }
}

#[async_trait::async_trait]
impl kernel::memory::Holder for Buffers {
    async fn holding(&self) -> kernel::memory::Holding {
        let buffers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let blocks: usize = buffers.iter().map(Vec::capacity).sum();
        kernel::memory::Holding {
            entries: buffers.len() as u64,
            bytes: (blocks * size_of::<Block>()) as u64,
        }
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let buffers = Arc::new(Buffers::default());
        let holder: Arc<dyn kernel::memory::Holder> = buffers.clone();
        kernel::memory::watch("auth.password_hashing", &holder);
        Self { permits: Arc::new(Semaphore::new(cores)), buffers }
    }
}

/// Argon2id v19 with m = 19456 KiB, t = 2, p = 1: the OWASP minimum.
fn argon2() -> Argon2<'static> {
    Argon2::default()
}

/// A hash of a password nobody knows, verified when an email is unknown so that the
/// answer takes as long as for a real account.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        hash_in(&mut Vec::new(), &argon2(), b"tonearm-dummy-password", &salt)
            .map(|hash| hash.to_string())
            .unwrap_or_default()
    })
}

/// Hashes `password` with `argon2`'s parameters in `memory` (grown to what they need when
/// they are the usual ones; a larger cost, from an older hash, works in memory of its own).
fn hash_in<'a>(
    memory: &mut Vec<Block>,
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &'a SaltString,
) -> argon2::password_hash::Result<PasswordHash<'a>> {
    let salt = salt.as_salt();
    let output = output_in(memory, argon2, password, salt, None)?;
    Ok(PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: argon2::password_hash::ParamsString::try_from(argon2.params())?,
        salt: Some(salt),
        hash: Some(output),
    })
}

fn output_in(
    memory: &mut Vec<Block>,
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: argon2::password_hash::Salt<'_>,
    length: Option<usize>,
) -> argon2::password_hash::Result<Output> {
    let mut salt_bytes = [0_u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let blocks = argon2.params().block_count();
    let length =
        length.or_else(|| argon2.params().output_len()).unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    if blocks <= Params::DEFAULT_M_COST as usize {
        memory.resize(blocks, Block::default());
        Output::init_with(length, |out| {
            Ok(argon2.hash_password_into_with_memory(password, salt_bytes, out, &mut memory[..])?)
        })
    } else {
        let mut own = vec![Block::default(); blocks];
        Output::init_with(length, |out| {
            Ok(argon2.hash_password_into_with_memory(password, salt_bytes, out, &mut own[..])?)
        })
    }
}

/// Whether `password` hashes to `stored` under the parameters `stored` names.
fn verify_in(memory: &mut Vec<Block>, password: &[u8], stored: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else { return false };
    let (Some(expected), Some(salt)) = (hash.hash, hash.salt) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let version = hash.version.map_or(Ok(Version::default()), Version::try_from);
    let (Ok(version), Ok(params)) = (version, Params::try_from(&hash)) else { return false };
    let argon2 = Argon2::new(algorithm, version, params);
    // `Output`'s equality takes the same time wherever the outputs differ.
    output_in(memory, &argon2, password, salt, Some(expected.len()))
        .is_ok_and(|computed| computed == expected)
}

impl PasswordHasher {
    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let secret = password.expose().to_owned();
        self.blocking(move |memory| {
            let salt = SaltString::generate(&mut OsRng);
            hash_in(memory, &argon2(), secret.as_bytes(), &salt)
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
        let matches =
            self.blocking(move |memory| verify_in(memory, secret.as_bytes(), &stored)).await?;
        Ok(known && matches)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit =
            self.permits.acquire().await.map_err(|_| AuthError::Signing("hasher closed".into()))?;
        let mut memory = self.buffers.take();
        let (done, memory) = tokio::task::spawn_blocking(move || {
            let done = work(&mut memory);
            (done, memory)
        })
        .await
        .map_err(|e| AuthError::Signing(format!("hashing task failed: {e}")))?;
        self.buffers.give_back(memory);
        Ok(done)
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

    #[tokio::test]
    async fn hashes_made_by_the_library_itself_still_verify() {
        use argon2::PasswordHasher as _;
        let hasher = PasswordHasher::default();
        let salt = SaltString::generate(&mut OsRng);
        let password = Password::parse("correct horse", "password").unwrap();
        // Another cost than ours, as an older account might have.
        let cheaper = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 3, 1, None).unwrap(),
        );
        let stored = cheaper.hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(hasher.verify(&password, Some(&stored)).await.unwrap());
        let ours = argon2().hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(hasher.verify(&password, Some(&ours)).await.unwrap());
        let wrong = Password::parse("wrong horse", "password").unwrap();
        assert!(!hasher.verify(&wrong, Some(&ours)).await.unwrap());
        assert!(!hasher.verify(&password, Some("not a hash")).await.unwrap());
    }

    #[tokio::test]
    async fn hashing_reuses_its_working_memory() {
        let hasher = PasswordHasher::default();
        let password = Password::parse("correct horse", "password").unwrap();
        for _ in 0..3 {
            hasher.hash(&password).await.unwrap();
        }
        let buffers = hasher.buffers.0.lock().unwrap();
        assert_eq!(buffers.len(), 1, "one buffer served the hashes one after another");
        assert_eq!(buffers[0].len(), Params::DEFAULT_M_COST as usize);
    }
}
