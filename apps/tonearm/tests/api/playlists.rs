//! Playlists and likes through the gateway: snapshots, ownership, follows, likes, the
//! projection of the catalog's tracks, and many clients changing one playlist at once.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    catalog::{upload, wav},
    support::{TestApp, assert_problem, token, unique_email},
};

/// Uploads short tracks and waits until each is ready (transcoded and published).
pub(crate) async fn ready_tracks(app: &TestApp, token: &str, count: u8, seed: u8) -> Vec<String> {
    let mut ids = Vec::new();
    for index in 0..count {
        let name = format!("Song {seed}-{index}.wav");
        let accepted = upload(app, token, &name, wav(1, seed.wrapping_add(index)), &[]).await;
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
        let accepted: Value = accepted.json().await.unwrap();
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let track: Value =
                app.get(&format!("/v1/tracks/{id}"), Some(token)).await.json().await.unwrap();
            if track["status"] == "ready" {
                break;
            }
            assert_ne!(track["status"], "failed", "{track}");
            assert!(Instant::now() < deadline, "not ready: {track}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    ids
}

async fn order(app: &TestApp, token: &str, playlist: &str) -> Vec<String> {
    let page: Value = app
        .get(&format!("/v1/playlists/{playlist}/tracks?limit=100"), Some(token))
        .await
        .json()
        .await
        .unwrap();
    let items = page["items"].as_array().unwrap();
    for (index, item) in items.iter().enumerate() {
        assert_eq!(item["position"], index, "positions run 0..n-1: {page}");
        assert!(item["track"]["title"].is_string() && item["added_at"].is_string(), "{item}");
    }
    assert_eq!(page["total"], items.len(), "{page}");
    items.iter().map(|item| item["track"]["id"].as_str().unwrap().to_owned()).collect()
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Value,
) -> reqwest::Response {
    app.send(method, path, Some(token), Some(body)).await
}

async fn snapshot(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    body["snapshot_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_playlist_changes_by_snapshot_and_only_its_owner_changes_it() {
    let app = TestApp::up().await;
    let alice = token(&app.register(&unique_email()).await, "access_token");
    let bob = token(&app.register(&unique_email()).await, "access_token");
    let tracks = ready_tracks(&app, &alice, 3, 40).await;

    let created = app.post("/v1/playlists", Some(&alice), json!({"name": "  Road Trip "})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["name"], "Road Trip");
    assert_eq!(created["public"], false);
    assert_eq!(created["tracks_total"], 0);
    assert_eq!(created["followed"], false);
    let id = created["id"].as_str().unwrap().to_owned();
    let first = created["snapshot_id"].as_str().unwrap().to_owned();
    let tracks_path = format!("/v1/playlists/{id}/tracks");

    let added = send(
        &app,
        Method::POST,
        &tracks_path,
        &alice,
        json!({"track_ids": &tracks, "snapshot_id": first}),
    )
    .await;
    let after_add = snapshot(added, StatusCode::CREATED).await;
    assert_ne!(after_add, first);
    assert_eq!(order(&app, &alice, &id).await, tracks);

    let negative = send(
        &app,
        Method::PUT,
        &tracks_path,
        &alice,
        json!({"range_start": -1, "insert_before": 3}),
    )
    .await;
    let problem = assert_problem(negative, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["detail"], "`range_start` must be a whole number, 0 or more, not -1");

    let moved = send(
        &app,
        Method::PUT,
        &tracks_path,
        &alice,
        json!({"range_start": 0, "insert_before": 3}),
    )
    .await;
    let after_move = snapshot(moved, StatusCode::OK).await;
    assert_eq!(
        order(&app, &alice, &id).await,
        [tracks[1].as_str(), tracks[2].as_str(), tracks[0].as_str()]
    );

    let removed = send(
        &app,
        Method::DELETE,
        &tracks_path,
        &alice,
        json!({"positions": [1], "snapshot_id": after_move}),
    )
    .await;
    snapshot(removed, StatusCode::OK).await;
    assert_eq!(order(&app, &alice, &id).await, [tracks[1].as_str(), tracks[0].as_str()]);

    let stale = send(
        &app,
        Method::POST,
        &tracks_path,
        &alice,
        json!({"track_ids": [tracks[2]], "snapshot_id": after_add}),
    )
    .await;
    assert_problem(stale, StatusCode::CONFLICT).await;
    let unknown = send(
        &app,
        Method::POST,
        &tracks_path,
        &alice,
        json!({"track_ids": [uuid::Uuid::now_v7()]}),
    )
    .await;
    assert_problem(unknown, StatusCode::UNPROCESSABLE_ENTITY).await;
    let past_end = send(
        &app,
        Method::POST,
        &tracks_path,
        &alice,
        json!({"track_ids": [tracks[2]], "position": 9}),
    )
    .await;
    assert_problem(past_end, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        order(&app, &alice, &id).await,
        [tracks[1].as_str(), tracks[0].as_str()],
        "refused changes change nothing"
    );

    // The same track twice is fine.
    let twice = send(
        &app,
        Method::POST,
        &tracks_path,
        &alice,
        json!({"track_ids": [tracks[1]], "position": 0}),
    )
    .await;
    snapshot(twice, StatusCode::CREATED).await;
    assert_eq!(
        order(&app, &alice, &id).await,
        [tracks[1].as_str(), tracks[1].as_str(), tracks[0].as_str()]
    );

    // Someone else: a private playlist does not exist for them; a public one is read-only.
    let playlist_path = format!("/v1/playlists/{id}");
    assert_problem(app.get(&playlist_path, Some(&bob)).await, StatusCode::NOT_FOUND).await;
    assert_problem(app.get(&tracks_path, Some(&bob)).await, StatusCode::NOT_FOUND).await;
    let published = send(
        &app,
        Method::PATCH,
        &playlist_path,
        &alice,
        json!({"public": true, "description": "summer"}),
    )
    .await;
    assert_eq!(published.status(), StatusCode::OK);
    let seen: Value = app.get(&playlist_path, Some(&bob)).await.json().await.unwrap();
    assert_eq!(seen["description"], "summer");
    assert_eq!(seen["tracks_total"], 3);
    let intrusion =
        send(&app, Method::POST, &tracks_path, &bob, json!({"track_ids": [tracks[2]]})).await;
    assert_problem(intrusion, StatusCode::FORBIDDEN).await;
    let rename = send(&app, Method::PATCH, &playlist_path, &bob, json!({"name": "Mine now"})).await;
    assert_problem(rename, StatusCode::FORBIDDEN).await;
    let removal = app.send(Method::DELETE, &playlist_path, Some(&bob), None).await;
    assert_problem(removal, StatusCode::FORBIDDEN).await;

    let followers = format!("{playlist_path}/followers");
    assert_eq!(
        app.send(Method::PUT, &followers, Some(&bob), None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.send(Method::PUT, &followers, Some(&bob), None).await.status(),
        StatusCode::NO_CONTENT
    );
    let bobs: Value = app.get("/v1/me/playlists", Some(&bob)).await.json().await.unwrap();
    assert_eq!(bobs["total"], 1);
    assert_eq!(bobs["items"][0]["id"], id);
    assert_eq!(bobs["items"][0]["followed"], true);
    assert_eq!(
        app.send(Method::DELETE, &followers, Some(&bob), None).await.status(),
        StatusCode::NO_CONTENT
    );
    let bobs: Value = app.get("/v1/me/playlists", Some(&bob)).await.json().await.unwrap();
    assert_eq!(bobs["total"], 0);

    // A track deleted from the catalog leaves every playlist.
    let gone =
        app.send(Method::DELETE, &format!("/v1/tracks/{}", tracks[1]), Some(&alice), None).await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(20);
    while order(&app, &alice, &id).await != [tracks[0].as_str()] {
        assert!(Instant::now() < deadline, "the deleted track stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let deleted = app.send(Method::DELETE, &playlist_path, Some(&alice), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get(&playlist_path, Some(&alice)).await, StatusCode::NOT_FOUND).await;
    let empty = app.post("/v1/playlists", Some(&alice), json!({"name": "   "})).await;
    assert_problem(empty, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn likes_are_idempotent_newest_first_and_answer_contains() {
    let app = TestApp::up().await;
    let listener = token(&app.register(&unique_email()).await, "access_token");
    let tracks = ready_tracks(&app, &listener, 3, 60).await;

    for track in [&tracks[0], &tracks[1], &tracks[0]] {
        let path = format!("/v1/me/likes/{track}");
        let liked = app.send(Method::PUT, &path, Some(&listener), None).await;
        assert_eq!(liked.status(), StatusCode::NO_CONTENT);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let likes: Value = app.get("/v1/me/likes", Some(&listener)).await.json().await.unwrap();
    assert_eq!(likes["total"], 2);
    assert_eq!(likes["items"][0]["track"]["id"], tracks[1].as_str(), "newest first: {likes}");
    assert_eq!(likes["items"][1]["track"]["id"], tracks[0].as_str());
    let first_liked = likes["items"][1]["liked_at"].clone();
    assert!(first_liked.as_str().unwrap() < likes["items"][0]["liked_at"].as_str().unwrap());

    let ids = tracks.join(",");
    let contains: Value = app
        .get(&format!("/v1/me/likes/contains?ids={ids}"), Some(&listener))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(contains, json!([true, true, false]));
    let first_like = format!("/v1/me/likes/{}", tracks[0]);
    let unliked = app.send(Method::DELETE, &first_like, Some(&listener), None).await;
    assert_eq!(unliked.status(), StatusCode::NO_CONTENT);
    let again = app.send(Method::DELETE, &first_like, Some(&listener), None).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    let contains: Value = app
        .get(&format!("/v1/me/likes/contains?ids={ids}"), Some(&listener))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(contains, json!([false, true, false]));

    let nowhere = uuid::Uuid::now_v7();
    let unknown_like = format!("/v1/me/likes/{nowhere}");
    let unknown = app.send(Method::PUT, &unknown_like, Some(&listener), None).await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
    let garbled = app.get("/v1/me/likes/contains?ids=nope", Some(&listener)).await;
    assert_problem(garbled, StatusCode::BAD_REQUEST).await;

    // song.liked and song.unliked went out through the outbox.
    let deadline = Instant::now() + Duration::from_secs(20);
    for topic in ["song.liked", "song.unliked"] {
        loop {
            let args = ["events", "tail", topic, "--from-beginning", "--max", "10"];
            let output = crate::support::tonearm_cli(&args, &app.data_dir, &[]);
            // The topic appears with its first event.
            let lines = String::from_utf8_lossy(&output.stdout).lines().count();
            if lines == if topic == "song.liked" { 2 } else { 1 } {
                break;
            }
            assert!(Instant::now() < deadline, "{topic}: {lines} events");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Twenty clients append to and reorder one playlist at once: every accepted change is
/// there exactly once, positions stay 0..n-1, and nobody gets a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clients_change_one_playlist_at_once() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut settings = crate::support::test_settings(dir.path());
    settings.gateway.rate_limits.free_per_minute = 1_000_000;
    let app = std::sync::Arc::new(TestApp::up_with(settings, None).await);
    let owner = token(&app.register(&unique_email()).await, "access_token");
    let tracks = ready_tracks(&app, &owner, 4, 80).await;
    let created: Value = app
        .post("/v1/playlists", Some(&owner), json!({"name": "Busy"}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/playlists/{id}/tracks");
    let seed =
        send(&app, Method::POST, &path, &owner, json!({"track_ids": [tracks[0], tracks[1]]})).await;
    snapshot(seed, StatusCode::CREATED).await;

    let mut clients = tokio::task::JoinSet::new();
    for client in 0..20_usize {
        let (app, owner, path) = (app.clone(), owner.clone(), path.clone());
        let track = tracks[client % tracks.len()].clone();
        clients.spawn(async move {
            let mut added = Vec::new();
            for round in 0..3 {
                let add =
                    send(&app, Method::POST, &path, &owner, json!({"track_ids": [track]})).await;
                assert!(!add.status().is_server_error(), "{}", add.status());
                if add.status() == StatusCode::CREATED {
                    added.push(track.clone());
                }
                let body = json!({"range_start": round % 2, "insert_before": 2 + client % 3});
                let moved = send(&app, Method::PUT, &path, &owner, body).await;
                assert_eq!(moved.status(), StatusCode::OK, "{}", moved.text().await.unwrap());
            }
            added
        });
    }
    let mut expected: Vec<String> = vec![tracks[0].clone(), tracks[1].clone()];
    while let Some(added) = clients.join_next().await {
        expected.extend(added.unwrap());
    }
    assert_eq!(expected.len(), 2 + 60, "every add was accepted");
    let mut listed = Vec::new();
    let mut offset = 0;
    loop {
        let page: Value = app
            .get(&format!("{path}?limit=100&offset={offset}"), Some(&owner))
            .await
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        for (index, item) in items.iter().enumerate() {
            assert_eq!(item["position"], offset + index);
            listed.push(item["track"]["id"].as_str().unwrap().to_owned());
        }
        offset += items.len();
        if items.is_empty() || offset >= page["total"].as_u64().unwrap() as usize {
            break;
        }
    }
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "each accepted add is there exactly once");
}
