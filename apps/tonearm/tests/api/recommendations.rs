//! Recommendations and similar tracks end to end: tracks uploaded through the catalog are
//! embedded when published, a listener's likes reach the AI service through the bus, and
//! the lists come back through the gateway. The embedding model must have been fetched
//! (the test script does it).

use std::{collections::HashMap, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    catalog::{upload, wav},
    support::{TestApp, assert_problem, models_dir, settled, test_settings, token, unique_email},
};

/// (title, artist, album).
type Track = (&'static str, &'static str, &'static str);

/// Tracks by genre, as a small label's catalog might have them.
const CATALOG: [(&str, [Track; 6]); 3] = [
    (
        "Jazz",
        [
            ("Blue Evening", "The Quiet Quartet", "Late Set at the Vanguard"),
            ("Smoke and Brass", "Lena Moreau Trio", "Swing Street"),
            ("Autumn Changes", "Oscar Bellweather", "Standards Vol. 2"),
            ("Midnight Bebop", "Charlie Fenwick", "Blue Note Sessions"),
            ("Walking Bass Blues", "The Quiet Quartet", "After Hours"),
            ("Saxophone Serenade", "Lena Moreau Trio", "Swing Street"),
        ],
    ),
    (
        "Heavy Metal",
        [
            ("Iron Anvil", "Steelgrave", "Forged in Fire"),
            ("Blackened Skies", "Hellhammer Rising", "Doom Engine"),
            ("Thunder of the Damned", "Voidcrusher", "Riffs of Wrath"),
            ("Molten Chains", "Grim Fortress", "Hammerfall Nights"),
            ("Skull Crusher", "Steelgrave", "Forged in Fire"),
            ("Wall of Distortion", "Voidcrusher", "Riffs of Wrath"),
        ],
    ),
    (
        "Classical",
        [
            ("Sonata in E Minor", "Vienna Chamber Players", "Baroque Sonatas"),
            ("Nocturne for Strings", "Berlin Philharmonic Ensemble", "Night Music"),
            ("Piano Concerto No. 3", "Clara Weiss", "Romantic Concertos"),
            ("Symphony of Spring", "Prague Symphony Orchestra", "Seasons"),
            ("Adagio for Cello", "Vienna Chamber Players", "Baroque Sonatas"),
            ("String Quartet in G", "Berlin Philharmonic Ensemble", "Night Music"),
        ],
    ),
];

/// Uploads the catalog (all at once), waits until every track is ready and gives it its
/// genre (an edit, which the catalog publishes again); returns each track's genre by id,
/// and the ids of each genre in order.
async fn upload_catalog(
    app: &TestApp,
    token: &str,
) -> (HashMap<String, &'static str>, HashMap<&'static str, Vec<String>>) {
    let uploads = CATALOG.iter().enumerate().flat_map(|(g, (genre, tracks))| {
        tracks.iter().enumerate().map(move |(t, (title, artist, album))| async move {
            let seed = (g * 6 + t + 1) as u8;
            let fields = [("title", *title), ("artist", *artist), ("album", *album)];
            let accepted = upload(app, token, &format!("{title}.wav"), wav(1, seed), &fields).await;
            assert_eq!(accepted.status(), StatusCode::ACCEPTED);
            let accepted: Value = accepted.json().await.unwrap();
            let id = accepted["id"].as_str().unwrap().to_owned();
            assert_eq!(settled(app, token, &id).await["status"], "ready");
            let path = format!("/v1/tracks/{id}");
            let edited =
                app.send(Method::PATCH, &path, Some(token), Some(json!({"genre": genre}))).await;
            assert_eq!(edited.status(), StatusCode::OK);
            (*genre, id)
        })
    });
    let mut genre_of = HashMap::new();
    let mut by_genre: HashMap<&'static str, Vec<String>> = HashMap::new();
    for (genre, id) in futures::future::join_all(uploads).await {
        genre_of.insert(id.clone(), genre);
        by_genre.entry(genre).or_default().push(id);
    }
    (genre_of, by_genre)
}

/// Asks `path` until `done` holds of the answer, for at most `patience`.
async fn until(
    app: &TestApp,
    token: &str,
    path: &str,
    patience: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let response = app.get(path, Some(token)).await;
        if response.status() == StatusCode::OK {
            let body: Value = response.json().await.unwrap();
            if done(&body) {
                return body;
            }
            assert!(std::time::Instant::now() < deadline, "{path} still answers {body}");
        } else {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}: loading");
            assert!(std::time::Instant::now() < deadline, "{path} still loading");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["track"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn three_liked_jazz_tracks_bring_jazz_and_a_metal_track_is_like_metal() {
    let dir = std::sync::Arc::new(tempfile::TempDir::new().unwrap());
    let mut settings = test_settings(dir.path());
    settings.ai.models_dir = Some(models_dir(&ai::models::MINILM));
    // Eighteen uploads settle while the test polls: more than a free listener's budget.
    settings.gateway.rate_limits.free_per_minute = 10_000;
    let app = TestApp::up_with(settings, Some(dir)).await;
    let uploader = token(&app.register(&unique_email()).await, "access_token");
    let (genre_of, by_genre) = upload_catalog(&app, &uploader).await;
    let genres = |list: &Value, genre: &str| {
        ids(list).iter().filter(|id| genre_of[id.as_str()] == genre).count()
    };

    // Similar to a metal track: mostly metal, never the track itself, once the genres
    // have reached the AI service.
    let metal = &by_genre["Heavy Metal"][0];
    let path = format!("/v1/tracks/{metal}/similar?limit=5");
    let mostly_metal = |similar: &Value| {
        similar["total"].as_u64() == Some(17) && genres(similar, "Heavy Metal") >= 4
    };
    let similar = until(&app, &uploader, &path, Duration::from_secs(30), mostly_metal).await;
    assert!(!ids(&similar).contains(metal));
    let scores: Vec<f64> =
        similar["items"].as_array().unwrap().iter().map(|i| i["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");

    // A new listener likes three jazz tracks.
    let listener = token(&app.register(&unique_email()).await, "access_token");
    let before: Value =
        app.get("/v1/me/recommendations", Some(&listener)).await.json().await.unwrap();
    assert!(
        before["items"].as_array().unwrap().iter().all(|i| i["reason"] == "Popular on Tonearm"),
        "someone new gets what is popular: {before}"
    );
    let liked = &by_genre["Jazz"][..3];
    for id in liked {
        let response =
            app.send(Method::PUT, &format!("/v1/me/likes/{id}"), Some(&listener), None).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    let jazz_for_jazz = |list: &Value| {
        list["items"].as_array().unwrap().iter().all(|i| {
            i["reason"].as_str().is_some_and(|reason| reason.starts_with("Because you liked"))
        }) && list["total"].as_u64() == Some(15)
            && genres(list, "Jazz") == 3
    };
    let recommended = until(
        &app,
        &listener,
        "/v1/me/recommendations?limit=5",
        Duration::from_secs(30),
        jazz_for_jazz,
    )
    .await;
    let found = ids(&recommended);
    assert!(found.iter().all(|id| !liked.contains(id)), "liked tracks are left out");
    let jazz = found[..3].iter().filter(|id| genre_of[id.as_str()] == "Jazz").count();
    assert_eq!(jazz, 3, "the three other jazz tracks come first: {recommended}");
    let first = &recommended["items"][0];
    let reason = first["reason"].as_str().unwrap();
    let named = CATALOG[0].1[..3]
        .iter()
        .any(|(title, artist, _)| reason == format!("Because you liked {title} by {artist}"));
    assert!(named, "the reason names a liked track: {reason}");

    // Asked for, the liked tracks may come back; paging walks the same list.
    let known: Value = app
        .get("/v1/me/recommendations?include_known=true&limit=100", Some(&listener))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(known["total"], 18);
    assert!(liked.iter().all(|id| ids(&known).contains(id)));
    // Two pages of one list do not overlap. Genres still arriving for other tracks may
    // reorder the list between two requests, so a pair is asked for until it is read from
    // one list.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = |offset: u32| {
            let path = format!("/v1/me/recommendations?limit=5&offset={offset}");
            let app = &app;
            let listener = &listener;
            async move { app.get(&path, Some(listener)).await.json::<Value>().await.unwrap() }
        };
        let (first, second, again) = (page(0).await, page(5).await, page(0).await);
        assert_eq!((second["total"].as_u64(), second["offset"].as_u64()), (Some(15), Some(5)));
        if ids(&first) == ids(&again) {
            let first = ids(&first);
            assert!(ids(&second).iter().all(|id| !first.contains(id)), "{second}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the list kept changing");
    }
}

#[tokio::test]
async fn recommendations_refuse_bad_requests_clearly() {
    let app = TestApp::up().await;
    let listener = token(&app.register(&unique_email()).await, "access_token");

    assert_problem(app.get("/v1/me/recommendations", None).await, StatusCode::UNAUTHORIZED).await;
    let path = format!("/v1/tracks/{}/similar", uuid::Uuid::now_v7());
    assert_problem(app.get(&path, None).await, StatusCode::UNAUTHORIZED).await;
    // Without a model loaded the service still answers: nothing is recommended yet.
    let empty =
        until(&app, &listener, "/v1/me/recommendations", Duration::from_secs(30), |_| true).await;
    assert_eq!(empty["total"], 0, "{empty}");
    assert_problem(app.get(&path, Some(&listener)).await, StatusCode::NOT_FOUND).await;
    // An id that is no id names nothing, as everywhere in the API.
    assert_problem(
        app.get("/v1/tracks/not-an-id/similar", Some(&listener)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    for query in ["limit=0", "limit=101", "include_known=perhaps", "offset=-1"] {
        let response = app.get(&format!("/v1/me/recommendations?{query}"), Some(&listener)).await;
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}
