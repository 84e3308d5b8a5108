//! A media request's path and query, as a client sends them: parsing never panics, a
//! forged query never verifies, and what the server signs always does.
#![no_main]

use std::sync::LazyLock;

use chrono::{TimeZone as _, Utc};
use libfuzzer_sys::fuzz_target;
use streaming::domain::{SignatureError, SigningKey, UrlSigner, signing::SignedQuery};

static SIGNER: LazyLock<UrlSigner> = LazyLock::new(|| {
    let key = SigningKey {
        id: "k1".to_owned(),
        secret: b"a fixed secret for fuzzing only".to_vec(),
        created_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
    };
    UrlSigner::new(vec![key]).unwrap()
});

const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, query) = text.split_once('?').unwrap_or((&text, ""));
    let parsed = SignedQuery::parse(query);
    if let Ok(()) = SIGNER.verify(path, &parsed, NOW) {
        panic!("a query nobody signed verified: {path:?} {query:?}");
    }
    let expires = NOW + 60;
    let signed = SignedQuery::parse(&SIGNER.sign(path, expires));
    assert_eq!(SIGNER.verify(path, &signed, NOW), Ok(()), "what is signed verifies");
    assert_eq!(SIGNER.verify(path, &signed, expires), Err(SignatureError::Expired));
});
