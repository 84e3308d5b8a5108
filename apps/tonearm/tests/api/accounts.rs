use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem, token, unique_email};

#[tokio::test]
async fn register_login_me_refresh_logout_as_the_contract_says() {
    let app = TestApp::up().await;
    let email = unique_email();

    let registered = app.register(&format!("  {}  ", email.to_uppercase())).await;
    assert_eq!(registered["token_type"], "Bearer");
    assert_eq!(registered["expires_in"], 7 * 24 * 3600);
    assert_eq!(registered["user"]["email"], email, "emails are trimmed and lower-cased");
    assert_eq!(registered["user"]["tier"], "free");
    assert_eq!(registered["user"]["role"], "user");

    let signed_in = app.login(&email).await;
    let access = token(&signed_in, "access_token");
    let refresh = token(&signed_in, "refresh_token");

    let me: Value = app.get("/v1/me", Some(&access)).await.json().await.unwrap();
    assert_eq!(me["email"], email);
    assert_eq!(me["id"], registered["user"]["id"]);
    for field in ["id", "email", "display_name", "tier", "role", "created_at"] {
        assert!(!me[field].is_null(), "{field} missing from {me}");
    }
    let created_at = me["created_at"].as_str().unwrap();
    assert!(
        created_at.ends_with('Z') && created_at.len() == 24,
        "millisecond RFC 3339: {created_at}"
    );

    let refreshed = app.post("/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let refreshed: Value = refreshed.json().await.unwrap();
    let new_access = token(&refreshed, "access_token");
    let new_refresh = token(&refreshed, "refresh_token");
    assert_ne!(new_refresh, refresh, "a new refresh token every time");
    assert_eq!(app.get("/v1/me", Some(&new_access)).await.status(), StatusCode::OK);

    let logout =
        app.post("/v1/auth/logout", Some(&new_access), json!({"refresh_token": new_refresh})).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    for access in [&access, &new_access] {
        assert_problem(app.get("/v1/me", Some(access)).await, StatusCode::UNAUTHORIZED).await;
    }
    let after = app.post("/v1/auth/refresh", None, json!({"refresh_token": new_refresh})).await;
    assert_problem(after, StatusCode::UNAUTHORIZED).await;

    // The registration session is separate and still alive.
    let first = token(&registered, "access_token");
    assert_eq!(app.get("/v1/me", Some(&first)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn replaying_a_rotated_refresh_token_kills_the_family() {
    let app = TestApp::up().await;
    let signed_in = app.register(&unique_email()).await;
    let original = token(&signed_in, "refresh_token");

    let rotated: Value = app
        .post("/v1/auth/refresh", None, json!({"refresh_token": original}))
        .await
        .json()
        .await
        .unwrap();
    let latest_access = token(&rotated, "access_token");
    let latest_refresh = token(&rotated, "refresh_token");

    let replay = app.post("/v1/auth/refresh", None, json!({"refresh_token": original})).await;
    assert_problem(replay, StatusCode::UNAUTHORIZED).await;

    // Everything the family issued is dead: the newest refresh token and access tokens.
    let newest = app.post("/v1/auth/refresh", None, json!({"refresh_token": latest_refresh})).await;
    assert_problem(newest, StatusCode::UNAUTHORIZED).await;
    assert_problem(app.get("/v1/me", Some(&latest_access)).await, StatusCode::UNAUTHORIZED).await;
    let first_access = token(&signed_in, "access_token");
    assert_problem(app.get("/v1/me", Some(&first_access)).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn bad_input_gets_problem_json_and_changes_nothing() {
    let app = TestApp::up().await;
    let email = unique_email();
    app.register(&email).await;

    let duplicate = app
        .post(
            "/v1/auth/register",
            None,
            json!({"email": email.to_uppercase(), "password": "another password", "display_name": "Copy"}),
        )
        .await;
    assert_problem(duplicate, StatusCode::CONFLICT).await;

    let malformed = app
        .client
        .post(app.url("/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, StatusCode::BAD_REQUEST).await;

    let not_json = app.client.post(app.url("/v1/auth/login")).body("email=a").send().await.unwrap();
    assert_problem(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    for (body, why) in [
        (json!({"email": "not-an-email", "password": "long enough", "display_name": "X"}), "email"),
        (json!({"email": unique_email(), "password": "short", "display_name": "X"}), "password"),
        (
            json!({"email": unique_email(), "password": "x".repeat(129), "display_name": "X"}),
            "password",
        ),
        (
            json!({"email": unique_email(), "password": "long enough", "display_name": "  "}),
            "display_name",
        ),
        (json!({"email": unique_email(), "password": "long enough"}), "display_name"),
    ] {
        let response = app.post("/v1/auth/register", None, body).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(problem["detail"].as_str().unwrap().contains(why), "{problem}");
    }

    let unknown = app.get("/v1/nothing-here", None).await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
    let unauthenticated = app.get("/v1/me", None).await;
    assert_problem(unauthenticated, StatusCode::UNAUTHORIZED).await;
    let wrong_method = app.client.put(app.url("/v1/me")).send().await.unwrap();
    assert_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    let too_big = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body(format!("{{\"email\": \"{}\"}}", "a".repeat(2 * 1024 * 1024)))
        .send()
        .await
        .unwrap();
    assert_problem(too_big, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn login_answers_alike_whether_or_not_the_email_exists() {
    let app = TestApp::up().await;
    let email = unique_email();
    app.register(&email).await;
    let wrong_password = app
        .post("/v1/auth/login", None, json!({"email": email, "password": "not the password"}))
        .await;
    let wrong = assert_problem(wrong_password, StatusCode::UNAUTHORIZED).await;
    let no_account = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": unique_email(), "password": "not the password"}),
        )
        .await;
    let unknown = assert_problem(no_account, StatusCode::UNAUTHORIZED).await;
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_per_email() {
    let app = TestApp::up().await;
    let email = unique_email();
    app.register(&email).await;
    for _ in 0..10 {
        let response = app
            .post("/v1/auth/login", None, json!({"email": email, "password": "guess guess"}))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let throttled = app
        .post("/v1/auth/login", None, json!({"email": email, "password": "correct horse battery"}))
        .await;
    assert!(throttled.headers().contains_key("retry-after"));
    assert_problem(throttled, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn sessions_can_be_listed_and_revoked() {
    let app = TestApp::up().await;
    let email = unique_email();
    let phone = app.register(&email).await;
    let laptop = app.login(&email).await;
    let laptop_access = token(&laptop, "access_token");
    let phone_access = token(&phone, "access_token");

    let sessions: Value =
        app.get("/v1/me/sessions", Some(&laptop_access)).await.json().await.unwrap();
    assert_eq!(sessions["total"], 2);
    let items = sessions["items"].as_array().unwrap();
    assert_eq!(items[0]["current"], true, "newest first, and it is this one");
    assert_eq!(items[1]["current"], false);
    let phone_session = items[1]["id"].as_str().unwrap().to_owned();

    let revoke = app
        .send(
            Method::DELETE,
            &format!("/v1/me/sessions/{phone_session}"),
            Some(&laptop_access),
            None,
        )
        .await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get("/v1/me", Some(&phone_access)).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.get("/v1/me", Some(&laptop_access)).await.status(), StatusCode::OK);

    let again = app
        .send(
            Method::DELETE,
            &format!("/v1/me/sessions/{phone_session}"),
            Some(&laptop_access),
            None,
        )
        .await;
    assert_problem(again, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn password_change_revokes_every_other_session() {
    let app = TestApp::up().await;
    let email = unique_email();
    let other = app.register(&email).await;
    let current = app.login(&email).await;
    let access = token(&current, "access_token");

    let wrong = app
        .post(
            "/v1/me/password",
            Some(&access),
            json!({"current_password": "not it at all", "new_password": "a brand new secret"}),
        )
        .await;
    let wrong = assert_problem(wrong, StatusCode::FORBIDDEN).await;
    assert_eq!(wrong["detail"], "current_password is incorrect");

    let changed = app
        .post(
            "/v1/me/password",
            Some(&access),
            json!({"current_password": "correct horse battery", "new_password": "a brand new secret"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v1/me", Some(&access)).await.status(), StatusCode::OK);
    let other_access = token(&other, "access_token");
    assert_problem(app.get("/v1/me", Some(&other_access)).await, StatusCode::UNAUTHORIZED).await;

    let old = app
        .post("/v1/auth/login", None, json!({"email": email, "password": "correct horse battery"}))
        .await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new = app
        .post("/v1/auth/login", None, json!({"email": email, "password": "a brand new secret"}))
        .await;
    assert_eq!(new.status(), StatusCode::OK);
}

#[tokio::test]
async fn profile_update_and_account_deletion() {
    let app = TestApp::up().await;
    let email = unique_email();
    let signed_in = app.register(&email).await;
    let access = token(&signed_in, "access_token");

    let renamed = app
        .send(Method::PATCH, "/v1/me", Some(&access), Some(json!({"display_name": "  DJ Ada "})))
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["display_name"], "DJ Ada");

    let refused = app
        .send(Method::DELETE, "/v1/me", Some(&access), Some(json!({"password": "wrong password"})))
        .await;
    let refused = assert_problem(refused, StatusCode::FORBIDDEN).await;
    assert_eq!(refused["detail"], "password is incorrect");
    assert_eq!(app.get("/v1/me", Some(&access)).await.status(), StatusCode::OK, "nothing changed");

    let deleted = app
        .send(
            Method::DELETE,
            "/v1/me",
            Some(&access),
            Some(json!({"password": "correct horse battery"})),
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get("/v1/me", Some(&access)).await, StatusCode::UNAUTHORIZED).await;
    let login = app
        .post("/v1/auth/login", None, json!({"email": email, "password": "correct horse battery"}))
        .await;
    assert_problem(login, StatusCode::UNAUTHORIZED).await;

    // The rename and the deletion were recorded for the other services, each in the
    // transaction that made it.
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", app.data_dir.join("auth.db").display()))
            .await
            .unwrap();
    let types: Vec<String> = sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(types, ["user.registered", "user.updated", "user.deleted"]);
}

/// Waits until `done` holds, checking every 100 ms for at most 10 seconds.
async fn within_seconds<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Whether `path`, read by `token`, answers `status` with a body that `holds`.
async fn answers(
    app: &TestApp,
    token: &str,
    path: &str,
    status: StatusCode,
    holds: impl Fn(&Value) -> bool,
) -> bool {
    let response = app.get(path, Some(token)).await;
    response.status() == status && holds(&response.json().await.unwrap_or(Value::Null))
}

/// Rows of `table` about `user` in a SQLite database of the app.
async fn rows_of(pool: &sqlx::SqlitePool, table: &str, user: Option<uuid::Uuid>) -> i64 {
    let query = match user {
        Some(_) => format!("SELECT COUNT(*) FROM {table} WHERE user_id = ?"),
        None => format!("SELECT COUNT(*) FROM {table}"),
    };
    let query = sqlx::query_scalar(&query);
    let query = match user {
        Some(user) => query.bind(user),
        None => query,
    };
    query.fetch_one(pool).await.unwrap()
}

/// Every service that holds an account's data acts on its deletion (`user.deleted`):
/// its playlists are gone for their followers, its likes and history with them; its
/// ready uploads stay in the shared catalog, no longer anyone's, and the one still
/// processing goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_leaves_nothing_of_its_own_behind() {
    let app = TestApp::up().await;
    let registered = app.register(&unique_email()).await;
    let ada = token(&registered, "access_token");
    let ada_id: uuid::Uuid = registered["user"]["id"].as_str().unwrap().parse().unwrap();
    let bob = token(&app.register(&unique_email()).await, "access_token");
    let tracks = crate::playlists::ready_tracks(&app, &ada, 1, 70).await;
    let track = &tracks[0];

    let created =
        app.post("/v1/playlists", Some(&ada), json!({"name": "Ada's", "public": true})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let playlist = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let added = app
        .post(
            &format!("/v1/playlists/{playlist}/tracks"),
            Some(&ada),
            json!({"track_ids": [track]}),
        )
        .await;
    assert_eq!(added.status(), StatusCode::CREATED);
    let followed = app
        .send(Method::PUT, &format!("/v1/playlists/{playlist}/followers"), Some(&bob), None)
        .await;
    assert_eq!(followed.status(), StatusCode::NO_CONTENT);
    let liked = app.send(Method::PUT, &format!("/v1/me/likes/{track}"), Some(&ada), None).await;
    assert_eq!(liked.status(), StatusCode::NO_CONTENT);
    let played =
        app.post("/v1/me/plays", Some(&ada), json!({"track_id": track, "played_ms": 900})).await;
    assert_eq!(played.status(), StatusCode::ACCEPTED);
    within_seconds("the play reached the history", || {
        answers(&app, &ada, "/v1/me/history", StatusCode::OK, |body| body["total"] == 1)
    })
    .await;
    // One upload never becomes ready (the transcoder refuses it): it is Ada's alone.
    let pending = crate::catalog::upload(
        &app,
        &ada,
        "pending.mp3",
        b"ID3\x03\x00\x00\x00\x00\x00\x0anoise".to_vec(),
        &[],
    )
    .await;
    let pending = pending.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let deleted = app
        .send(
            Method::DELETE,
            "/v1/me",
            Some(&ada),
            Some(json!({"password": "correct horse battery"})),
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let gone = format!("/v1/playlists/{playlist}");
    within_seconds("the playlist went", || {
        answers(&app, &bob, &gone, StatusCode::NOT_FOUND, |_| true)
    })
    .await;
    within_seconds("the follow went", || {
        answers(&app, &bob, "/v1/me/playlists", StatusCode::OK, |body| body["total"] == 0)
    })
    .await;
    let kept = format!("/v1/tracks/{track}");
    within_seconds("the ready upload became no one's", || {
        answers(&app, &bob, &kept, StatusCode::OK, |body| {
            body["uploaded_by"] == "00000000-0000-0000-0000-000000000000"
        })
    })
    .await;
    let unready = app.get(&format!("/v1/tracks/{pending}"), Some(&bob)).await;
    assert_problem(unready, StatusCode::NOT_FOUND).await;
    let media = app.data_dir.join("media").join("tracks").join(&pending);
    within_seconds("the unready upload's media went", || async {
        crate::catalog::walk(&media).is_empty()
    })
    .await;

    // Likes and history are gone from the stores that held them; counted plays stay.
    let open = |file: &str| {
        sqlx::SqlitePool::connect_lazy(&format!("sqlite://{}", app.data_dir.join(file).display()))
            .unwrap()
    };
    let (playlists, warehouse) = (open("playlist.db"), open("analytics-warehouse.db"));
    within_seconds("the likes went", || async { rows_of(&playlists, "likes", None).await == 0 })
        .await;
    within_seconds("the history went", || async {
        let mut left = 0;
        for table in ["plays", "active_days", "track_listeners"] {
            left += rows_of(&warehouse, table, Some(ada_id)).await;
        }
        left == 0
    })
    .await;
    let top: Value = app.get("/v1/analytics/top-tracks", Some(&bob)).await.json().await.unwrap();
    assert_eq!(top["items"][0]["plays"], 1, "the play is still counted: {top}");
}
