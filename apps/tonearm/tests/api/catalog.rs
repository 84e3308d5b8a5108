//! The catalog through the gateway: uploads, their tracks, albums and artists.

use reqwest::{Method, StatusCode, multipart};
use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem, settled, token, unique_email};

/// A mono 16-bit PCM WAV of `seconds` of a quiet tone, distinct per `seed`.
pub fn wav(seconds: u32, seed: u8) -> Vec<u8> {
    let rate = 8_000_u32;
    let samples: Vec<i16> = (0..rate * seconds)
        .map(|i| ((f64::from(i) * 0.05 * f64::from(seed + 1)).sin() * 3_000.0) as i16)
        .collect();
    ai::audio::wav(&samples, rate)
}

pub async fn upload(
    app: &TestApp,
    token: &str,
    name: &str,
    bytes: Vec<u8>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = multipart::Form::new();
    for (field, value) in fields {
        form = form.text(field.to_string(), value.to_string());
    }
    form = form.part("file", multipart::Part::bytes(bytes).file_name(name.to_owned()));
    app.client.post(app.url("/v1/tracks")).bearer_auth(token).multipart(form).send().await.unwrap()
}

#[tokio::test]
async fn an_upload_becomes_a_track_and_the_same_content_is_recognised() {
    let app = TestApp::up().await;
    let ada = token(&app.register(&unique_email()).await, "access_token");

    let accepted = upload(&app, &ada, "Night Drive.wav", wav(3, 1), &[]).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["status"], "processing");
    let id = accepted["id"].as_str().unwrap().to_owned();

    let track: Value = app.get(&format!("/v1/tracks/{id}"), Some(&ada)).await.json().await.unwrap();
    assert_eq!(track["title"], "Night Drive", "named after the file without tags");
    assert_eq!(track["artist"]["name"], "Unknown Artist");
    assert_eq!(track["duration_ms"], 3_000);
    assert_eq!(track["status"], "processing");

    // The same bytes under another name, from another user: the existing track.
    let bob = token(&app.register(&unique_email()).await, "access_token");
    let again = upload(&app, &bob, "copy.wav", wav(3, 1), &[]).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], id);
    assert_eq!(again["duplicate"], true);

    let listed: Value = app.get("/v1/tracks?sort=title", Some(&ada)).await.json().await.unwrap();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["id"], id);
    assert_eq!(listed["items"][0]["artist"]["name"], "Unknown Artist");
}

#[tokio::test]
async fn upload_fields_override_tags_and_fill_albums_and_artists() {
    let app = TestApp::up().await;
    let ada = token(&app.register(&unique_email()).await, "access_token");
    for (seed, title) in [(2, "Blue"), (3, "Green")] {
        let response = upload(
            &app,
            &ada,
            "x.wav",
            wav(1, seed),
            &[("title", title), ("artist", "Nina Simone"), ("album", "Colours")],
        )
        .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let accepted: Value = response.json().await.unwrap();
        // Albums and artists are listed once a track of theirs plays.
        settled(&app, &ada, accepted["id"].as_str().unwrap()).await;
    }
    let albums: Value = app.get("/v1/albums", Some(&ada)).await.json().await.unwrap();
    assert_eq!(albums["total"], 1);
    let album_id = albums["items"][0]["id"].as_str().unwrap().to_owned();
    let album: Value =
        app.get(&format!("/v1/albums/{album_id}"), Some(&ada)).await.json().await.unwrap();
    assert_eq!(album["title"], "Colours");
    assert_eq!(album["tracks"].as_array().unwrap().len(), 2);

    let artists: Value = app.get("/v1/artists", Some(&ada)).await.json().await.unwrap();
    let artist_id = artists["items"][0]["id"].as_str().unwrap().to_owned();
    let artist: Value =
        app.get(&format!("/v1/artists/{artist_id}"), Some(&ada)).await.json().await.unwrap();
    assert_eq!(artist["name"], "Nina Simone");
    assert_eq!(artist["albums"][0]["title"], "Colours");
}

#[tokio::test]
async fn bad_uploads_get_clear_problems_and_leave_nothing_behind() {
    let app = TestApp::up().await;
    let ada = token(&app.register(&unique_email()).await, "access_token");

    let garbage = upload(&app, &ada, "song.mp3", b"this is not audio at all".to_vec(), &[]).await;
    assert_problem(garbage, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let empty = upload(&app, &ada, "empty.wav", Vec::new(), &[]).await;
    assert_problem(empty, StatusCode::UNPROCESSABLE_ENTITY).await;
    let no_file = app
        .client
        .post(app.url("/v1/tracks"))
        .bearer_auth(&ada)
        .multipart(multipart::Form::new().text("title", "nothing"))
        .send()
        .await
        .unwrap();
    assert_problem(no_file, StatusCode::UNPROCESSABLE_ENTITY).await;
    let anonymous = app
        .client
        .post(app.url("/v1/tracks"))
        .multipart(multipart::Form::new())
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;

    let listed: Value = app.get("/v1/tracks", Some(&ada)).await.json().await.unwrap();
    assert_eq!(listed["total"], 0, "no half-written catalog entry");
    let media = app.data_dir.join("media");
    let stored = walk(&media);
    assert!(stored.is_empty(), "no orphan files: {stored:?}");
}

/// Every way an upload's body can be wrong answers problem+json with the right status,
/// and stores nothing: no catalog row, no object.
#[tokio::test]
async fn malformed_and_oversized_upload_bodies_are_problems_and_store_nothing() {
    let dir = std::sync::Arc::new(tempfile::TempDir::new().unwrap());
    let mut settings = crate::support::test_settings(dir.path());
    settings.catalog.max_upload_bytes = 64 * 1024;
    let app = TestApp::up_with(settings, Some(dir)).await;
    let ada = token(&app.register(&unique_email()).await, "access_token");
    let post = |content_type: &'static str, body: Vec<u8>| {
        app.client
            .post(app.url("/v1/tracks"))
            .bearer_auth(&ada)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    for content_type in ["application/json", "audio/mpeg", "text/plain"] {
        let response = post(content_type, wav(1, 1)).await.unwrap();
        assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    let no_boundary = post("multipart/form-data", wav(1, 1)).await.unwrap();
    assert_problem(no_boundary, StatusCode::BAD_REQUEST).await;
    let broken = post("multipart/form-data; boundary=XYZ", b"--XYZ\r\nnot a part".to_vec());
    let broken = assert_problem(broken.await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert!(!broken["detail"].as_str().unwrap().contains("Internal"), "{broken}");

    // Larger than allowed, with no Content-Length to tell beforehand: cut off midway.
    let mut form_start =
        b"--XYZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n\r\n"
            .to_vec();
    form_start.extend(wav(20, 2));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        form_start.chunks(8 * 1024).map(|chunk| Ok(chunk.to_vec())).collect();
    let chunked = app
        .client
        .post(app.url("/v1/tracks"))
        .bearer_auth(&ada)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let too_large = assert_problem(chunked, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(too_large["detail"], "the file is larger than 65536 bytes", "{too_large}");

    // A name longer than an edit may set is refused the same way in an upload.
    let long_title = "x".repeat(10_000);
    let long = upload(&app, &ada, "a.wav", wav(1, 3), &[("title", long_title.as_str())]).await;
    let long = assert_problem(long, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(long["detail"], "title must be 1 to 300 characters");

    let listed: Value = app.get("/v1/tracks", Some(&ada)).await.json().await.unwrap();
    assert_eq!(listed["total"], 0, "{listed}");
    let stored = walk(&app.data_dir.join("media"));
    assert!(stored.is_empty(), "no orphan files: {stored:?}");
}

pub(crate) fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() { walk(&path) } else { vec![path] }
        })
        .collect()
}

#[tokio::test]
async fn only_the_uploader_edits_or_deletes_and_deletion_is_published() {
    let app = TestApp::up().await;
    let ada = token(&app.register(&unique_email()).await, "access_token");
    let bob = token(&app.register(&unique_email()).await, "access_token");
    let accepted: Value =
        upload(&app, &ada, "mine.wav", wav(1, 4), &[]).await.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap();
    let path = format!("/v1/tracks/{id}");
    // Someone else's track is theirs to see once it plays (before, it does not exist).
    assert_eq!(settled(&app, &ada, id).await["status"], "ready");

    let refused =
        app.send(Method::PATCH, &path, Some(&bob), Some(json!({"title": "Stolen"}))).await;
    assert_problem(refused, StatusCode::FORBIDDEN).await;
    let invalid = app.send(Method::PATCH, &path, Some(&ada), Some(json!({"year": 12}))).await;
    assert_problem(invalid, StatusCode::UNPROCESSABLE_ENTITY).await;
    let edited = app
        .send(
            Method::PATCH,
            &path,
            Some(&ada),
            Some(json!({"title": "Mine", "genre": "Ambient", "artist": "Ada"})),
        )
        .await;
    assert_eq!(edited.status(), StatusCode::OK);
    let edited: Value = edited.json().await.unwrap();
    assert_eq!(
        (edited["title"].as_str(), edited["genre"].as_str()),
        (Some("Mine"), Some("Ambient"))
    );
    assert_eq!(edited["artist"]["name"], "Ada");

    assert_problem(app.send(Method::DELETE, &path, Some(&bob), None).await, StatusCode::FORBIDDEN)
        .await;
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&ada), None).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(app.get(&path, Some(&ada)).await, StatusCode::NOT_FOUND).await;
    // Its original at once; its streams as soon as streaming hears of the deletion.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !walk(&app.data_dir.join("media")).is_empty() {
        assert!(std::time::Instant::now() < deadline, "its media went with it");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let mut deleted = false;
    for _ in 0..50 {
        let output = crate::support::tonearm_cli(
            &["events", "tail", "track.deleted", "--from-beginning"],
            &app.data_dir,
            &[],
        );
        if String::from_utf8_lossy(&output.stdout).contains(accepted["id"].as_str().unwrap()) {
            deleted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(deleted, "track.deleted was published");
}

#[tokio::test]
async fn importing_a_folder_twice_imports_nothing_twice() {
    let library = tempfile::TempDir::new().unwrap();
    for index in 0..200_u32 {
        let folder = library
            .path()
            .join(format!("artist-{}", index % 7))
            .join(format!("album-{}", index % 3));
        std::fs::create_dir_all(&folder).unwrap();
        let mut audio = wav(1, 0);
        // Distinct content per file: the last sample encodes the index.
        let len = audio.len();
        audio[len - 2..].copy_from_slice(&u16::try_from(index).unwrap().to_le_bytes());
        std::fs::write(folder.join(format!("track {index}.wav")), audio).unwrap();
    }
    std::fs::write(library.path().join("cover.jpg"), b"\xff\xd8\xff\xe0 not audio").unwrap();
    std::fs::write(library.path().join("notes.txt"), b"liner notes").unwrap();

    let data = tempfile::TempDir::new().unwrap();
    let folder = library.path().to_str().unwrap();
    let first = crate::support::succeeded(&crate::support::tonearm_cli(
        &["import", folder],
        data.path(),
        &[],
    ));
    assert!(
        first.contains("imported 200, already in the catalog 0, not audio 2, failed 0"),
        "{first}"
    );
    let second = crate::support::succeeded(&crate::support::tonearm_cli(
        &["import", folder],
        data.path(),
        &[],
    ));
    assert!(
        second.contains("imported 0, already in the catalog 200, not audio 2, failed 0"),
        "{second}"
    );

    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        data.path().join("catalog.db").display()
    ))
    .await
    .unwrap();
    let tracks: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM tracks").fetch_one(&pool).await.unwrap();
    assert_eq!(tracks, 200);
}

/// A WAV carrying an ID3v2 tag with a title and a front cover.
fn wav_with_cover(seed: u8) -> Vec<u8> {
    use lofty::{
        config::WriteOptions,
        picture::{MimeType, Picture, PictureType},
        prelude::{Accessor, TagExt},
        tag::{Tag, TagType},
    };
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("covered.wav");
    std::fs::write(&path, wav(1, seed)).unwrap();
    let mut png = Vec::new();
    image::RgbImage::from_pixel(900, 900, image::Rgb([30, 120, 200]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut tag = Tag::new(TagType::Id3v2);
    tag.set_title("Covered".to_owned());
    tag.set_artist("Painter".to_owned());
    tag.set_album("Canvas".to_owned());
    tag.push_picture(Picture::new_unchecked(
        PictureType::CoverFront,
        Some(MimeType::Png),
        None,
        png,
    ));
    tag.save_to_path(&path, WriteOptions::default()).unwrap();
    std::fs::read(&path).unwrap()
}

#[tokio::test]
async fn embedded_covers_are_served_in_two_sizes() {
    let app = TestApp::up().await;
    let ada = token(&app.register(&unique_email()).await, "access_token");
    let accepted: Value =
        upload(&app, &ada, "covered.wav", wav_with_cover(5), &[]).await.json().await.unwrap();
    let track: Value = app
        .get(&format!("/v1/tracks/{}", accepted["id"].as_str().unwrap()), Some(&ada))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (track["title"].as_str(), track["artist"]["name"].as_str()),
        (Some("Covered"), Some("Painter"))
    );
    let album = track["album"]["id"].as_str().unwrap().to_owned();

    for size in [300_u32, 640] {
        let response =
            app.get(&format!("/v1/albums/{album}/artwork?size={size}"), Some(&ada)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        let image = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
        assert_eq!((image.width(), image.height()), (size, size));
    }
    let odd = app.get(&format!("/v1/albums/{album}/artwork?size=123"), Some(&ada)).await;
    assert_problem(odd, StatusCode::UNPROCESSABLE_ENTITY).await;

    // An album without a cover.
    let plain: Value = upload(&app, &ada, "plain.wav", wav(1, 6), &[("album", "Bare")])
        .await
        .json()
        .await
        .unwrap();
    let plain: Value = app
        .get(&format!("/v1/tracks/{}", plain["id"].as_str().unwrap()), Some(&ada))
        .await
        .json()
        .await
        .unwrap();
    let bare = plain["album"]["id"].as_str().unwrap();
    assert_problem(
        app.get(&format!("/v1/albums/{bare}/artwork"), Some(&ada)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// Titles of the tracks a search found, best first.
async fn search_titles(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let response = app.get(&format!("/v1/search?q={query}&type=track"), Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("albums").is_none(), "only the types asked for");
    body["tracks"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn search_matches_prefixes_and_near_misses_ranked() {
    let app = TestApp::up().await;
    let ada = token(&app.register(&unique_email()).await, "access_token");
    for (seed, title, artist, album) in [
        (10, "Feeling Good", "Nina Simone", "I Put a Spell on You"),
        (11, "Sinnerman", "Nina Simone", "Pastel Blues"),
        (12, "Good Vibrations", "The Beach Boys", "Smiley Smile"),
        (13, "Artist in Residence", "Jazz Trio", "Portraits"),
    ] {
        let fields = [("title", title), ("artist", artist), ("album", album)];
        let accepted = upload(&app, &ada, "x.wav", wav(1, seed), &fields).await;
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
        let accepted: Value = accepted.json().await.unwrap();
        // Search finds what plays: a track is indexed once it is ready.
        assert!(search_titles(&app, &ada, &title.replace(' ', "%20")).await.is_empty());
        settled(&app, &ada, accepted["id"].as_str().unwrap()).await;
    }

    assert_eq!(search_titles(&app, &ada, "artst").await, ["Artist in Residence"], "one edit");
    assert_eq!(search_titles(&app, &ada, "sinerman").await, ["Sinnerman"], "a missing letter");
    assert_eq!(
        search_titles(&app, &ada, "vibratoins").await,
        ["Good Vibrations"],
        "two edits for long words"
    );
    assert_eq!(
        search_titles(&app, &ada, "nina%20feel").await,
        ["Feeling Good"],
        "every word must match"
    );
    let good = search_titles(&app, &ada, "good").await;
    assert_eq!(good.len(), 2);
    assert!(search_titles(&app, &ada, "zzzz").await.is_empty());

    let all: Value = app.get("/v1/search?q=nina", Some(&ada)).await.json().await.unwrap();
    assert_eq!(all["tracks"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(all["artists"]["items"][0]["name"], "Nina Simone");
    assert_eq!(all["albums"]["items"], json!([]), "no album is named Nina: {all}");
    for (kind, total) in [("tracks", 2), ("albums", 0), ("artists", 1)] {
        let section = &all[kind];
        assert_eq!(
            (&section["total"], &section["limit"], &section["offset"]),
            (&json!(total), &json!(20), &json!(0)),
            "{kind}: {all}"
        );
    }
    let pastel: Value = app.get("/v1/search?q=pastel", Some(&ada)).await.json().await.unwrap();
    assert_eq!(pastel["albums"]["items"][0]["title"], "Pastel Blues", "{pastel}");
    assert_eq!(pastel["artists"]["total"], 0, "{pastel}");
    let second: Value = app
        .get("/v1/search?q=good&type=track&limit=1&offset=1", Some(&ada))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (second["tracks"]["items"].as_array().unwrap().len(), &second["tracks"]["total"]),
        (1, &json!(2)),
        "{second}"
    );
    let unfiltered: Value =
        app.get("/v1/search?q=nina&type=", Some(&ada)).await.json().await.unwrap();
    assert_eq!(unfiltered, all, "an empty type filters nothing");
    let albums: Value =
        app.get("/v1/search?q=nina&type=album", Some(&ada)).await.json().await.unwrap();
    assert_eq!(albums.as_object().unwrap().keys().collect::<Vec<_>>(), ["albums"]);

    // An edit is searchable at once.
    let id = all["tracks"]["items"][0]["id"].as_str().unwrap().to_owned();
    let renamed = app
        .send(
            Method::PATCH,
            &format!("/v1/tracks/{id}"),
            Some(&ada),
            Some(json!({"title": "Wild Is the Wind"})),
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    assert_eq!(search_titles(&app, &ada, "wild%20wind").await, ["Wild Is the Wind"]);

    assert_problem(app.get("/v1/search?q=%20", Some(&ada)).await, StatusCode::UNPROCESSABLE_ENTITY)
        .await;
    assert_problem(app.get("/v1/search?q=x&type=song", Some(&ada)).await, StatusCode::BAD_REQUEST)
        .await;
}
