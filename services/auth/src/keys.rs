//! The keys that sign access tokens (Ed25519, `EdDSA`).
//!
//! A key comes from config (`auth.signing_key_pem`) or is generated on first start; either
//! way it is kept in the store, so every replica signs with the newest key and the JWKS
//! publishes the newest two: after a rotation, tokens signed with the previous key keep
//! verifying until they expire.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
        OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
    },
};
use kernel::grant::AccessClaims;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::{
    domain::AuthError,
    store::{AuthStore, SigningKeyRecord},
};

/// How many keys the JWKS publishes: the active one and its predecessor.
const PUBLISHED_KEYS: usize = 2;

pub struct KeyRing {
    kid: String,
    signing: EncodingKey,
    jwks: JwkSet,
}

impl KeyRing {
    /// Loads the keys, storing the configured key or a new one when needed.
    pub async fn load(
        store: &dyn AuthStore,
        configured: Option<&SecretString>,
    ) -> Result<Self, AuthError> {
        if let Some(pem) = configured {
            store.add_signing_key(&record_from_pem(pem.expose_secret())?).await?;
        }
        let mut keys = store.signing_keys().await?;
        if keys.is_empty() {
            store.add_signing_key(&generate()?).await?;
            // Re-read: a replica starting at the same moment may have stored its own key,
            // and all replicas must agree on the newest.
            keys = store.signing_keys().await?;
        }
        if let Some(pem) = configured {
            let wanted = record_from_pem(pem.expose_secret())?.kid;
            keys.sort_by_key(|key| key.kid != wanted);
        }
        Self::from_records(&keys)
    }

    /// Adds a new key; the next start of each replica signs with it.
    pub async fn rotate(store: &dyn AuthStore) -> Result<String, AuthError> {
        let key = generate()?;
        store.add_signing_key(&key).await?;
        Ok(key.kid)
    }

    fn from_records(keys: &[SigningKeyRecord]) -> Result<Self, AuthError> {
        let active = keys.first().ok_or_else(|| AuthError::Signing("no signing key".into()))?;
        let signing = EncodingKey::from_ed_pem(active.private_key_pem.as_bytes())
            .map_err(|e| AuthError::Signing(format!("key {}: {e}", active.kid)))?;
        let jwks = JwkSet { keys: keys.iter().take(PUBLISHED_KEYS).map(public_jwk).collect() };
        Ok(Self { kid: active.kid.clone(), signing, jwks })
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, AuthError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing)
            .map_err(|e| AuthError::Signing(e.to_string()))
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    pub fn active_kid(&self) -> &str {
        &self.kid
    }
}

fn public_jwk(record: &SigningKeyRecord) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            key_id: Some(record.kid.clone()),
            ..CommonParameters::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: record.public_key.clone(),
        }),
    }
}

fn generate() -> Result<SigningKeyRecord, AuthError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    record_from_key(&key)
}

fn record_from_pem(pem: &str) -> Result<SigningKeyRecord, AuthError> {
    let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| {
        AuthError::Signing(format!("auth.signing_key_pem is not an Ed25519 PKCS#8 key: {e}"))
    })?;
    record_from_key(&key)
}

fn record_from_key(key: &SigningKey) -> Result<SigningKeyRecord, AuthError> {
    let public = key.verifying_key().to_bytes();
    let digest = Sha256::digest(public);
    let kid = URL_SAFE_NO_PAD.encode(&digest[..12]);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| AuthError::Signing(format!("encoding key: {e}")))?;
    Ok(SigningKeyRecord {
        kid,
        private_key_pem: pem.to_string(),
        public_key: URL_SAFE_NO_PAD.encode(public),
        created_at: Utc::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use uuid::Uuid;

    #[test]
    fn tokens_verify_with_the_published_key() {
        let record = generate().unwrap();
        let ring = KeyRing::from_records(std::slice::from_ref(&record)).unwrap();
        let now = Utc::now().timestamp();
        let claims = AccessClaims {
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            tier: kernel::grant::Tier::Free,
            role: kernel::grant::Role::User,
            iat: now,
            exp: now + 60,
            iss: "tonearm".into(),
            aud: "tonearm-api".into(),
        };
        let token = ring.sign(&claims).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(record.kid.as_str()));
        let jwk = ring.jwks().find(&record.kid).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["tonearm-api"]);
        validation.set_issuer(&["tonearm"]);
        let decoded = jsonwebtoken::decode::<AccessClaims>(
            &token,
            &DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims, claims);
    }

    #[test]
    fn a_configured_pem_round_trips_to_the_same_kid() {
        let record = generate().unwrap();
        assert_eq!(record_from_pem(&record.private_key_pem).unwrap().kid, record.kid);
        assert!(record_from_pem("not a key").is_err());
    }
}
