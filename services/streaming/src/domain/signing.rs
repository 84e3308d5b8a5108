//! Signed media URLs: an HMAC-SHA256 over the path and the expiry, under a named key so
//! keys can rotate while URLs signed with the previous one stay valid.
//!
//! A URL carries `exp` (Unix seconds), `kid` and `sig` (base64url, no padding) in its query.
//! Playlists and manifests sign every URI inside them with their own expiry and key, so a
//! player holding one valid URL can play the whole track, and nothing else.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signed expiries are rounded up to this many seconds, so every URL signed in the same
/// window is the same URL and the playlists behind it can be cached and shared.
pub const EXPIRY_GRANULARITY_SECS: i64 = 300;

#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub id: String,
    pub secret: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl SigningKey {
    /// A new random 256-bit key.
    pub fn generate(now: DateTime<Utc>) -> Self {
        use rand::RngCore as _;
        let mut secret = vec![0_u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        // Dated for operators, with a random tail so two keys made in one second differ.
        let id =
            format!("m{}-{:04x}", now.format("%Y%m%d%H%M%S"), rand::rngs::OsRng.next_u32() >> 16);
        Self { id, secret, created_at: now }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the URL is not signed")]
    Missing,
    #[error("the URL's signature is malformed")]
    Malformed,
    #[error("the URL was signed with a key this server does not know")]
    UnknownKey,
    #[error("the URL's signature does not match")]
    Invalid,
    #[error("the URL has expired")]
    Expired,
}

/// The signature parameters of a request's query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignedQuery {
    pub exp: Option<String>,
    pub kid: Option<String>,
    pub sig: Option<String>,
}

impl SignedQuery {
    /// Reads `exp`, `kid` and `sig` from a query string (the first of each; other
    /// parameters are ignored).
    pub fn parse(query: &str) -> Self {
        let mut signed = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "exp" => &mut signed.exp,
                "kid" => &mut signed.kid,
                "sig" => &mut signed.sig,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        signed
    }
}

/// Signs with the newest key; verifies with any key it holds.
#[derive(Debug, Clone)]
pub struct UrlSigner {
    /// Newest first.
    keys: Vec<SigningKey>,
}

impl UrlSigner {
    /// `None` without keys: a signer must be able to sign.
    pub fn new(mut keys: Vec<SigningKey>) -> Option<Self> {
        keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        (!keys.is_empty()).then_some(Self { keys })
    }

    pub fn active_key_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn knows(&self, key_id: &str) -> bool {
        self.keys.iter().any(|key| key.id == key_id)
    }

    /// The query string (`exp=…&kid=…&sig=…`) that authorises `path` until `expires`.
    pub fn sign(&self, path: &str, expires: i64) -> String {
        let key = &self.keys[0];
        let signature = URL_SAFE_NO_PAD.encode(mac(key, path, expires).finalize().into_bytes());
        format!("exp={expires}&kid={}&sig={signature}", key.id)
    }

    /// Checks a request for `path` at `now` (Unix seconds). The signature is checked before
    /// the expiry, so an edited expiry reads as tampering, not as expired.
    pub fn verify(&self, path: &str, query: &SignedQuery, now: i64) -> Result<(), SignatureError> {
        let (Some(exp), Some(kid), Some(sig)) = (&query.exp, &query.kid, &query.sig) else {
            return Err(SignatureError::Missing);
        };
        let expires: i64 = exp.parse().map_err(|_| SignatureError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(sig).map_err(|_| SignatureError::Malformed)?;
        let key = self.keys.iter().find(|key| key.id == *kid).ok_or(SignatureError::UnknownKey)?;
        mac(key, path, expires).verify_slice(&signature).map_err(|_| SignatureError::Invalid)?;
        if now >= expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

fn mac(key: &SigningKey, path: &str, expires: i64) -> HmacSha256 {
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(&key.secret).expect("HMAC takes keys of any length");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(expires.to_string().as_bytes());
    mac
}

/// The expiry for a URL signed at `now` that must last at least `ttl_secs`.
pub fn expiry(now: i64, ttl_secs: i64) -> i64 {
    let at_least = now + ttl_secs;
    (at_least + EXPIRY_GRANULARITY_SECS - 1).div_euclid(EXPIRY_GRANULARITY_SECS)
        * EXPIRY_GRANULARITY_SECS
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn key(id: &str, secret: &[u8], minute: u32) -> SigningKey {
        SigningKey {
            id: id.to_owned(),
            secret: secret.to_vec(),
            created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap(),
        }
    }

    fn query(signed: &str) -> SignedQuery {
        SignedQuery::parse(signed)
    }

    #[test]
    fn a_query_yields_its_first_signature_parameters_decoded() {
        let query = SignedQuery::parse("t=1&exp=300&kid=k%2D1&sig=a%3Db&sig=second&exp=9");
        assert_eq!(query.exp.as_deref(), Some("300"));
        assert_eq!(query.kid.as_deref(), Some("k-1"));
        assert_eq!(query.sig.as_deref(), Some("a=b"));
        assert_eq!(SignedQuery::parse(""), SignedQuery::default());
    }

    const PATH: &str = "/media/0190a3c1-0000-7000-8000-000000000000/master.m3u8";

    #[test]
    fn a_signed_path_verifies_until_it_expires() {
        let signer = UrlSigner::new(vec![key("k1", b"secret", 0)]).unwrap();
        let signed = query(&signer.sign(PATH, 1_000));
        assert_eq!(signer.verify(PATH, &signed, 999), Ok(()));
        assert_eq!(signer.verify(PATH, &signed, 1_000), Err(SignatureError::Expired));
    }

    /// Every byte of the path, the expiry and the signature is covered: changing any one
    /// of them (to any other character a URL could carry there) fails verification.
    #[test]
    fn changing_any_byte_of_path_expiry_or_signature_is_refused() {
        let signer = UrlSigner::new(vec![key("k1", b"secret", 0)]).unwrap();
        let signed = query(&signer.sign(PATH, 1_000));
        let changed = |text: &str, at: usize, to: char| {
            let mut bytes: Vec<char> = text.chars().collect();
            bytes[at] = to;
            bytes.into_iter().collect::<String>()
        };
        let alphabet = "0123456789abcdefABCDEF-_/.~xyzXYZ";
        let mut tried = 0;
        for at in 0..PATH.len() {
            for to in alphabet.chars().filter(|&c| PATH.chars().nth(at) != Some(c)) {
                let path = changed(PATH, at, to);
                assert!(signer.verify(&path, &signed, 0).is_err(), "{path}");
                tried += 1;
            }
        }
        let exp = signed.exp.clone().unwrap();
        for at in 0..exp.len() {
            for to in "0123456789".chars().filter(|&c| exp.chars().nth(at) != Some(c)) {
                let later = SignedQuery { exp: Some(changed(&exp, at, to)), ..signed.clone() };
                assert!(signer.verify(PATH, &later, 0).is_err(), "{later:?}");
                tried += 1;
            }
        }
        let sig = signed.sig.clone().unwrap();
        for at in 0..sig.len() {
            for to in alphabet.chars().filter(|&c| sig.chars().nth(at) != Some(c)) {
                let forged = SignedQuery { sig: Some(changed(&sig, at, to)), ..signed.clone() };
                assert!(signer.verify(PATH, &forged, 0).is_err(), "{forged:?}");
                tried += 1;
            }
        }
        assert!(tried > 2_000, "{tried} changes tried");
    }

    #[test]
    fn tampering_with_path_expiry_or_signature_is_detected() {
        let signer = UrlSigner::new(vec![key("k1", b"secret", 0)]).unwrap();
        let signed = query(&signer.sign(PATH, 1_000));
        let other_path = PATH.replace("master", "other");
        assert_eq!(signer.verify(&other_path, &signed, 0), Err(SignatureError::Invalid));
        let later = SignedQuery { exp: Some("99999".into()), ..signed.clone() };
        assert_eq!(signer.verify(PATH, &later, 0), Err(SignatureError::Invalid));
        let mut sig = signed.sig.clone().unwrap();
        sig.replace_range(0..1, if sig.starts_with('A') { "B" } else { "A" });
        let forged = SignedQuery { sig: Some(sig), ..signed.clone() };
        assert_eq!(signer.verify(PATH, &forged, 0), Err(SignatureError::Invalid));
        let garbled = SignedQuery { sig: Some("***".into()), ..signed.clone() };
        assert_eq!(signer.verify(PATH, &garbled, 0), Err(SignatureError::Malformed));
        let unsigned = SignedQuery { sig: None, ..signed };
        assert_eq!(signer.verify(PATH, &unsigned, 0), Err(SignatureError::Missing));
    }

    #[test]
    fn a_rotated_key_signs_while_the_old_one_still_verifies() {
        let old = UrlSigner::new(vec![key("k1", b"old", 0)]).unwrap();
        let signed_before = query(&old.sign(PATH, 1_000));
        let rotated = UrlSigner::new(vec![key("k1", b"old", 0), key("k2", b"new", 5)]).unwrap();
        assert_eq!(rotated.active_key_id(), "k2");
        assert_eq!(rotated.verify(PATH, &signed_before, 0), Ok(()));
        let signed_after = query(&rotated.sign(PATH, 1_000));
        assert_eq!(signed_after.kid.as_deref(), Some("k2"));
        assert_eq!(old.verify(PATH, &signed_after, 0), Err(SignatureError::UnknownKey));
    }

    #[test]
    fn another_servers_key_does_not_verify() {
        let ours = UrlSigner::new(vec![key("k1", b"ours", 0)]).unwrap();
        let theirs = UrlSigner::new(vec![key("k1", b"theirs", 0)]).unwrap();
        let signed = query(&theirs.sign(PATH, 1_000));
        assert_eq!(ours.verify(PATH, &signed, 0), Err(SignatureError::Invalid));
    }

    #[test]
    fn expiries_are_rounded_up_to_shared_windows() {
        assert_eq!(expiry(1_000, 3_600), 4_800);
        assert_eq!(expiry(1_200, 3_600), 4_800, "same window, same URL");
        assert_eq!(expiry(1_201, 3_600), 5_100);
        assert!(expiry(1_201, 3_600) >= 1_201 + 3_600);
    }
}
