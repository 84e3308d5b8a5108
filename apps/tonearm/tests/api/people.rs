//! People end to end: a signed payment makes a listener premium (and a bad webhook changes
//! nothing), follows and notifications, friends' now-playing on the live channel (here and
//! across two replicas sharing Redis), presence that fades, and welcome mail that reaches a
//! real SMTP server exactly once through an outage and a crash.

use std::time::{Duration, Instant};

use futures::StreamExt;
use people::domain::billing;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tonearm::ServiceName;

use crate::{
    catalog::{upload, wav},
    support::{
        TestApp, UpProcess, assert_problem, redis_url, settled, succeeded, test_settings, token,
        tonearm_cli, unique_email,
    },
};

const SECRET: &str = "whsec_test_secret";

/// Settings with a known webhook secret (and room for the polling below).
fn settings(dir: &std::path::Path) -> tonearm::Settings {
    let mut settings = test_settings(dir);
    settings.people.billing.webhook_secrets = vec![SECRET.to_owned().into()];
    settings.gateway.rate_limits.free_per_minute = 10_000;
    settings.gateway.rate_limits.anonymous_per_minute = 10_000;
    settings
}

async fn up() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().unwrap();
    let app = Box::pin(TestApp::up_with(settings(dir.path()), None)).await;
    (app, dir)
}

/// An `invoice.paid` event paying until `end` for the account with `email`.
fn invoice(
    event_id: &str,
    invoice_id: &str,
    email: &str,
    end: chrono::DateTime<chrono::Utc>,
) -> Value {
    json!({
        "id": event_id,
        "type": "invoice.paid",
        "data": {"object": {
            "id": invoice_id,
            "customer_email": email,
            "amount_paid": 999,
            "currency": "eur",
            "lines": {"data": [{"period": {"start": chrono::Utc::now().timestamp(), "end": end.timestamp()}}]}
        }}
    })
}

async fn webhook(app: &TestApp, body: &[u8], signature: Option<String>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/v1/billing/webhook"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    request.send().await.unwrap()
}

async fn signed(app: &TestApp, event: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(event).unwrap();
    let signature = billing::sign(&body, SECRET, chrono::Utc::now().timestamp());
    webhook(app, &body, Some(signature)).await
}

/// Polls `/v1/me` until its tier is `tier`; returns the last response's body and its
/// `RateLimit-Limit`.
async fn until_tier(app: &TestApp, token: &str, tier: &str) -> (Value, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = app.get("/v1/me", Some(token)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let limit = response.headers()["ratelimit-limit"].to_str().unwrap().to_owned();
        let me: Value = response.json().await.unwrap();
        if me["tier"] == tier {
            return (me, limit);
        }
        assert!(Instant::now() < deadline, "never {tier}: {me}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The budget the next request is given.
async fn budget(app: &TestApp, token: &str) -> String {
    let response = app.get("/v1/me", Some(token)).await;
    response.headers()["ratelimit-limit"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_signed_payment_makes_the_listener_premium_and_bad_webhooks_change_nothing() {
    let (app, _dir) = up().await;
    let email = unique_email();
    let listener = token(&app.register(&email).await, "access_token");
    let end = chrono::Utc::now() + chrono::TimeDelta::days(30);
    let event = invoice("evt_paid", "in_paid", &email, end);
    let body = serde_json::to_vec(&event).unwrap();
    let now = chrono::Utc::now().timestamp();

    // Wrong secret, stale timestamp, no signature, a tampered body, a malformed event, an
    // unknown customer, an oversized body: each refused, none with any effect.
    let refusals = [
        (
            webhook(&app, &body, Some(billing::sign(&body, "whsec_other", now))).await,
            StatusCode::BAD_REQUEST,
        ),
        (
            webhook(&app, &body, Some(billing::sign(&body, SECRET, now - 301))).await,
            StatusCode::BAD_REQUEST,
        ),
        (webhook(&app, &body, None).await, StatusCode::BAD_REQUEST),
        (
            webhook(&app, b"{\"id\":\"evt_paid\"}", Some(billing::sign(&body, SECRET, now))).await,
            StatusCode::BAD_REQUEST,
        ),
        (
            signed(&app, &json!({"id": "evt_bad", "type": "invoice.paid", "data": {"object": {}}}))
                .await,
            StatusCode::BAD_REQUEST,
        ),
        (signed(&app, &json!({"no": "id"})).await, StatusCode::BAD_REQUEST),
        (
            signed(&app, &invoice("evt_who", "in_who", "nobody@example.com", end)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            webhook(
                &app,
                &vec![b' '; 70_000],
                Some(billing::sign(&vec![b' '; 70_000], SECRET, now)),
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (response, status) in refusals {
        assert_problem(response, status).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let me: Value = app.get("/v1/me", Some(&listener)).await.json().await.unwrap();
    assert_eq!(me["tier"], "free", "{me}");
    assert_eq!(budget(&app, &listener).await, "10000");

    let paid = signed(&app, &event).await;
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(paid.json::<Value>().await.unwrap(), json!({"received": true, "duplicate": false}));
    let (me, _) = until_tier(&app, &listener, "premium").await;
    let until: chrono::DateTime<chrono::Utc> =
        me["premium_until"].as_str().unwrap().parse().unwrap();
    assert_eq!(until.timestamp(), end.timestamp());
    // The next request spends the premium budget, on the same token.
    assert_eq!(budget(&app, &listener).await, app_premium_budget());

    // A replay (same event id) is acknowledged and changes nothing.
    let replay = signed(&app, &event).await;
    assert_eq!(replay.json::<Value>().await.unwrap()["duplicate"], true);

    // A refund ends it.
    let refund = json!({"id": "evt_refund", "type": "charge.refunded",
        "data": {"object": {"id": "ch_1", "invoice": "in_paid"}}});
    assert_eq!(signed(&app, &refund).await.status(), StatusCode::OK);
    let (me, _) = until_tier(&app, &listener, "free").await;
    assert!(me.get("premium_until").is_none(), "{me}");
    assert_eq!(budget(&app, &listener).await, "10000");
}

fn app_premium_budget() -> String {
    tonearm::Settings::default().gateway.rate_limits.premium_per_minute.to_string()
}

#[tokio::test]
async fn premium_ends_when_the_paid_period_does() {
    let (app, _dir) = up().await;
    let email = unique_email();
    let listener = token(&app.register(&email).await, "access_token");
    let end = chrono::Utc::now() + chrono::TimeDelta::seconds(3);
    assert_eq!(
        signed(&app, &invoice("evt_short", "in_short", &email, end)).await.status(),
        StatusCode::OK
    );
    until_tier(&app, &listener, "premium").await;
    assert_eq!(budget(&app, &listener).await, app_premium_budget());
    // Nothing announces the end: the session's grant lapses with the period.
    let (me, limit) = until_tier(&app, &listener, "free").await;
    // Providers state periods in whole seconds.
    let paid_until = chrono::DateTime::from_timestamp(end.timestamp(), 0).unwrap();
    assert!(chrono::Utc::now() >= paid_until, "free before the period ended: {me}");
    assert_eq!(limit, "10000");
}

/// A live stream read as a player reads it.
pub(crate) struct Live {
    events:
        std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buffer: String,
}

impl Live {
    pub(crate) async fn open(url: &str, token: &str) -> Self {
        let response = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { events: Box::pin(response.bytes_stream()), buffer: String::new() }
    }

    /// The next event named `name` (others are passed over), with its data.
    pub(crate) async fn next(&mut self, name: &str) -> Value {
        tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                while let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut event = "message";
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(value) = line.strip_prefix("event:") {
                            event = value.trim();
                        } else if let Some(value) = line.strip_prefix("data:") {
                            data.push_str(value.trim_start());
                        }
                    }
                    if event == name {
                        return serde_json::from_str(&data).unwrap();
                    }
                }
                let chunk = self.events.next().await.expect("the stream stays open").unwrap();
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no `{name}` event"))
    }
}

/// Uploads a short track and waits until it is ready; returns its id.
async fn ready_track(app: &TestApp, token: &str, title: &str, seed: u8) -> String {
    let accepted =
        upload(app, token, &format!("{title}.wav"), wav(3, seed), &[("title", title)]).await;
    let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(app, token, &id).await["status"], "ready");
    id
}

#[tokio::test]
async fn followers_hear_of_playlists_and_see_what_friends_play_live() {
    let (app, _dir) = up().await;
    let ann_body = app.register(&unique_email()).await;
    let ann = token(&ann_body, "access_token");
    let bob_body = app.register(&unique_email()).await;
    let bob = token(&bob_body, "access_token");
    let bob_id = bob_body["user"]["id"].as_str().unwrap().to_owned();
    let ann_id = ann_body["user"]["id"].as_str().unwrap().to_owned();

    // Bad input: yourself, nobody, not an id.
    assert_problem(
        app.send(Method::PUT, &format!("/v1/me/following/{ann_id}"), Some(&ann), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let nobody = uuid::Uuid::now_v7();
    assert_problem(
        app.send(Method::PUT, &format!("/v1/me/following/{nobody}"), Some(&ann), None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.send(Method::PUT, "/v1/me/following/not-an-id", Some(&ann), None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(app.get("/v1/me/following", None).await, StatusCode::UNAUTHORIZED).await;
    let following: Value = app.get("/v1/me/following", Some(&ann)).await.json().await.unwrap();
    assert_eq!(following["total"], 0);

    // Bob registered a moment ago: he can be followed at once.
    let follow =
        app.send(Method::PUT, &format!("/v1/me/following/{bob_id}"), Some(&ann), None).await;
    assert_eq!(follow.status(), StatusCode::NO_CONTENT);
    let again =
        app.send(Method::PUT, &format!("/v1/me/following/{bob_id}"), Some(&ann), None).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    let following: Value = app.get("/v1/me/following", Some(&ann)).await.json().await.unwrap();
    assert_eq!(
        (following["total"].clone(), following["items"][0]["user"]["id"].clone()),
        (json!(1), json!(bob_id))
    );
    let profile: Value =
        app.get(&format!("/v1/users/{bob_id}"), Some(&ann)).await.json().await.unwrap();
    assert_eq!(
        (profile["followers"].clone(), profile["followed"].clone()),
        (json!(1), json!(true))
    );
    let found: Value = app.get("/v1/users?q=list", Some(&ann)).await.json().await.unwrap();
    assert!(found["total"].as_u64().unwrap() >= 2, "{found}");
    assert_problem(app.get("/v1/users?q=", Some(&ann)).await, StatusCode::UNPROCESSABLE_ENTITY)
        .await;

    let track = ready_track(&app, &bob, "Evening Tide", 1).await;
    let mut live = Live::open(&app.url("/v1/me/live"), &ann).await;
    assert_eq!(live.next("ready").await["unread"], 0);

    // Bob makes a public playlist: Ann hears of it live and finds it in her list.
    let created =
        app.post("/v1/playlists", Some(&bob), json!({"name": "Sunday", "public": true})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let notification = live.next("notification").await;
    assert_eq!(notification["kind"], "playlist_created", "{notification}");
    assert_eq!(notification["actor"]["id"], bob_id.as_str());
    assert_eq!(notification["playlist"]["name"], "Sunday");

    // Bob plays the track (a play reported as a player does): Ann sees it.
    let play = json!({"track_id": track, "played_ms": 2000});
    assert_eq!(app.post("/v1/me/plays", Some(&bob), play).await.status(), StatusCode::ACCEPTED);
    let playing = live.next("now_playing").await;
    assert_eq!(
        (playing["user"]["id"].clone(), playing["track"]["id"].clone()),
        (json!(bob_id), json!(track))
    );

    // And says so while it plays (the heartbeat).
    let heartbeat = app
        .send(
            Method::PUT,
            "/v1/me/now-playing",
            Some(&bob),
            Some(json!({"track_id": track, "position_ms": 1200})),
        )
        .await;
    assert_eq!(heartbeat.status(), StatusCode::NO_CONTENT);
    let playing = live.next("now_playing").await;
    assert_eq!(
        (playing["user"]["id"].clone(), playing["track"]["id"].clone()),
        (json!(bob_id), json!(track))
    );
    assert_eq!(playing["track"]["title"], "Evening Tide");
    let friends: Value =
        app.get("/v1/me/following/now-playing", Some(&ann)).await.json().await.unwrap();
    assert_eq!(friends["items"][0]["user"]["id"], bob_id.as_str(), "{friends}");
    let unknown_track = json!({"track_id": uuid::Uuid::now_v7()});
    assert_problem(
        app.send(Method::PUT, "/v1/me/now-playing", Some(&bob), Some(unknown_track)).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Bob hides his presence: it ends for Ann at once.
    let hidden =
        app.send(Method::PUT, "/v1/me/presence", Some(&bob), Some(json!({"visible": false}))).await;
    assert_eq!(hidden.json::<Value>().await.unwrap(), json!({"visible": false}));
    assert_eq!(live.next("presence_ended").await["user_id"], bob_id.as_str());
    app.send(Method::PUT, "/v1/me/now-playing", Some(&bob), Some(json!({"track_id": track}))).await;
    let friends: Value =
        app.get("/v1/me/following/now-playing", Some(&ann)).await.json().await.unwrap();
    assert_eq!(friends["total"], 0, "hidden: {friends}");

    // Bob was told of his new follower; Ann reads and clears hers.
    let bobs: Value = app.get("/v1/me/notifications", Some(&bob)).await.json().await.unwrap();
    assert_eq!(
        (bobs["unread"].clone(), bobs["items"][0]["kind"].clone()),
        (json!(1), json!("new_follower"))
    );
    let anns: Value = app.get("/v1/me/notifications", Some(&ann)).await.json().await.unwrap();
    assert_eq!(anns["unread"], 1);
    let read = app.post("/v1/me/notifications/read", Some(&ann), json!({})).await;
    assert_eq!(read.json::<Value>().await.unwrap(), json!({"unread": 0}));
    assert_eq!(live.next("unread").await["unread"], 0);
    let unfollow =
        app.send(Method::DELETE, &format!("/v1/me/following/{bob_id}"), Some(&ann), None).await;
    assert_eq!(unfollow.status(), StatusCode::NO_CONTENT);

    let api: Value = app.get("/v1/openapi.json", None).await.json().await.unwrap();
    for path in [
        "/v1/billing/webhook",
        "/v1/me/live",
        "/v1/me/following/{user_id}",
        "/v1/me/notifications",
        "/v1/me/now-playing",
    ] {
        assert!(api["paths"][path].is_object(), "{path} is documented");
    }
}

#[tokio::test]
async fn presence_fades_after_its_ttl() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut settings = settings(dir.path());
    settings.people.presence_ttl_secs = 2;
    let app = TestApp::up_with(settings, None).await;
    let ann = token(&app.register(&unique_email()).await, "access_token");
    let bob_body = app.register(&unique_email()).await;
    let bob = token(&bob_body, "access_token");
    let bob_id = bob_body["user"]["id"].as_str().unwrap().to_owned();
    app.send(Method::PUT, &format!("/v1/me/following/{bob_id}"), Some(&ann), None).await;
    let track = ready_track(&app, &bob, "Low Light", 2).await;
    let beat = app
        .send(Method::PUT, "/v1/me/now-playing", Some(&bob), Some(json!({"track_id": track})))
        .await;
    assert_eq!(beat.status(), StatusCode::NO_CONTENT);
    let friends: Value =
        app.get("/v1/me/following/now-playing", Some(&ann)).await.json().await.unwrap();
    assert_eq!(friends["total"], 1, "{friends}");
    let expires: chrono::DateTime<chrono::Utc> =
        friends["items"][0]["expires_at"].as_str().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let friends: Value =
            app.get("/v1/me/following/now-playing", Some(&ann)).await.json().await.unwrap();
        if friends["total"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still playing: {friends}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        chrono::Utc::now() >= expires - chrono::TimeDelta::milliseconds(50),
        "gone only at its TTL"
    );
}

/// The catalog's answer about one ready track, for people replicas deployed without one.
async fn catalog_with(track_id: uuid::Uuid) -> (String, tokio::task::JoinHandle<()>) {
    let track = json!({"id": track_id, "title": "Blue Hour", "status": "ready", "duration_ms": 3000,
        "artist": {"id": uuid::Uuid::now_v7(), "name": "Quiet Band"},
        "album": {"id": uuid::Uuid::now_v7(), "title": "Dusk"}});
    let router = axum::Router::new().route(
        "/v1/tracks/{id}",
        axum::routing::get(move || {
            let track = track.clone();
            async move { axum::Json(track) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (url, tokio::spawn(async move { axum::serve(listener, router).await.unwrap() }))
}

/// Identity headers as the gateway sets them, proven with the deployment's secret, for
/// calling a service directly.
fn as_user(request: reqwest::RequestBuilder, user_id: &str) -> reqwest::RequestBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    let session = uuid::Uuid::now_v7().to_string();
    for (name, value) in [
        (kernel::caller::USER_ID, user_id),
        (kernel::caller::SESSION_ID, session.as_str()),
        (kernel::caller::TIER, "free"),
        (kernel::caller::ROLE, "user"),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    let key = kernel::internal::InternalKey::new(crate::support::INTERNAL_SECRET.to_owned().into());
    key.prove(&mut headers, chrono::Utc::now().timestamp());
    request.headers(headers)
}

#[tokio::test]
async fn replicas_sharing_redis_deliver_each_others_live_messages() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::TempDir::new().unwrap()).collect();
    let auth = TestApp::serve(test_settings(dirs[0].path()), ServiceName::Auth).await;
    let ann = auth.register(&unique_email()).await["user"]["id"].as_str().unwrap().to_owned();
    let bob = auth.register(&unique_email()).await["user"]["id"].as_str().unwrap().to_owned();
    let track = uuid::Uuid::now_v7();
    let (catalog, _catalog) = catalog_with(track).await;
    let database = testkit::fresh_postgres_url();
    let replica = |dir: &std::path::Path| {
        let mut settings = test_settings(dir);
        settings.people.database_url = Some(kernel::engine::EngineUrl::new(database.clone()));
        settings.people.cache_url = Some(kernel::engine::EngineUrl::new(redis_url()));
        settings.people.auth_url = Some(format!("http://{}", auth.addr));
        settings.people.catalog_url = Some(catalog.clone());
        settings
    };
    let one = TestApp::serve(replica(dirs[1].path()), ServiceName::People).await;
    let two = TestApp::serve(replica(dirs[2].path()), ServiceName::People).await;

    // Ann listens on replica one; Bob's follow-back, heartbeat and stop land on replica two.
    // Identity a client claims for itself is not believed; proven identity is.
    let forged = one
        .client
        .put(one.url(&format!("/v1/me/following/{bob}")))
        .header(kernel::caller::USER_ID, ann.as_str())
        .header(kernel::caller::SESSION_ID, ann.as_str())
        .header(kernel::caller::TIER, "free")
        .header(kernel::caller::ROLE, "user");
    assert_problem(forged.send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    let internal = one.client.get(format!("http://{}/internal/v1/users/{ann}", auth.addr));
    assert_problem(internal.send().await.unwrap(), StatusCode::FORBIDDEN).await;
    let follow = as_user(one.client.put(one.url(&format!("/v1/me/following/{bob}"))), &ann);
    assert_eq!(follow.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let response = as_user(one.client.get(one.url("/v1/me/live")), &ann).send().await.unwrap();
    let mut live = Live { events: Box::pin(response.bytes_stream()), buffer: String::new() };
    live.next("ready").await;
    // Redis learns of the stream's channels asynchronously: heartbeat until Ann hears.
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let beat = as_user(two.client.put(two.url("/v1/me/now-playing")), &bob)
                .json(&json!({"track_id": track}));
            assert_eq!(beat.send().await.unwrap().status(), StatusCode::NO_CONTENT);
            if let Ok(playing) =
                tokio::time::timeout(Duration::from_millis(300), live.next("now_playing")).await
            {
                return playing;
            }
        }
    })
    .await
    .expect("Bob's now-playing crossed to Ann's replica");
    assert_eq!(
        (heard["user"]["id"].clone(), heard["track"]["title"].clone()),
        (json!(bob), json!("Blue Hour"))
    );

    let follow_back = as_user(two.client.put(two.url(&format!("/v1/me/following/{ann}"))), &bob);
    assert_eq!(follow_back.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let told = live.next("notification").await;
    assert_eq!(
        (told["kind"].clone(), told["actor"]["id"].clone()),
        (json!("new_follower"), json!(bob))
    );
    let stop = as_user(two.client.delete(two.url("/v1/me/now-playing")), &bob);
    assert_eq!(stop.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(live.next("presence_ended").await["user_id"], bob.as_str());
}

#[tokio::test]
async fn without_a_relay_the_welcome_is_written_as_an_eml_file() {
    let (app, dir) = up().await;
    let email = unique_email();
    app.register(&email).await;
    let mail_dir = dir.path().join("mail");
    let deadline = Instant::now() + Duration::from_secs(15);
    let message = loop {
        if let Some(message) = testkit::received_mail(&mail_dir).into_iter().next() {
            break message;
        }
        assert!(Instant::now() < deadline, "no welcome in {}", mail_dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(message.contains(&format!("To: {email}")), "{message}");
    assert!(message.contains("Subject: Welcome to Tonearm"), "{message}");
    assert!(message.contains("multipart/alternative"), "{message}");
    assert!(message.contains("text/plain") && message.contains("text/html"), "{message}");
}

/// The recipients of the messages a relay received, each as often as it arrived.
fn recipients(messages: &[String]) -> Vec<String> {
    let mut to: Vec<String> = messages
        .iter()
        .filter_map(|message| message.lines().find_map(|line| line.strip_prefix("To: ")))
        .map(str::to_owned)
        .collect();
    to.sort();
    to
}

#[tokio::test]
async fn fifty_welcomes_reach_the_relay_once_each_through_an_outage_and_a_crash() {
    let data = tempfile::TempDir::new().unwrap();
    let relay_dir = tempfile::TempDir::new().unwrap();
    let port = testkit::free_port();
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let env = [
        ("RUST_LOG", "warn"),
        ("TONEARM_PEOPLE__MAIL__SMTP_URL", smtp_url.as_str()),
        ("TONEARM_PEOPLE__MAIL__MAX_BACKOFF_SECS", "1"),
        ("TONEARM_PEOPLE__MAIL__POLL_MS", "100"),
        ("TONEARM_GATEWAY__RATE_LIMITS__ANONYMOUS_PER_MINUTE", "100000"),
    ];
    let mut emails: Vec<String> = (0..50).map(|_| unique_email()).collect();

    // The relay is down: the first 25 registrations queue their welcomes, which keep
    // failing, and the process is killed while they wait.
    let first = UpProcess::start_with(data.path(), &env).await;
    let app = TestApp::attach(&first.url, data.path());
    for email in &emails[..25] {
        app.register(email).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.kill();

    // The relay comes up refusing (451) at first; the restarted process sends the queue
    // and the next 25 once it accepts.
    let relay = testkit::OwnSmtpRelay::start_on(port, relay_dir.path()).await;
    relay.refuse(true);
    let second = UpProcess::start_with(data.path(), &env).await;
    let app = TestApp::attach(&second.url, data.path());
    for email in &emails[25..] {
        app.register(email).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(relay.messages().is_empty(), "nothing is accepted while the relay refuses");
    relay.refuse(false);

    let deadline = Instant::now() + Duration::from_secs(60);
    while relay.messages().len() < 50 {
        assert!(Instant::now() < deadline, "only {} of 50 arrived", relay.messages().len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Time for any duplicate to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    emails.sort();
    assert_eq!(recipients(&relay.messages()), emails, "each listener welcomed exactly once");
    drop(second);
}

#[tokio::test]
async fn billing_simulate_upgrades_an_account_on_a_running_server() {
    let data = tempfile::TempDir::new().unwrap();
    let server = UpProcess::start(data.path()).await;
    let app = TestApp::attach(&server.url, data.path());
    let email = unique_email();
    let listener = token(&app.register(&email).await, "access_token");
    let output = tonearm_cli(
        &["billing", "simulate", &email, "--months", "2", "--url", &server.url],
        data.path(),
        &[],
    );
    let said = succeeded(&output);
    assert!(said.contains("paid for 2 month(s)"), "{said}");
    let (me, _) = until_tier(&app, &listener, "premium").await;
    let until: chrono::DateTime<chrono::Utc> =
        me["premium_until"].as_str().unwrap().parse().unwrap();
    assert!(until > chrono::Utc::now() + chrono::TimeDelta::days(55), "{me}");
    let unknown = tonearm_cli(
        &["billing", "simulate", "nobody@example.com", "--url", &server.url],
        data.path(),
        &[],
    );
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn stopping_the_server_ends_open_live_streams_instead_of_waiting_for_them() {
    let data = tempfile::TempDir::new().unwrap();
    let server = UpProcess::start(data.path()).await;
    let app = TestApp::attach(&server.url, data.path());
    let listener = token(&app.register(&unique_email()).await, "access_token");
    let mut live = Live::open(&app.url("/v1/me/live"), &listener).await;
    live.next("ready").await;
    server.terminate();
    // The stream ends cleanly well before the 30 s grace period would have cut it.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(chunk) = live.events.next().await {
            chunk.expect("the stream ends cleanly, not cut off");
        }
    })
    .await;
    assert!(ended.is_ok(), "the live stream held the shutdown open");
    assert!(server.wait().await.success());
}
