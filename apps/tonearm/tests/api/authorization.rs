//! Who may do what. Every operation the served OpenAPI document lists is tried as each of
//! five callers: anonymous, the owner of the resources (a free listener), another free
//! listener, a premium listener and an administrator. The table below says what each
//! gets; refused requests run first, and must leave everything the owner sees unchanged.

use std::{collections::BTreeMap, sync::Arc};

use reqwest::{Method, StatusCode, multipart};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{
    catalog::{upload, wav},
    support::{
        OwnRedis, TestApp, own_redis_settings, settled, succeeded, token, tonearm_cli, unique_email,
    },
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Owner,
    Other,
    Premium,
    Admin,
}

/// The table's column order.
const COLUMNS: [Caller; 5] =
    [Caller::Anonymous, Caller::Owner, Caller::Other, Caller::Premium, Caller::Admin];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Any 2xx.
    Allowed,
    /// Exactly this status, with a problem+json body.
    Refused(u16),
    /// Not tried: a destructive row another caller's column exercises.
    Untried,
}

enum Body {
    Empty,
    Json(Value),
    /// `POST /v1/tracks`: a multipart upload of these bytes.
    Upload(Vec<u8>),
    /// Raw bytes under a content type.
    Bytes(&'static str, Vec<u8>),
}

struct Row {
    method: Method,
    /// The operation's path as the OpenAPI document spells it.
    template: &'static str,
    /// The path tried, resources filled in.
    path: String,
    body: Body,
    expect: [Expect; 5],
}

/// Parses a row's expectations: one word per column in [`COLUMNS`] order, `ok` for any
/// 2xx, `-` for untried, else the status.
fn expect(spec: &str) -> [Expect; 5] {
    let words: Vec<Expect> = spec
        .split_whitespace()
        .map(|word| match word {
            "ok" => Expect::Allowed,
            "-" => Expect::Untried,
            status => Expect::Refused(status.parse().expect("a status")),
        })
        .collect();
    words.try_into().unwrap_or_else(|_| panic!("five expectations in {spec:?}"))
}

/// The resources of the owner (and of the others) that rows name by placeholder.
struct World {
    app: TestApp,
    _redis: OwnRedis,
    tokens: BTreeMap<&'static str, String>,
    ids: BTreeMap<&'static str, String>,
    audio: Vec<u8>,
}

impl World {
    fn token(&self, caller: Caller) -> Option<&str> {
        let name = match caller {
            Caller::Anonymous => return None,
            Caller::Owner => "owner",
            Caller::Other => "other",
            Caller::Premium => "premium",
            Caller::Admin => "admin",
        };
        Some(self.tokens[name].as_str())
    }

    /// `template` with every `{name}` replaced by the resource of that name.
    fn fill(&self, template: &str) -> String {
        self.ids
            .iter()
            .fold(template.to_owned(), |path, (name, id)| path.replace(&format!("{{{name}}}"), id))
    }

    async fn send(
        &self,
        caller: Caller,
        method: &Method,
        path: &str,
        body: &Body,
    ) -> reqwest::Response {
        let client = &self.app.client;
        let mut request = client.request(method.clone(), self.app.url(path));
        if let Some(token) = self.token(caller) {
            request = request.bearer_auth(token);
        }
        request = match body {
            Body::Empty => request,
            Body::Json(value) => request.json(&self.fill_json(value)),
            Body::Upload(bytes) => request.multipart(
                multipart::Form::new()
                    .part("file", multipart::Part::bytes(bytes.clone()).file_name("again.wav")),
            ),
            Body::Bytes(content_type, bytes) => {
                request.header("content-type", *content_type).body(bytes.clone())
            }
        };
        request.send().await.unwrap()
    }

    /// A JSON body with its string placeholders filled; `{new_email}` is a fresh address.
    fn fill_json(&self, value: &Value) -> Value {
        match value {
            Value::String(text) if text == "{new_email}" => Value::String(unique_email()),
            Value::String(text) => Value::String(self.fill(text)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.fill_json(v)).collect()),
            Value::Object(fields) => {
                Value::Object(fields.iter().map(|(k, v)| (k.clone(), self.fill_json(v))).collect())
            }
            other => other.clone(),
        }
    }

    /// What the owner sees of its own things; refused requests must not change it.
    async fn owners_view(&self) -> Value {
        let mut view = serde_json::Map::new();
        for path in [
            "/v1/me",
            "/v1/tracks/{track}",
            "/v1/tracks/{owner_deletes_track}",
            "/v1/tracks/{admin_deletes_track}",
            "/v1/playlists/{private}",
            "/v1/playlists/{private}/tracks",
            "/v1/playlists/{public}",
            "/v1/playlists/{public}/tracks",
            "/v1/playlists/{owner_deletes_playlist}",
            "/v1/me/playlists",
            "/v1/me/likes",
            "/v1/me/history",
            "/v1/me/notifications",
            "/v1/me/followers",
            "/v1/me/presence",
        ] {
            let path = self.fill(path);
            let response = self.send(Caller::Owner, &Method::GET, &path, &Body::Empty).await;
            assert_eq!(response.status(), StatusCode::OK, "the owner reads {path}");
            view.insert(path, response.json().await.unwrap());
        }
        // Sessions are seen by id: reading them refreshes their last use.
        let sessions =
            self.send(Caller::Owner, &Method::GET, "/v1/me/sessions", &Body::Empty).await;
        let sessions: Value = sessions.json().await.unwrap();
        let ids: Vec<Value> =
            sessions["items"].as_array().unwrap().iter().map(|s| s["id"].clone()).collect();
        view.insert("/v1/me/sessions".into(), Value::Array(ids));
        Value::Object(view)
    }
}

async fn json_of(response: reqwest::Response, what: &str) -> Value {
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "{what}: {status} {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// The owner's tracks, playlists, sessions and a notification, and the four callers.
async fn world() -> World {
    let dir = Arc::new(TempDir::new().unwrap());
    // Its own Redis: the operator commands reach the running gateway through it, and the
    // table's many anonymous requests spend no other test's budget.
    let (mut settings, own_redis) = own_redis_settings(dir.path()).await;
    // The table, not the budgets, is under test here (those are in `limits`).
    settings.gateway.rate_limits.free_per_minute = 100_000;
    settings.gateway.rate_limits.premium_per_minute = 100_000;
    settings.gateway.rate_limits.anonymous_per_minute = 100_000;
    let app = TestApp::up_with(settings, Some(dir.clone())).await;
    let redis = own_redis.url();
    let env = [("TONEARM_AUTH__CACHE_URL", redis.as_str())];
    let mut tokens = BTreeMap::new();
    let mut emails = BTreeMap::new();
    for name in ["owner", "other", "premium", "admin"] {
        let email = unique_email();
        tokens.insert(name, token(&app.register(&email).await, "access_token"));
        emails.insert(name, email);
    }
    succeeded(&tonearm_cli(
        &["users", "set-tier", &emails["premium"], "premium"],
        dir.path(),
        &env,
    ));
    succeeded(&tonearm_cli(&["users", "set-role", &emails["admin"], "admin"], dir.path(), &env));
    let mut world =
        World { app, _redis: own_redis, tokens, ids: BTreeMap::new(), audio: wav(2, 1) };
    let app = &world.app;
    let owner = world.tokens["owner"].clone();
    let me = json_of(app.get("/v1/me", Some(&owner)).await, "me").await;
    world.ids.insert("owner", me["id"].as_str().unwrap().to_owned());
    world.ids.insert("owner_email", emails["owner"].clone());

    for (name, seed) in [("track", 1), ("owner_deletes_track", 2), ("admin_deletes_track", 3)] {
        let audio = if seed == 1 { world.audio.clone() } else { wav(2, seed) };
        let uploaded =
            json_of(upload(app, &owner, "Night Drive.wav", audio, &[]).await, "upload").await;
        let id = uploaded["id"].as_str().unwrap().to_owned();
        let track = settled(app, &owner, &id).await;
        assert_eq!(track["status"], "ready", "{track}");
        if name == "track" {
            world.ids.insert("album", track["album"]["id"].as_str().unwrap().to_owned());
            world.ids.insert("artist", track["artist"]["id"].as_str().unwrap().to_owned());
        }
        world.ids.insert(name, id);
    }
    let track = world.ids["track"].clone();
    for (name, public) in [
        ("private", false),
        ("public", true),
        ("owner_deletes_playlist", true),
        ("admin_deletes_playlist", true),
    ] {
        let body = json!({"name": name, "public": public});
        let created =
            json_of(app.post("/v1/playlists", Some(&owner), body).await, "playlist").await;
        let id = created["id"].as_str().unwrap().to_owned();
        let tracks = json!({"track_ids": [track, track, track, track]});
        json_of(app.post(&format!("/v1/playlists/{id}/tracks"), Some(&owner), tracks).await, "add")
            .await;
        world.ids.insert(name, id);
    }
    // A second session of the owner's, which nobody else may end.
    app.login(&emails["owner"]).await;
    let sessions = json_of(app.get("/v1/me/sessions", Some(&owner)).await, "sessions").await;
    let second = sessions["items"].as_array().unwrap().iter().find(|s| s["current"] == false);
    world.ids.insert("session", second.unwrap()["id"].as_str().unwrap().to_owned());
    // Someone follows the owner: the owner has a notification.
    let premium = world.tokens["premium"].clone();
    let path = world.fill("/v1/me/following/{owner}");
    let followed = app.send(Method::PUT, &path, Some(&premium), None).await;
    assert!(followed.status().is_success(), "{}", followed.status());
    let notification = loop {
        let list = json_of(app.get("/v1/me/notifications", Some(&owner)).await, "notes").await;
        if let Some(first) = list["items"].as_array().unwrap().first() {
            break first["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    world.ids.insert("notification", notification);
    json_of(
        app.send(Method::PUT, &format!("/v1/me/likes/{track}"), Some(&owner), None).await,
        "like",
    )
    .await;
    world
}

fn rows(world: &World) -> Vec<Row> {
    let row = |method: Method, template: &'static str, path: &str, body: Body, spec: &str| Row {
        method,
        template,
        path: world.fill(path),
        body,
        expect: expect(spec),
    };
    let same = |method: Method, template: &'static str, body: Body, spec: &str| {
        row(method, template, template, body, spec)
    };
    use Method as M;
    let password = "correct horse battery";
    vec![
        // Operations and keys: open to all.
        same(M::GET, "/healthz", Body::Empty, "ok ok ok ok ok"),
        same(M::GET, "/readyz", Body::Empty, "ok ok ok ok ok"),
        same(M::GET, "/metrics", Body::Empty, "ok ok ok ok ok"),
        same(M::GET, "/.well-known/jwks.json", Body::Empty, "ok ok ok ok ok"),
        // Signing in: open, and a wrong password is wrong for everyone.
        same(
            M::POST,
            "/v1/auth/register",
            Body::Json(
                json!({"email": "{new_email}", "password": password, "display_name": "New"}),
            ),
            "ok ok ok ok ok",
        ),
        same(
            M::POST,
            "/v1/auth/login",
            Body::Json(json!({"email": "{owner_email}", "password": "not the password"})),
            "401 401 401 401 401",
        ),
        same(
            M::POST,
            "/v1/auth/refresh",
            Body::Json(json!({"refresh_token": "not-a-token"})),
            "401 401 401 401 401",
        ),
        // The account: each caller's own.
        same(M::GET, "/v1/me", Body::Empty, "401 ok ok ok ok"),
        same(M::PATCH, "/v1/me", Body::Json(json!({"display_name": "Renamed"})), "401 ok ok ok ok"),
        same(M::GET, "/v1/me/sessions", Body::Empty, "401 ok ok ok ok"),
        row(
            M::DELETE,
            "/v1/me/sessions/{id}",
            "/v1/me/sessions/{session}",
            Body::Empty,
            "401 ok 404 404 404",
        ),
        same(
            M::POST,
            "/v1/me/password",
            Body::Json(
                json!({"current_password": "not the password", "new_password": "another long password"}),
            ),
            "401 403 403 403 403",
        ),
        same(
            M::DELETE,
            "/v1/me",
            Body::Json(json!({"password": "not the password"})),
            "401 403 403 403 403",
        ),
        // The catalog: shared reading; the uploader or an administrator edits.
        same(M::GET, "/v1/tracks", Body::Empty, "401 ok ok ok ok"),
        same(M::POST, "/v1/tracks", Body::Upload(world.audio.clone()), "401 ok ok ok ok"),
        row(M::GET, "/v1/tracks/{id}", "/v1/tracks/{track}", Body::Empty, "401 ok ok ok ok"),
        row(
            M::PATCH,
            "/v1/tracks/{id}",
            "/v1/tracks/{track}",
            Body::Json(json!({"genre": "Jazz"})),
            "401 ok 403 403 ok",
        ),
        same(M::GET, "/v1/albums", Body::Empty, "401 ok ok ok ok"),
        row(M::GET, "/v1/albums/{id}", "/v1/albums/{album}", Body::Empty, "401 ok ok ok ok"),
        row(
            M::GET,
            "/v1/albums/{id}/artwork",
            "/v1/albums/{album}/artwork",
            Body::Empty,
            "401 404 404 404 404",
        ),
        same(M::GET, "/v1/artists", Body::Empty, "401 ok ok ok ok"),
        row(M::GET, "/v1/artists/{id}", "/v1/artists/{artist}", Body::Empty, "401 ok ok ok ok"),
        row(M::GET, "/v1/search", "/v1/search?q=night", Body::Empty, "401 ok ok ok ok"),
        row(
            M::GET,
            "/v1/tracks/{id}/stream",
            "/v1/tracks/{track}/stream",
            Body::Empty,
            "401 ok ok ok ok",
        ),
        row(
            M::GET,
            "/v1/tracks/{id}/dash",
            "/v1/tracks/{track}/dash",
            Body::Empty,
            "401 ok ok ok ok",
        ),
        row(
            M::GET,
            "/v1/tracks/{id}/similar",
            "/v1/tracks/{track}/similar",
            Body::Empty,
            "401 ok ok ok ok",
        ),
        // Media: the signature is the authority, not the caller.
        row(
            M::GET,
            "/media/{track_id}/{path}",
            "/media/{track}/master.m3u8",
            Body::Empty,
            "403 403 403 403 403",
        ),
        row(M::GET, "/media/{track_id}/{path}", "{signed}", Body::Empty, "ok ok ok ok ok"),
        row(M::GET, "/media/{track_id}/{path}", "{tampered}", Body::Empty, "403 403 403 403 403"),
        row(M::HEAD, "/media/{track_id}/{path}", "{signed}", Body::Empty, "ok ok ok ok ok"),
        row(M::HEAD, "/media/{track_id}/{path}", "{tampered}", Body::Empty, "403 403 403 403 403"),
        // Playlists: public ones are read by all and changed by the owner or an
        // administrator; private ones do not exist for anyone else.
        same(M::POST, "/v1/playlists", Body::Json(json!({"name": "Mine"})), "401 ok ok ok ok"),
        same(M::GET, "/v1/me/playlists", Body::Empty, "401 ok ok ok ok"),
        row(
            M::GET,
            "/v1/playlists/{id}",
            "/v1/playlists/{private}",
            Body::Empty,
            "401 ok 404 404 404",
        ),
        row(M::GET, "/v1/playlists/{id}", "/v1/playlists/{public}", Body::Empty, "401 ok ok ok ok"),
        row(
            M::PATCH,
            "/v1/playlists/{id}",
            "/v1/playlists/{private}",
            Body::Json(json!({"description": "mine"})),
            "401 ok 404 404 404",
        ),
        row(
            M::PATCH,
            "/v1/playlists/{id}",
            "/v1/playlists/{public}",
            Body::Json(json!({"description": "ours"})),
            "401 ok 403 403 ok",
        ),
        row(
            M::GET,
            "/v1/playlists/{id}/tracks",
            "/v1/playlists/{private}/tracks",
            Body::Empty,
            "401 ok 404 404 404",
        ),
        row(
            M::GET,
            "/v1/playlists/{id}/tracks",
            "/v1/playlists/{public}/tracks",
            Body::Empty,
            "401 ok ok ok ok",
        ),
        row(
            M::POST,
            "/v1/playlists/{id}/tracks",
            "/v1/playlists/{private}/tracks",
            Body::Json(json!({"track_ids": ["{track}"]})),
            "401 ok 404 404 404",
        ),
        row(
            M::POST,
            "/v1/playlists/{id}/tracks",
            "/v1/playlists/{public}/tracks",
            Body::Json(json!({"track_ids": ["{track}"]})),
            "401 ok 403 403 ok",
        ),
        row(
            M::PUT,
            "/v1/playlists/{id}/tracks",
            "/v1/playlists/{private}/tracks",
            Body::Json(json!({"range_start": 0, "insert_before": 2})),
            "401 ok 404 404 404",
        ),
        row(
            M::PUT,
            "/v1/playlists/{id}/tracks",
            "/v1/playlists/{public}/tracks",
            Body::Json(json!({"range_start": 0, "insert_before": 2})),
            "401 ok 403 403 ok",
        ),
        row(
            M::DELETE,
            "/v1/playlists/{id}/tracks",
            "/v1/playlists/{private}/tracks",
            Body::Json(json!({"positions": [0]})),
            "401 ok 404 404 404",
        ),
        row(
            M::DELETE,
            "/v1/playlists/{id}/tracks",
            "/v1/playlists/{public}/tracks",
            Body::Json(json!({"positions": [0]})),
            "401 ok 403 403 ok",
        ),
        row(
            M::PUT,
            "/v1/playlists/{id}/followers",
            "/v1/playlists/{private}/followers",
            Body::Empty,
            "401 - 404 404 404",
        ),
        row(
            M::PUT,
            "/v1/playlists/{id}/followers",
            "/v1/playlists/{public}/followers",
            Body::Empty,
            "401 - ok ok ok",
        ),
        row(
            M::DELETE,
            "/v1/playlists/{id}/followers",
            "/v1/playlists/{public}/followers",
            Body::Empty,
            "401 - ok ok ok",
        ),
        row(
            M::DELETE,
            "/v1/playlists/{id}",
            "/v1/playlists/{private}",
            Body::Empty,
            "401 - 404 404 404",
        ),
        // Likes, plays and history: each caller's own.
        row(
            M::PUT,
            "/v1/me/likes/{track_id}",
            "/v1/me/likes/{track}",
            Body::Empty,
            "401 ok ok ok ok",
        ),
        same(M::GET, "/v1/me/likes", Body::Empty, "401 ok ok ok ok"),
        row(
            M::GET,
            "/v1/me/likes/contains",
            "/v1/me/likes/contains?ids={track}",
            Body::Empty,
            "401 ok ok ok ok",
        ),
        same(
            M::POST,
            "/v1/me/plays",
            Body::Json(json!({"track_id": "{track}", "played_ms": 1_500})),
            "401 ok ok ok ok",
        ),
        same(M::GET, "/v1/me/history", Body::Empty, "401 ok ok ok ok"),
        // Charts for everyone signed in; who uses the service, for administrators.
        same(M::GET, "/v1/analytics/top-tracks", Body::Empty, "401 ok ok ok ok"),
        same(M::GET, "/v1/analytics/plays", Body::Empty, "401 ok ok ok ok"),
        same(M::GET, "/v1/analytics/users/active", Body::Empty, "401 403 403 403 ok"),
        same(M::GET, "/v1/analytics/api", Body::Empty, "401 403 403 403 ok"),
        // AI: signed in. This server has no speech models, which every signed-in caller
        // is told; nobody else gets that far.
        same(
            M::POST,
            "/v1/ai/transcribe",
            Body::Bytes("audio/wav", Vec::new()),
            "401 503 503 503 503",
        ),
        same(
            M::POST,
            "/v1/ai/voice-search",
            Body::Bytes("audio/wav", Vec::new()),
            "401 503 503 503 503",
        ),
        same(M::POST, "/v1/ai/speak", Body::Json(json!({"text": ""})), "401 422 422 422 422"),
        same(M::GET, "/v1/me/recommendations", Body::Empty, "401 ok ok ok ok"),
        same(M::GET, "/v1/home", Body::Empty, "401 ok ok ok ok"),
        // People: profiles are public to the signed in; following is one's own.
        row(M::GET, "/v1/users", "/v1/users?q=Listener", Body::Empty, "401 ok ok ok ok"),
        row(M::GET, "/v1/users/{id}", "/v1/users/{owner}", Body::Empty, "401 ok ok ok ok"),
        row(
            M::GET,
            "/v1/users/{id}/followers",
            "/v1/users/{owner}/followers",
            Body::Empty,
            "401 ok ok ok ok",
        ),
        row(
            M::GET,
            "/v1/users/{id}/following",
            "/v1/users/{owner}/following",
            Body::Empty,
            "401 ok ok ok ok",
        ),
        row(
            M::PUT,
            "/v1/me/following/{user_id}",
            "/v1/me/following/{owner}",
            Body::Empty,
            "401 422 ok ok ok",
        ),
        row(
            M::DELETE,
            "/v1/me/following/{user_id}",
            "/v1/me/following/{owner}",
            Body::Empty,
            "401 - ok ok ok",
        ),
        same(M::GET, "/v1/me/followers", Body::Empty, "401 ok ok ok ok"),
        same(M::GET, "/v1/me/following", Body::Empty, "401 ok ok ok ok"),
        same(M::GET, "/v1/me/notifications", Body::Empty, "401 ok ok ok ok"),
        same(
            M::POST,
            "/v1/me/notifications/read",
            Body::Json(json!({"ids": ["{notification}"]})),
            "401 ok ok ok ok",
        ),
        same(M::GET, "/v1/me/live", Body::Empty, "401 ok ok ok ok"),
        same(
            M::PUT,
            "/v1/me/now-playing",
            Body::Json(json!({"track_id": "{track}"})),
            "401 ok ok ok ok",
        ),
        same(M::DELETE, "/v1/me/now-playing", Body::Empty, "401 ok ok ok ok"),
        same(M::GET, "/v1/me/following/now-playing", Body::Empty, "401 ok ok ok ok"),
        same(M::GET, "/v1/me/presence", Body::Empty, "401 ok ok ok ok"),
        same(M::PUT, "/v1/me/presence", Body::Json(json!({"visible": true})), "401 ok ok ok ok"),
        // Payments: the provider's signature is the authority.
        same(
            M::POST,
            "/v1/billing/webhook",
            Body::Json(json!({"type": "checkout.session.completed"})),
            "400 400 400 400 400",
        ),
        // Deletions last: each resource is deleted by the one caller the row allows.
        row(
            M::DELETE,
            "/v1/me/likes/{track_id}",
            "/v1/me/likes/{track}",
            Body::Empty,
            "401 ok ok ok ok",
        ),
        row(
            M::DELETE,
            "/v1/tracks/{id}",
            "/v1/tracks/{owner_deletes_track}",
            Body::Empty,
            "401 ok 403 403 -",
        ),
        row(
            M::DELETE,
            "/v1/tracks/{id}",
            "/v1/tracks/{admin_deletes_track}",
            Body::Empty,
            "401 - 403 403 ok",
        ),
        row(
            M::DELETE,
            "/v1/playlists/{id}",
            "/v1/playlists/{owner_deletes_playlist}",
            Body::Empty,
            "401 ok 403 403 -",
        ),
        row(
            M::DELETE,
            "/v1/playlists/{id}",
            "/v1/playlists/{admin_deletes_playlist}",
            Body::Empty,
            "401 - 403 403 ok",
        ),
        // Signing out ends the caller's own session, so it comes last.
        same(
            M::POST,
            "/v1/auth/logout",
            Body::Json(json!({"refresh_token": "not-a-token"})),
            "401 ok ok ok ok",
        ),
    ]
}

/// Sends the row's request as `caller`; a description of what went wrong, if anything.
async fn check(world: &World, row: &Row, caller: Caller, expected: Expect) -> Option<String> {
    let response = world.send(caller, &row.method, &row.path, &row.body).await;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let what = format!("{:?} {} {} ({})", caller, row.method, row.path, row.template);
    match expected {
        Expect::Allowed if status.is_success() => None,
        Expect::Refused(code) if status.as_u16() == code => (content_type
            != "application/problem+json")
            .then(|| format!("{what}: {status} without problem+json ({content_type})")),
        Expect::Untried => None,
        _ => {
            let body = response.text().await.unwrap_or_default();
            Some(format!("{what}: expected {expected:?}, got {status} {body:.200}"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_admits_exactly_the_callers_it_should() {
    let mut world = world().await;

    // Signed media URLs: as the stream endpoint hands them out, and with one byte of the
    // signature changed.
    let stream = world
        .send(Caller::Owner, &Method::GET, &world.fill("/v1/tracks/{track}/stream"), &Body::Empty)
        .await;
    let signed = json_of(stream, "stream").await["url"].as_str().unwrap().to_owned();
    let signed = signed.split_once("/media/").map(|(_, rest)| format!("/media/{rest}")).unwrap();
    let mut tampered = signed.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    world.ids.insert("signed", signed);
    world.ids.insert("tampered", tampered);

    let rows = rows(&world);

    // Every operation of the document has a row, so a new route cannot go untested.
    let document = json_of(world.app.get("/v1/openapi.json", None).await, "openapi").await;
    let mut missing = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            if !rows.iter().any(|row| row.template == path && row.method == method) {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "operations without a row: {missing:#?}");

    // First every refusal, then the owner's view must be as it was.
    let before = world.owners_view().await;
    let mut failures = Vec::new();
    for row in &rows {
        for (caller, expected) in COLUMNS.iter().zip(row.expect) {
            if matches!(expected, Expect::Refused(_)) {
                failures.extend(check(&world, row, *caller, expected).await);
            }
        }
    }
    let after = world.owners_view().await;
    assert_eq!(before, after, "refused requests changed what the owner sees");

    // Then everything allowed, in the table's order.
    for row in &rows {
        for caller in
            [Caller::Anonymous, Caller::Other, Caller::Premium, Caller::Owner, Caller::Admin]
        {
            let expected = row.expect[COLUMNS.iter().position(|c| *c == caller).unwrap()];
            if expected == Expect::Allowed {
                failures.extend(check(&world, row, caller, expected).await);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells disagree with the table:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_someone_elses_notification_read_changes_nothing_of_theirs() {
    let world = world().await;
    let unread = |list: &Value| {
        list["items"].as_array().unwrap().iter().filter(|n| n["read"] == false).count()
    };
    let owner = world.token(Caller::Owner).unwrap().to_owned();
    let before = json_of(world.app.get("/v1/me/notifications", Some(&owner)).await, "list").await;
    assert_eq!(unread(&before), 1, "{before}");
    for caller in [Caller::Other, Caller::Premium, Caller::Admin] {
        let body = Body::Json(json!({"ids": ["{notification}"]}));
        let response = world.send(caller, &Method::POST, "/v1/me/notifications/read", &body).await;
        assert!(response.status().is_success(), "{caller:?}: {}", response.status());
    }
    let after = json_of(world.app.get("/v1/me/notifications", Some(&owner)).await, "list").await;
    assert_eq!(before, after);
    let marked = world
        .send(
            Caller::Owner,
            &Method::POST,
            "/v1/me/notifications/read",
            &Body::Json(json!({"ids": ["{notification}"]})),
        )
        .await;
    assert!(marked.status().is_success());
    let read = json_of(world.app.get("/v1/me/notifications", Some(&owner)).await, "list").await;
    assert_eq!(unread(&read), 0, "the owner's own request marks it: {read}");
}
