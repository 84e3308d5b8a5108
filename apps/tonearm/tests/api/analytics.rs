//! Listening analytics through the gateway, on the embedded warehouse: plays reported
//! (once per client id, all or none), then seen in history, top tracks and the play
//! series within seconds; active users and API statistics for administrators only; and a
//! replay of the whole `song.played` topic that changes no count.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use testkit::OwnClickHouse;
use uuid::Uuid;

use crate::{
    playlists::ready_tracks,
    support::{
        TestApp, assert_problem, redis_settings, redis_url, succeeded, test_settings, token,
        tonearm_cli, unique_email,
    },
};

/// How soon a play must show in the charts.
const FRESH: Duration = Duration::from_secs(5);

/// Polls `path` until `done` holds of its body, or fails after `within`: often at first,
/// then every half second, which keeps a long wait inside the free tier's budget.
async fn eventually(
    app: &TestApp,
    token: &str,
    path: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    poll(app, token, path, within, &[StatusCode::OK], done).await
}

/// [`eventually`], also taking answers with any of `statuses` (while a store is away).
async fn poll(
    app: &TestApp,
    token: &str,
    path: &str,
    within: Duration,
    statuses: &[StatusCode],
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let response = app.get(path, Some(token)).await;
        let status = response.status();
        assert!(statuses.contains(&status), "{path}: {status}");
        let body: Value = response.json().await.unwrap();
        if status == StatusCode::OK && done(&body) {
            return body;
        }
        assert!(started.elapsed() < within, "{path} never got there: {body}");
        let pause = if started.elapsed() < Duration::from_secs(2) { 100 } else { 500 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap()
}

fn plays_of(top: &Value, track: &str) -> Option<(u64, u64, u64)> {
    top["items"].as_array().unwrap().iter().find(|item| item["track"]["id"] == track).map(|item| {
        (
            item["plays"].as_u64().unwrap(),
            item["streams"].as_u64().unwrap(),
            item["listeners"].as_u64().unwrap(),
        )
    })
}

async fn report(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.post("/v1/me/plays", Some(token), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_show_in_history_and_charts_within_seconds() {
    let app = TestApp::up().await;
    let alice = token(&app.register(&unique_email()).await, "access_token");
    let bob = token(&app.register(&unique_email()).await, "access_token");
    let tracks = ready_tracks(&app, &alice, 2, 40).await;
    let (first, second) = (&tracks[0], &tracks[1]);

    // One play, retried with its id: counted once.
    let play_id = Uuid::now_v7();
    let one = json!({"id": play_id, "track_id": first, "played_ms": 900});
    let reported = Instant::now();
    let accepted = report(&app, &alice, one.clone()).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    assert_eq!(accepted.json::<Value>().await.unwrap()["accepted"], 1);
    let retried = report(&app, &alice, one).await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    assert_eq!(retried.json::<Value>().await.unwrap()["accepted"], 0);
    let top = eventually(&app, &bob, "/v1/analytics/top-tracks?window=1h", FRESH, |top| {
        plays_of(top, first).is_some()
    })
    .await;
    assert!(reported.elapsed() < FRESH);
    assert_eq!(plays_of(&top, first), Some((1, 1, 1)), "{top}");

    // Offline plays, sent later as an array: an hour and two days ago; one too short to
    // be a stream.
    let an_hour_ago = Utc::now() - TimeDelta::hours(1);
    let two_days_ago = Utc::now() - TimeDelta::days(2);
    let offline = json!([
        {"track_id": second, "played_ms": 1000, "started_at": an_hour_ago.to_rfc3339()},
        {"track_id": first, "played_ms": 100, "started_at": two_days_ago.to_rfc3339(),
         "context": "playlist:road-trip"},
    ]);
    let accepted = report(&app, &bob, offline).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    assert_eq!(accepted.json::<Value>().await.unwrap()["accepted"], 2);
    let week = eventually(&app, &bob, "/v1/analytics/top-tracks?window=7d", FRESH, |top| {
        top["total"] == 2 && plays_of(top, first).is_some_and(|(plays, ..)| plays == 2)
    })
    .await;
    assert_eq!(plays_of(&week, first), Some((2, 1, 2)), "two listeners, one stream: {week}");
    assert_eq!(plays_of(&week, second), Some((1, 1, 1)));
    assert_eq!(week["items"][0]["track"]["id"], first.as_str(), "most played first");
    let day = app.get("/v1/analytics/top-tracks?window=24h", Some(&bob)).await;
    let day: Value = day.json().await.unwrap();
    assert_eq!(plays_of(&day, first), Some((1, 1, 1)), "the two-day-old play is outside: {day}");

    // History: the caller's own plays, newest first, with the track summary.
    let history: Value = app.get("/v1/me/history", Some(&bob)).await.json().await.unwrap();
    assert_eq!(history["total"], 2, "{history}");
    assert_eq!(history["items"][0]["track"]["id"], second.as_str());
    assert_eq!(history["items"][0]["played_ms"], 1000);
    assert!(history["items"][0]["track"]["title"].is_string());
    assert_eq!(history["items"][1]["track"]["id"], first.as_str());
    let played_at = history["items"][1]["played_at"].as_str().unwrap();
    assert_eq!(played_at, two_days_ago.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let alices: Value = app.get("/v1/me/history", Some(&alice)).await.json().await.unwrap();
    assert_eq!(alices["total"], 1, "{alices}");

    // Plays per hour over the last day: the two recent plays, each in the hour it began.
    // Where each falls comes from the recorded play times, since an hour may turn while
    // the test runs.
    let asked = hour_of(Utc::now());
    let series: Value =
        app.get("/v1/analytics/plays?interval=hour", Some(&bob)).await.json().await.unwrap();
    let answered = hour_of(Utc::now());
    let series = series["series"].as_array().unwrap();
    assert_eq!(series.len(), 24, "the current hour and the 23 before it");
    let last = hour_of(series.last().unwrap()["t"].as_str().unwrap().parse().unwrap());
    assert!((asked..=answered).contains(&last), "the series ends with the current hour");
    let recent = [&alices["items"][0], &history["items"][0]];
    let hours: Vec<DateTime<Utc>> = recent
        .iter()
        .map(|play| hour_of(play["played_at"].as_str().unwrap().parse().unwrap()))
        .collect();
    for point in series {
        let t = hour_of(point["t"].as_str().unwrap().parse().unwrap());
        let expected = hours.iter().filter(|hour| **hour == t).count();
        assert_eq!(point["plays"], expected, "plays begun in the hour of {t}: {series:?}");
    }
    let total: u64 = series.iter().map(|point| point["plays"].as_u64().unwrap()).sum();
    assert_eq!(total, 2, "{series:?}");
    let daily = app.get("/v1/analytics/plays?interval=day&from=2020-01-01T00:00:00Z", Some(&bob));
    assert_problem(daily.await, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plays_change_nothing() {
    let app = TestApp::up().await;
    let listener = token(&app.register(&unique_email()).await, "access_token");
    let tracks = ready_tracks(&app, &listener, 1, 50).await;
    let track = &tracks[0];

    let unknown = json!({"track_id": Uuid::now_v7(), "played_ms": 10});
    assert_problem(report(&app, &listener, unknown).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    // One good play beside one far longer than its 1 s track: neither counts.
    let mixed = json!([
        {"track_id": track, "played_ms": 900},
        {"track_id": track, "played_ms": 600_000},
    ]);
    let problem =
        assert_problem(report(&app, &listener, mixed).await, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    assert!(problem["detail"].as_str().unwrap().contains("play 1"), "{problem}");
    let future = json!({"track_id": track, "played_ms": 5,
        "started_at": (Utc::now() + TimeDelta::hours(2)).to_rfc3339()});
    assert_problem(report(&app, &listener, future).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    // Each refusal names the field and says what is wrong, in words.
    for (body, said) in [
        (
            json!({"track_id": track, "played_ms": -1}),
            "`played_ms` must be a whole number, 0 or more, not -1",
        ),
        (json!({"track_id": 5, "played_ms": 10}), "`track_id` must be a UUID, not 5"),
        (json!({"played_ms": 10}), "`track_id` is required"),
        (
            json!([{"track_id": track, "played_ms": 10}, {"track_id": track}]),
            "`[1].played_ms` is required",
        ),
    ] {
        let problem =
            assert_problem(report(&app, &listener, body).await, StatusCode::UNPROCESSABLE_ENTITY)
                .await;
        assert_eq!(problem["detail"], said);
    }
    let broken = app
        .client
        .post(app.url("/v1/me/plays"))
        .bearer_auth(&listener)
        .header("content-type", "application/json")
        .body("{\"track_id\": ")
        .send()
        .await
        .unwrap();
    assert_problem(broken, StatusCode::BAD_REQUEST).await;
    let none = report(&app, &listener, json!([])).await;
    assert_problem(none, StatusCode::UNPROCESSABLE_ENTITY).await;
    let anonymous = app.post("/v1/me/plays", None, json!({"track_id": track, "played_ms": 5}));
    assert_problem(anonymous.await, StatusCode::UNAUTHORIZED).await;
    let window = app.get("/v1/analytics/top-tracks?window=2h", Some(&listener)).await;
    assert_problem(window, StatusCode::BAD_REQUEST).await;

    // A good play afterwards is the only one counted.
    let good = report(&app, &listener, json!({"track_id": track, "played_ms": 900})).await;
    assert_eq!(good.status(), StatusCode::ACCEPTED);
    let top = eventually(&app, &listener, "/v1/analytics/top-tracks", FRESH, |top| {
        plays_of(top, track).is_some()
    })
    .await;
    assert_eq!(plays_of(&top, track), Some((1, 1, 1)), "{top}");
    let history: Value = app.get("/v1/me/history", Some(&listener)).await.json().await.unwrap();
    assert_eq!(history["total"], 1, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_users_and_api_statistics_are_for_administrators() {
    // Active users are counted by calendar day (UTC) and the checks below read today's
    // count, so a run that would straddle midnight waits for the day to turn first.
    let next_day = (Utc::now() + TimeDelta::days(1)).duration_trunc(TimeDelta::days(1)).unwrap();
    let left_today = (next_day - Utc::now()).to_std().unwrap_or_default();
    if left_today < Duration::from_secs(60) {
        tokio::time::sleep(left_today + Duration::from_secs(1)).await;
    }
    // The grants live in Redis, so the operator command's role change reaches the
    // running gateway at once.
    let dir = Arc::new(TempDir::new().unwrap());
    let app = TestApp::up_with(redis_settings(dir.path()), Some(dir.clone())).await;
    let operator_email = unique_email();
    let operator = token(&app.register(&operator_email).await, "access_token");
    let listener = token(&app.register(&unique_email()).await, "access_token");
    let tracks = ready_tracks(&app, &listener, 1, 60).await;
    let played = report(&app, &listener, json!({"track_id": tracks[0], "played_ms": 700})).await;
    assert_eq!(played.status(), StatusCode::ACCEPTED);
    let missing = app.get("/v1/me/nothing-here", Some(&listener)).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    for path in ["/v1/analytics/users/active", "/v1/analytics/api"] {
        assert_problem(app.get(path, Some(&listener)).await, StatusCode::FORBIDDEN).await;
    }
    let redis = redis_url();
    let env = [("TONEARM_AUTH__CACHE_URL", redis.as_str())];
    succeeded(&tonearm_cli(&["users", "set-role", &operator_email, "admin"], dir.path(), &env));

    // Both registered today, and the listener played: two active users today.
    let active = eventually(&app, &operator, "/v1/analytics/users/active", FRESH, |body| {
        body["series"].as_array().unwrap().last().unwrap()["active_users"] == 2
    })
    .await;
    let series = active["series"].as_array().unwrap();
    assert_eq!(series.len(), 30, "the last 30 days: {active}");
    let weekly: Value = app
        .get("/v1/analytics/users/active?interval=month", Some(&operator))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(weekly["series"].as_array().unwrap().last().unwrap()["active_users"], 2);

    // The gateway's request metrics arrive in batches: the play report is among them,
    // under its route's template.
    let stats = eventually(&app, &operator, "/v1/analytics/api?window=1h", FRESH * 2, |body| {
        body["routes"].as_array().unwrap().iter().any(|route| route["route"] == "/v1/me/plays")
    })
    .await;
    let routes = stats["routes"].as_array().unwrap();
    let plays = routes.iter().find(|route| route["route"] == "/v1/me/plays").unwrap();
    assert_eq!(plays["method"], "POST");
    assert!(plays["requests"].as_u64().unwrap() >= 1, "{plays}");
    assert_eq!(plays["errors"], 0);
    assert!(plays["p95_ms"].as_f64().unwrap() >= plays["p50_ms"].as_f64().unwrap());
    assert!(plays["p50_ms"].as_f64().unwrap() > 0.0);
    let tracks_route = routes.iter().find(|route| route["route"] == "/v1/tracks/{id}");
    assert!(tracks_route.is_some(), "ids are folded into the template: {stats}");
    assert_problem(
        app.get("/v1/analytics/api?window=7d", Some(&operator)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_every_play_changes_no_count() {
    let app = TestApp::up().await;
    let listener = token(&app.register(&unique_email()).await, "access_token");
    let tracks = ready_tracks(&app, &listener, 1, 70).await;
    let track = &tracks[0];
    // Four plays too short to stream (under half of the 1 s track) and one that streams.
    let plays: Vec<Value> = [100, 200, 300, 400, 900]
        .into_iter()
        .map(|played_ms| json!({"track_id": track, "played_ms": played_ms}))
        .collect();
    assert_eq!(report(&app, &listener, Value::Array(plays)).await.status(), StatusCode::ACCEPTED);
    let before = eventually(&app, &listener, "/v1/analytics/top-tracks", FRESH, |top| {
        plays_of(top, track).is_some_and(|(plays, ..)| plays == 5)
    })
    .await;
    assert_eq!(plays_of(&before, track), Some((5, 1, 1)), "only 900 ms of a 1 s track streams");

    succeeded(&tonearm_cli(
        &["events", "replay", "song.played", "--group", "analytics.plays", "--from", "beginning"],
        &app.data_dir,
        &[],
    ));
    // One more play of the same track lands in the same partition, after the replayed
    // ones: once it is counted, so is everything replayed before it.
    let sentinel = json!({"track_id": track, "played_ms": 900});
    assert_eq!(report(&app, &listener, sentinel).await.status(), StatusCode::ACCEPTED);
    let after = eventually(&app, &listener, "/v1/analytics/top-tracks", FRESH * 3, |top| {
        plays_of(top, track).is_some_and(|(plays, ..)| plays >= 6)
    })
    .await;
    assert_eq!(plays_of(&after, track), Some((6, 2, 1)), "the replay counted nothing: {after}");
    let history: Value = app.get("/v1/me/history", Some(&listener)).await.json().await.unwrap();
    assert_eq!(history["total"], 6);
}

/// ClickHouse stopping loses no play: reports are still accepted (they wait in the outbox
/// and on the bus), charts answer 503 while it is away, and once it is back every play is
/// counted, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_wait_out_a_clickhouse_outage() {
    let home = TempDir::new().unwrap();
    let ports = OwnClickHouse::free_ports();
    let clickhouse = OwnClickHouse::start_in(home.path(), ports).await;
    let dir = Arc::new(TempDir::new().unwrap());
    let mut settings = test_settings(dir.path());
    let warehouse = format!("{}/tonearm_outage", clickhouse.url());
    settings.analytics.warehouse_url = Some(kernel::engine::EngineUrl::new(warehouse));
    let app = TestApp::up_with(settings, Some(dir)).await;
    let listener = token(&app.register(&unique_email()).await, "access_token");
    let tracks = ready_tracks(&app, &listener, 1, 80).await;
    let track = &tracks[0];

    let first = report(&app, &listener, json!({"track_id": track, "played_ms": 900})).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    eventually(&app, &listener, "/v1/analytics/top-tracks", FRESH, |top| {
        plays_of(top, track).is_some()
    })
    .await;

    clickhouse.stop();
    let during = report(&app, &listener, json!({"track_id": track, "played_ms": 800})).await;
    assert_eq!(during.status(), StatusCode::ACCEPTED, "reports do not need the warehouse");
    let chart = app.get("/v1/analytics/top-tracks", Some(&listener)).await;
    assert_problem(chart, StatusCode::SERVICE_UNAVAILABLE).await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.unwrap();
    assert_ne!(ready["checks"]["analytics.warehouse"], "ok", "{ready}");

    let _clickhouse = OwnClickHouse::start_in(home.path(), ports).await;
    let recovering = [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE];
    let top = poll(&app, &listener, "/v1/analytics/top-tracks", FRESH * 6, &recovering, |top| {
        plays_of(top, track).is_some_and(|(plays, ..)| plays >= 2)
    })
    .await;
    assert_eq!(plays_of(&top, track), Some((2, 2, 1)), "both plays, each once: {top}");
}
