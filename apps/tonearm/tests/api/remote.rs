//! The deployed shape: `serve auth` on PostgreSQL and Redis, `serve gateway` in front.

use kernel::engine::EngineUrl;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tonearm::ServiceName;

use crate::support::{
    TestApp, assert_problem, fresh_postgres_url, redis_settings, token, unique_email,
};

#[tokio::test]
async fn the_gateway_fronts_a_remote_auth_service_on_postgres_and_redis() {
    let dir = TempDir::new().unwrap();
    let mut auth_settings = redis_settings(dir.path());
    auth_settings.auth.database_url = Some(EngineUrl::new(fresh_postgres_url()));
    let auth = TestApp::serve(auth_settings, ServiceName::Auth).await;

    let mut gateway_settings = redis_settings(dir.path());
    gateway_settings.gateway.upstreams.insert("auth".into(), format!("http://{}", auth.addr));
    let gateway = TestApp::serve(gateway_settings, ServiceName::Gateway).await;

    let email = unique_email();
    let registered = gateway.register(&email).await;
    let signed_in = gateway.login(&email).await;
    let access = token(&signed_in, "access_token");
    let me: Value = gateway.get("/v1/me", Some(&access)).await.json().await.unwrap();
    assert_eq!(me["email"], email);
    assert_eq!(me["id"], registered["user"]["id"]);

    let refreshed = gateway
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": token(&signed_in, "refresh_token")}),
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    let refreshed: Value = refreshed.json().await.unwrap();
    let access = token(&refreshed, "access_token");

    let logout = gateway
        .post(
            "/v1/auth/logout",
            Some(&access),
            json!({"refresh_token": token(&refreshed, "refresh_token")}),
        )
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_problem(gateway.get("/v1/me", Some(&access)).await, StatusCode::UNAUTHORIZED).await;

    // Requests that never reach a service are still answered by the gateway itself.
    assert_problem(gateway.get("/internal/v1/sessions/x", None).await, StatusCode::NOT_FOUND).await;
    let ready: Value = gateway.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["checks"]["upstream.auth"], "ok");

    // The auth service going away is a 503 problem, not a hang or a 500.
    auth.stop().await;
    let down = gateway.post("/v1/auth/login", None, json!({"email": email, "password": "x"})).await;
    assert_problem(down, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn serve_gateway_without_an_auth_upstream_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let settings = crate::support::test_settings(dir.path());
    let error = tonearm::App::serve(&settings, ServiceName::Gateway).await.err().unwrap();
    assert!(format!("{error:#}").contains("gateway.upstreams.auth"), "{error:#}");
}

/// `serve catalog` on PostgreSQL and S3 behind `serve gateway`: uploads stream through
/// the proxy into the bucket.
#[tokio::test]
async fn the_gateway_fronts_a_remote_catalog_on_postgres_and_s3() {
    let dir = TempDir::new().unwrap();
    let mut auth_settings = redis_settings(dir.path());
    auth_settings.auth.database_url = Some(EngineUrl::new(fresh_postgres_url()));
    let auth = TestApp::serve(auth_settings, ServiceName::Auth).await;

    let mut catalog_settings = crate::support::test_settings(dir.path());
    catalog_settings.catalog.database_url = Some(EngineUrl::new(fresh_postgres_url()));
    catalog_settings.storage = s3_storage();
    let catalog = TestApp::serve(catalog_settings, ServiceName::Catalog).await;

    let mut gateway_settings = redis_settings(dir.path());
    gateway_settings.gateway.upstreams.insert("auth".into(), format!("http://{}", auth.addr));
    gateway_settings.gateway.upstreams.insert("catalog".into(), format!("http://{}", catalog.addr));
    let gateway = TestApp::serve(gateway_settings, ServiceName::Gateway).await;

    let access = token(&gateway.register(&unique_email()).await, "access_token");
    let audio = crate::catalog::wav(2, 9);
    let size = audio.len();
    let accepted = crate::catalog::upload(&gateway, &access, "Remote.wav", audio, &[]).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let accepted: Value = accepted.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap();
    let track: Value =
        gateway.get(&format!("/v1/tracks/{id}"), Some(&access)).await.json().await.unwrap();
    assert_eq!(track["title"], "Remote");
    assert_eq!(track["duration_ms"], 2_000);

    let objects = objects::Objects::connect(&s3_storage(), dir.path()).await.unwrap();
    let original = objects::ObjectKey::parse(&format!("tracks/{id}/original.wav")).unwrap();
    assert_eq!(objects.head(&original).await.unwrap().map(|info| info.size), Some(size as u64));

    // No streaming runs here, so the track stays processing: its uploader lists it, and
    // search (on PostgreSQL too) does not find it yet.
    let mine: Value = gateway.get("/v1/tracks", Some(&access)).await.json().await.unwrap();
    assert_eq!(mine["items"][0]["id"], id, "{mine}");
    let found: Value = gateway.get("/v1/search?q=remot", Some(&access)).await.json().await.unwrap();
    assert_eq!(found["tracks"]["total"], 0, "{found}");

    let api: Value = gateway.get("/v1/openapi.json", None).await.json().await.unwrap();
    assert!(api["paths"].get("/v1/tracks").is_some(), "the catalog is documented");
    let ready: Value = gateway.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["checks"]["upstream.catalog"], "ok");
}

/// Object storage in the test S3 server's bucket.
fn s3_storage() -> objects::StorageConfig {
    let s3 = testkit::s3_server();
    objects::StorageConfig {
        url: Some(EngineUrl::new(format!("s3://{}", s3.bucket))),
        endpoint: Some(s3.endpoint),
        region: None,
        access_key_id: Some(s3.access_key_id),
        secret_access_key: Some(s3.secret_access_key.into()),
    }
}

/// The whole upload-to-playback path in the deployed shape: `serve catalog` and `serve
/// streaming` on PostgreSQL, meeting only through Kafka events and the S3 bucket, with
/// rendered playlists cached in Redis, behind `serve gateway`.
#[tokio::test]
async fn uploads_through_a_remote_catalog_play_from_a_remote_streaming_service() {
    let dir = TempDir::new().unwrap();
    let kafka = Some(EngineUrl::new(testkit::kafka_url()));
    let mut auth_settings = redis_settings(dir.path());
    auth_settings.auth.database_url = Some(EngineUrl::new(fresh_postgres_url()));
    let auth = TestApp::serve(auth_settings, ServiceName::Auth).await;

    let mut catalog_settings = crate::support::test_settings(dir.path());
    catalog_settings.catalog.database_url = Some(EngineUrl::new(fresh_postgres_url()));
    catalog_settings.storage = s3_storage();
    catalog_settings.events.url = kafka.clone();
    let catalog = TestApp::serve(catalog_settings, ServiceName::Catalog).await;

    let mut streaming_settings = crate::support::test_settings(dir.path());
    streaming_settings.streaming.database_url = Some(EngineUrl::new(fresh_postgres_url()));
    streaming_settings.streaming.cache_url = Some(EngineUrl::new(crate::support::redis_url()));
    streaming_settings.storage = s3_storage();
    streaming_settings.events.url = kafka;
    let streaming = TestApp::serve(streaming_settings.clone(), ServiceName::Streaming).await;
    // A second replica: each keeps segments in its own memory.
    let streaming_replica = TestApp::serve(streaming_settings, ServiceName::Streaming).await;

    let mut playlist_settings = crate::support::test_settings(dir.path());
    playlist_settings.playlist.database_url = Some(EngineUrl::new(fresh_postgres_url()));
    playlist_settings.playlist.catalog_url = Some(format!("http://{}", catalog.addr));
    playlist_settings.events.url = Some(EngineUrl::new(testkit::kafka_url()));
    let playlists = TestApp::serve(playlist_settings, ServiceName::Playlist).await;

    let mut analytics_settings = crate::support::test_settings(dir.path());
    analytics_settings.analytics.database_url = Some(EngineUrl::new(fresh_postgres_url()));
    let warehouse =
        format!("{}/tonearm_test_{}", testkit::clickhouse_url(), uuid::Uuid::now_v7().simple());
    analytics_settings.analytics.warehouse_url = Some(EngineUrl::new(warehouse));
    analytics_settings.analytics.catalog_url = Some(format!("http://{}", catalog.addr));
    analytics_settings.events.url = Some(EngineUrl::new(testkit::kafka_url()));
    let analytics = TestApp::serve(analytics_settings, ServiceName::Analytics).await;

    let mut gateway_settings = redis_settings(dir.path());
    gateway_settings.events.url = Some(EngineUrl::new(testkit::kafka_url()));
    let upstreams = &mut gateway_settings.gateway.upstreams;
    upstreams.insert("auth".into(), format!("http://{}", auth.addr));
    upstreams.insert("catalog".into(), format!("http://{}", catalog.addr));
    upstreams.insert("streaming".into(), format!("http://{}", streaming.addr));
    upstreams.insert("playlist".into(), format!("http://{}", playlists.addr));
    upstreams.insert("analytics".into(), format!("http://{}", analytics.addr));
    let gateway = TestApp::serve(gateway_settings, ServiceName::Gateway).await;

    let access = token(&gateway.register(&unique_email()).await, "access_token");
    let audio = crate::streaming::audio("flac", 9, 21);
    let accepted = crate::catalog::upload(&gateway, &access, "Deployed.flac", audio, &[]).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let accepted: Value = accepted.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let track = loop {
        let track: Value =
            gateway.get(&format!("/v1/tracks/{id}"), Some(&access)).await.json().await.unwrap();
        if track["status"] != "processing" {
            break track;
        }
        assert!(std::time::Instant::now() < deadline, "never transcoded: {track}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(track["status"], "ready", "{track}");
    assert_eq!(track["renditions"].as_array().unwrap().len(), 3);

    let stream: Value =
        gateway.get(&format!("/v1/tracks/{id}/stream"), Some(&access)).await.json().await.unwrap();
    let url = stream["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("http://{}/media/", gateway.addr)), "via the gateway: {url}");
    for _ in 0..2 {
        // The second read comes from the Redis playlist cache.
        let master = gateway.client.get(url).send().await.unwrap();
        assert_eq!(master.status(), StatusCode::OK);
        assert_eq!(master.text().await.unwrap().matches("CODECS=\"mp4a.40.2\"").count(), 3);
    }
    let report = crate::streaming::ffprobe(url).await;
    let seconds = crate::streaming::probed_seconds(&report);
    assert!((seconds - 9.0).abs() <= 0.5, "{seconds}");

    let objects = objects::Objects::connect(&s3_storage(), dir.path()).await.unwrap();
    let segments = objects::ObjectKey::parse(&format!("streams/{id}")).unwrap();
    assert!(objects.list(&segments).await.unwrap().len() >= 6, "the ladder is in the bucket");
    let ready: Value = gateway.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["checks"]["upstream.streaming"], "ok");
    let ready: Value = streaming.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["checks"]["streaming.ffmpeg"], "ok");

    // The ready track goes straight into a playlist: from the projection if its
    // track.published has arrived, from the catalog over HTTP if not.
    let created = gateway.post("/v1/playlists", Some(&access), json!({"name": "Deployed"})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let tracks = format!("/v1/playlists/{}/tracks", created["id"].as_str().unwrap());
    let added = gateway.post(&tracks, Some(&access), json!({"track_ids": [id]})).await;
    assert_eq!(added.status(), StatusCode::CREATED);
    let listed: Value = gateway.get(&tracks, Some(&access)).await.json().await.unwrap();
    assert_eq!(listed["items"][0]["track"]["id"], id);
    assert_eq!(listed["items"][0]["track"]["title"], "Deployed");
    let unknown = json!({"track_ids": [uuid::Uuid::now_v7()]});
    let refused = gateway.post(&tracks, Some(&access), unknown).await;
    assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;

    // A play reported through the gateway travels as song.played over Kafka into
    // ClickHouse and shows in the charts within seconds; a retry counts once.
    let play = json!({"id": uuid::Uuid::now_v7(), "track_id": id, "played_ms": 8_000});
    let reported = std::time::Instant::now();
    for _ in 0..2 {
        let accepted = gateway.post("/v1/me/plays", Some(&access), play.clone()).await;
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    }
    let top = loop {
        let top: Value = gateway
            .get("/v1/analytics/top-tracks?window=1h", Some(&access))
            .await
            .json()
            .await
            .unwrap();
        if top["total"] == 1 {
            break top;
        }
        assert!(reported.elapsed() < std::time::Duration::from_secs(5), "not counted yet: {top}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(top["items"][0]["track"]["id"], id);
    assert_eq!(top["items"][0]["plays"], 1, "{top}");
    assert_eq!(top["items"][0]["streams"], 1);
    let history: Value = gateway.get("/v1/me/history", Some(&access)).await.json().await.unwrap();
    assert_eq!(history["total"], 1, "{history}");
    assert_eq!(history["items"][0]["track"]["title"], "Deployed");
    let ready: Value = analytics.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["checks"]["analytics.warehouse"], "ok", "{ready}");

    // Both replicas hold a segment in memory; deleting the track takes it from each, not
    // only from the replica that handled the deletion.
    let master = gateway.client.get(url).send().await.unwrap().text().await.unwrap();
    let media_url = crate::streaming::resolve(url, &crate::streaming::uris(&master)[0]);
    let media = gateway.client.get(&media_url).send().await.unwrap().text().await.unwrap();
    let segment = crate::streaming::resolve(&media_url, &crate::streaming::uris(&media)[0]);
    let on_replicas = [&streaming, &streaming_replica]
        .map(|replica| segment.replace(&gateway.addr.to_string(), &replica.addr.to_string()));
    for segment in &on_replicas {
        let served = gateway.client.get(segment).send().await.unwrap();
        assert_eq!(served.status(), StatusCode::OK, "{segment}");
    }
    let track_path = format!("/v1/tracks/{id}");
    let deleted = gateway.send(reqwest::Method::DELETE, &track_path, Some(&access), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for segment in &on_replicas {
        while gateway.client.get(segment).send().await.unwrap().status() != StatusCode::NOT_FOUND {
            assert!(std::time::Instant::now() < deadline, "a replica still serves {segment}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}
