//! `GET /v1/home`: the first screen in one request, and what it does when a service behind
//! it is missing.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tonearm::ServiceName;

use crate::support::{TestApp, assert_problem, test_settings, token, unique_email};

#[tokio::test]
async fn home_gathers_the_first_screen_in_one_request() {
    let app = TestApp::up().await;
    let email = unique_email();
    let listener = token(&app.register(&email).await, "access_token");
    let created = app.post("/v1/playlists", Some(&listener), json!({"name": "Road trip"})).await;
    assert_eq!(created.status(), StatusCode::CREATED);

    let home = app.get("/v1/home", Some(&listener)).await;
    assert_eq!(home.status(), StatusCode::OK);
    let home: Value = home.json().await.unwrap();
    assert_eq!(home["profile"]["email"], email.as_str(), "{home}");
    assert_eq!(home["playlists"]["items"][0]["name"], "Road trip");
    assert_eq!(home["recently_played"]["total"], 0);
    assert!(home["recommendations"]["items"].is_array(), "{home}");
    assert_eq!(home["degraded"], json!([]));

    assert_problem(app.get("/v1/home", None).await, StatusCode::UNAUTHORIZED).await;
    let api: Value = app.get("/v1/openapi.json", None).await.json().await.unwrap();
    assert!(api["paths"]["/v1/home"]["get"].is_object(), "documented");
}

#[tokio::test]
async fn a_missing_service_leaves_its_part_empty_not_the_page_failed() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::TempDir::new().unwrap()).collect();
    let auth = TestApp::serve(test_settings(dirs[0].path()), ServiceName::Auth).await;
    // A gateway that knows only auth: playlists, history and recommendations are not there.
    let mut settings = test_settings(dirs[1].path());
    settings.gateway.upstreams.insert("auth".into(), format!("http://{}", auth.addr));
    let gateway = TestApp::serve(settings, ServiceName::Gateway).await;
    let email = unique_email();
    let listener = token(&gateway.register(&email).await, "access_token");

    let home = gateway.get("/v1/home", Some(&listener)).await;
    assert_eq!(home.status(), StatusCode::OK);
    let home: Value = home.json().await.unwrap();
    assert_eq!(home["profile"]["email"], email.as_str(), "{home}");
    assert_eq!(home["degraded"], json!(["playlists", "recently_played", "recommendations"]));
    assert_eq!(home["playlists"]["items"], json!([]));
    assert_eq!(home["recommendations"]["total"], 0);
}
