//! Voice search end to end: a spoken request, through the gateway, finds the album in the
//! catalog. The models must have been fetched (the test script does it).

use serde_json::Value;

use reqwest::StatusCode;
use tonearm::ServiceName;

use testkit::voice::espeak_wav;

use crate::{
    catalog::{upload, wav},
    support::{TestApp, assert_problem, models_dir, settled, test_settings, token, unique_email},
};

#[tokio::test]
async fn play_kind_of_blue_by_miles_davis_finds_that_album() {
    let dir = std::sync::Arc::new(tempfile::TempDir::new().unwrap());
    let mut settings = test_settings(dir.path());
    settings.ai.models_dir = Some(models_dir(&ai::models::WHISPER_TINY_EN));
    let app = TestApp::up_with(settings, Some(dir)).await;
    let token = token(&app.register(&unique_email()).await, "access_token");
    let albums = [
        ("So What", "Kind of Blue", "Miles Davis"),
        ("Blue in Green", "Kind of Blue", "Miles Davis"),
        ("Kind of Blue Skies", "Morning Songs", "Blue Sky Band"),
        ("Blue Train", "Blue Train", "John Coltrane"),
        ("Naima", "Giant Steps", "John Coltrane"),
    ];
    for (seed, (title, album, artist)) in albums.into_iter().enumerate() {
        let fields = [("title", title), ("album", album), ("artist", artist)];
        let accepted = upload(&app, &token, "take.wav", wav(2, seed as u8), &fields).await;
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
        let id = accepted.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(settled(&app, &token, &id).await["status"], "ready");
    }

    // The models load in the background: until then, 503 naming why.
    let mut answer = None;
    for _ in 0..120 {
        let response = app
            .client
            .post(app.url("/v1/ai/voice-search"))
            .bearer_auth(&token)
            .header("content-type", "audio/wav")
            .body(espeak_wav("play kind of blue by miles davis"))
            .send()
            .await
            .unwrap();
        if response.status() != 503 {
            answer = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let answer = answer.expect("the models loaded");
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["intent"]["action"], "play", "{body}");
    assert_eq!(body["intent"]["artist"], "miles davis", "{body}");
    let albums = body["results"]["albums"]["items"].as_array().unwrap();
    assert_eq!(albums[0]["title"], "Kind of Blue", "{body}");
    assert_eq!(albums[0]["artist"]["name"], "Miles Davis");
    assert_eq!(albums.len(), 1, "the other blue album is by someone else: {body}");
    let tracks = body["results"]["tracks"]["items"].as_array().unwrap();
    assert!(
        !tracks.is_empty() && tracks.iter().all(|t| t["album"]["title"] == "Kind of Blue"),
        "{body}"
    );

    let ready: Value =
        app.client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["ai.models"], "ok", "{ready}");
}

#[tokio::test]
async fn without_models_the_rest_is_ready_and_voice_says_how_to_fetch_them() {
    let app = TestApp::up().await;
    let token = token(&app.register(&unique_email()).await, "access_token");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(ready["checks"]["ai.models"].as_str().unwrap().contains("tonearm models fetch"));
    let answer = app
        .client
        .post(app.url("/v1/ai/speak"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(answer, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(problem["detail"].as_str().unwrap().contains("tonearm models fetch"), "{problem}");
}

#[tokio::test]
async fn served_alone_behind_the_gateway_voice_search_asks_the_remote_catalog() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::TempDir::new().unwrap()).collect();
    let auth = TestApp::serve(test_settings(dirs[0].path()), ServiceName::Auth).await;
    let catalog = TestApp::serve(test_settings(dirs[1].path()), ServiceName::Catalog).await;
    let mut ai_settings = test_settings(dirs[2].path());
    ai_settings.ai.models_dir = Some(models_dir(&ai::models::WHISPER_TINY_EN));
    ai_settings.ai.catalog_url = Some(format!("http://{}", catalog.addr));
    let ai = TestApp::serve(ai_settings, ServiceName::Ai).await;
    let mut gateway_settings = test_settings(dirs[3].path());
    for (name, app) in [("auth", &auth), ("catalog", &catalog), ("ai", &ai)] {
        gateway_settings.gateway.upstreams.insert(name.into(), format!("http://{}", app.addr));
    }
    let gateway = TestApp::serve(gateway_settings, ServiceName::Gateway).await;

    // Alone, the service is ready only once its models are loaded.
    let mut ready = false;
    for _ in 0..120 {
        if ai.get("/readyz", None).await.status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(ready, "the models loaded");

    let token = token(&gateway.register(&unique_email()).await, "access_token");
    let search = || {
        gateway
            .client
            .post(gateway.url("/v1/ai/voice-search"))
            .bearer_auth(&token)
            .header("content-type", "audio/wav")
            .body(espeak_wav("find the song hotel california"))
            .send()
    };
    let answer = search().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["intent"]["action"], "search", "{body}");
    assert_eq!(body["intent"]["query"], "hotel california", "{body}");
    assert_eq!(body["results"]["tracks"]["total"], 0, "an empty catalog: {body}");

    // Similar tracks for a track the service has not heard of ask the catalog: one still
    // processing (nothing transcodes here) is not there yet.
    let uploaded = upload(&gateway, &token, "Hotel.wav", wav(1, 3), &[]).await;
    assert_eq!(uploaded.status(), StatusCode::ACCEPTED);
    let id = uploaded.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let similar = format!("/v1/tracks/{id}/similar");
    assert_problem(gateway.get(&similar, Some(&token)).await, StatusCode::NOT_FOUND).await;
    let recommended = gateway.get("/v1/me/recommendations", Some(&token)).await;
    assert_eq!(recommended.status(), StatusCode::OK);

    // Without its catalog, voice search is an outage, not an empty answer; so is asking
    // for a track only the catalog could know.
    catalog.stop().await;
    let problem = assert_problem(search().await.unwrap(), StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(problem["detail"].as_str().unwrap().contains("catalog"), "{problem}");
    let problem =
        assert_problem(gateway.get(&similar, Some(&token)).await, StatusCode::SERVICE_UNAVAILABLE)
            .await;
    assert!(problem["detail"].as_str().unwrap().contains("catalog"), "{problem}");
}
