use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem, succeeded, token, tonearm_cli, unique_email};

async fn jwks(app: &TestApp) -> JwkSet {
    let response = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn access_tokens_verify_with_a_standard_library_against_the_jwks() {
    let app = TestApp::up().await;
    let signed_in = app.register(&unique_email()).await;
    let access = token(&signed_in, "access_token");

    let header = jsonwebtoken::decode_header(&access).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let kid = header.kid.expect("tokens carry a kid");
    let set = jwks(&app).await;
    let jwk = set.find(&kid).expect("the JWKS publishes the signing key");

    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["tonearm-api"]);
    validation.set_issuer(&["tonearm"]);
    let claims =
        jsonwebtoken::decode::<Value>(&access, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], signed_in["user"]["id"]);
    assert_eq!(claims["tier"], "free");
    assert_eq!(claims["role"], "user");
    assert!(claims["sid"].is_string());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 7 * 24 * 3600, "access tokens live 7 days");
}

/// Signs claims with the server's own key, read from its data dir, to make tokens the
/// server would have issued but for one detail.
async fn server_signed(app: &TestApp, claims: &Value) -> String {
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", app.data_dir.join("auth.db").display()))
            .await
            .unwrap();
    let (kid, pem): (String, String) = sqlx::query_as(
        "SELECT kid, private_key_pem FROM signing_keys ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap())
        .unwrap()
}

fn claims_of(access: &str) -> Value {
    let payload = access.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_token_accepted_before_still_expires_on_time() {
    let app = TestApp::up().await;
    let signed_in = app.register(&unique_email()).await;
    let mut claims = claims_of(&token(&signed_in, "access_token"));
    // Valid for two more seconds, counting the 30 s the gateway allows for clock skew.
    let now = chrono::Utc::now().timestamp();
    claims["exp"] = json!(now - 28);
    let short = server_signed(&app, &claims).await;
    assert_eq!(app.get("/v1/me", Some(&short)).await.status(), StatusCode::OK);
    assert_eq!(app.get("/v1/me", Some(&short)).await.status(), StatusCode::OK, "verified once");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let problem =
        assert_problem(app.get("/v1/me", Some(&short)).await, StatusCode::UNAUTHORIZED).await;
    assert!(problem["detail"].as_str().unwrap().contains("expired"), "{problem}");
}

#[tokio::test]
async fn expired_forged_and_malformed_tokens_get_401_problem_json() {
    let app = TestApp::up().await;
    let signed_in = app.register(&unique_email()).await;
    let access = token(&signed_in, "access_token");
    let claims = claims_of(&access);
    assert_eq!(
        app.get("/v1/me", Some(&server_signed(&app, &claims).await)).await.status(),
        StatusCode::OK
    );

    let mut expired = claims.clone();
    expired["iat"] = json!(claims["iat"].as_i64().unwrap() - 8 * 24 * 3600);
    expired["exp"] = json!(claims["iat"].as_i64().unwrap() - 24 * 3600);
    let expired = server_signed(&app, &expired).await;
    let problem =
        assert_problem(app.get("/v1/me", Some(&expired)).await, StatusCode::UNAUTHORIZED).await;
    assert!(problem["detail"].as_str().unwrap().contains("expired"), "{problem}");

    let mut wrong_audience = claims.clone();
    wrong_audience["aud"] = json!("someone-else");
    let wrong_audience = server_signed(&app, &wrong_audience).await;
    assert_problem(app.get("/v1/me", Some(&wrong_audience)).await, StatusCode::UNAUTHORIZED).await;

    // The same claims and kid, signed by a key that is not the server's.
    let forger = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = forger.to_pkcs8_pem(LineEnding::LF).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = jsonwebtoken::decode_header(&access).unwrap().kid;
    let forged =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap())
            .unwrap();
    assert_problem(app.get("/v1/me", Some(&forged)).await, StatusCode::UNAUTHORIZED).await;

    // A payload edited after signing.
    let mut elevated = claims.clone();
    elevated["role"] = json!("admin");
    let parts: Vec<&str> = access.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&elevated).unwrap()),
        parts[2]
    );
    assert_problem(app.get("/v1/me", Some(&tampered)).await, StatusCode::UNAUTHORIZED).await;

    assert_problem(app.get("/v1/me", Some("not-a-jwt")).await, StatusCode::UNAUTHORIZED).await;
    let basic =
        app.client.get(app.url("/v1/me")).basic_auth("ada", Some("pw")).send().await.unwrap();
    assert_problem(basic, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn identity_headers_from_clients_are_ignored() {
    let app = TestApp::up().await;
    let signed_in = app.register(&unique_email()).await;
    let response = app
        .client
        .get(app.url("/v1/me"))
        .header("x-tonearm-user-id", signed_in["user"]["id"].as_str().unwrap())
        .header("x-tonearm-session-id", "01a213fb-606a-7695-9269-66babb0798d6")
        .header("x-tonearm-tier", "premium")
        .header("x-tonearm-role", "admin")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn after_a_key_rotation_old_tokens_verify_and_new_ones_use_the_new_key() {
    let dir = std::sync::Arc::new(tempfile::TempDir::new().unwrap());
    let settings = crate::support::test_settings(dir.path());
    let before = TestApp::up_with(settings.clone(), Some(dir.clone())).await;
    let email = unique_email();
    let old_access = token(&before.register(&email).await, "access_token");
    let old_kid = jsonwebtoken::decode_header(&old_access).unwrap().kid.unwrap();
    before.stop().await;

    succeeded(&tonearm_cli(&["keys", "rotate"], dir.path(), &[]));

    let after = TestApp::up_with(settings, Some(dir)).await;
    let set = jwks(&after).await;
    assert_eq!(set.keys.len(), 2, "the new key and its predecessor are published");
    assert!(set.find(&old_kid).is_some());
    assert_eq!(after.get("/v1/me", Some(&old_access)).await.status(), StatusCode::OK);

    let new_access = token(&after.login(&email).await, "access_token");
    let new_kid = jsonwebtoken::decode_header(&new_access).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid, "new tokens are signed with the new key");
    assert_eq!(after.get("/v1/me", Some(&new_access)).await.status(), StatusCode::OK);
}
