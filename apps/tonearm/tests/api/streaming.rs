//! Streaming end to end: uploads become adaptive HLS and DASH streams that ffprobe (a real
//! player's demuxer) opens through signed URLs; bad input fails with a reason; a transcode
//! killed mid-job resumes on restart.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use reqwest::{StatusCode, header};
use serde_json::Value;
use tempfile::TempDir;

use crate::{
    catalog::upload,
    support::{TestApp, UpProcess, assert_problem, settled, test_settings, token, unique_email},
};

/// An audio file made by ffmpeg: a tone under pink noise (so every codec has something to
/// encode), `seconds` long, distinct per `seed`.
pub fn audio(extension: &str, seconds: u32, seed: u32) -> Vec<u8> {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join(format!("source.{extension}"));
    let codec: &[&str] = match extension {
        "mp3" => &["-c:a", "libmp3lame", "-b:a", "192k"],
        "ogg" => &["-c:a", "libvorbis", "-q:a", "4"],
        "flac" => &["-c:a", "flac"],
        "wav" => &["-c:a", "pcm_s16le"],
        other => panic!("no recipe for {other}"),
    };
    let tone = format!("sine=frequency={}:duration={seconds}:sample_rate=44100", 220 + seed * 7);
    let noise = format!("anoisesrc=d={seconds}:c=pink:a=0.08:seed={seed}:r=44100");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", &tone])
        .args(["-f", "lavfi", "-i", &noise])
        .args(["-filter_complex", "[0][1]amix=inputs=2,aformat=channel_layouts=stereo"])
        .args(codec)
        .arg(&path)
        .status()
        .expect("ffmpeg is installed (scripts/test installs it)");
    assert!(status.success(), "ffmpeg made no {extension}");
    std::fs::read(&path).unwrap()
}

/// What ffprobe reports of a file or URL, as JSON. Asynchronous, so that a server running
/// on the test's own runtime can answer it.
pub async fn ffprobe(input: &str) -> Value {
    let output = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_type,codec_name:format=duration"])
        .args(["-of", "json", input])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

pub fn probed_seconds(report: &Value) -> f64 {
    report["format"]["duration"].as_str().unwrap().parse().unwrap()
}

fn audio_streams(report: &Value) -> usize {
    report["streams"].as_array().unwrap().iter().filter(|s| s["codec_type"] == "audio").count()
}

/// Integrated loudness as ffmpeg's own `ebur128` filter measures it.
fn ffmpeg_loudness(path: &Path) -> f64 {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args(["-af", "ebur128", "-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let summary = log.rsplit("Integrated loudness:").next().unwrap();
    let value = summary.trim().strip_prefix("I:").unwrap().trim();
    value.split_whitespace().next().unwrap().parse().unwrap()
}

/// Polls a track until it leaves `processing`: often at first, then once a second, which
/// keeps a long transcode on a busy machine inside the free tier's 100 requests a minute.
async fn uploaded_id(app: &TestApp, token: &str, name: &str, bytes: Vec<u8>) -> String {
    let accepted = upload(app, token, name, bytes, &[]).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let accepted: Value = accepted.json().await.unwrap();
    accepted["id"].as_str().unwrap().to_owned()
}

async fn signed_url(app: &TestApp, token: &str, id: &str, kind: &str) -> String {
    let response = app.get(&format!("/v1/tracks/{id}/{kind}"), Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'), "{body}");
    body["url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn mp3_flac_ogg_and_wav_uploads_become_adaptive_streams() {
    let app = TestApp::up().await;
    let listener = token(&app.register(&unique_email()).await, "access_token");
    let originals = TempDir::new().unwrap();
    let mut uploads = Vec::new();
    for (seed, extension) in ["mp3", "flac", "ogg", "wav"].into_iter().enumerate() {
        let bytes = audio(extension, 14, seed as u32 + 1);
        let original = originals.path().join(format!("original.{extension}"));
        std::fs::write(&original, &bytes).unwrap();
        let id = uploaded_id(&app, &listener, &format!("Take {seed}.{extension}"), bytes).await;
        uploads.push((extension, id, original));
    }

    for (extension, id, original) in &uploads {
        let track = settled(&app, &listener, id).await;
        assert_eq!(track["status"], "ready", "{extension}: {track}");
        assert!(track.get("error").is_none(), "{track}");
        let ladder: Vec<(u64, &str)> = track["renditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["bitrate_kbps"].as_u64().unwrap(), r["codec"].as_str().unwrap()))
            .collect();
        assert_eq!(ladder, [(64, "mp4a.40.2"), (128, "mp4a.40.2"), (256, "mp4a.40.2")]);

        let source = original.to_str().unwrap();
        let expected_seconds = probed_seconds(&ffprobe(source).await);
        let duration = track["duration_ms"].as_f64().unwrap() / 1000.0;
        assert!((duration - expected_seconds).abs() <= 0.5, "{extension}: {duration} s");
        if ["flac", "wav"].contains(extension) {
            // Lossless sources know their length to the sample; the AAC renditions run a
            // frame or two longer, and that is theirs, not the track's.
            assert!(
                (duration - expected_seconds).abs() < 0.002,
                "{extension}: {duration} s, the source lasts {expected_seconds} s"
            );
        }
        let loudness = track["loudness_lufs"].as_f64().unwrap();
        let measured = ffmpeg_loudness(original);
        assert!((loudness - measured).abs() <= 0.5, "{extension}: {loudness} vs {measured} LUFS");

        let hls = signed_url(&app, &listener, id, "stream").await;
        let master = app.client.get(&hls).send().await.unwrap();
        assert_eq!(master.status(), StatusCode::OK);
        assert_eq!(master.headers()[header::CONTENT_TYPE], "application/vnd.apple.mpegurl");
        let master = master.text().await.unwrap();
        let variants: Vec<&str> =
            master.lines().filter(|line| line.starts_with("#EXT-X-STREAM-INF:")).collect();
        assert_eq!(variants.len(), 3, "{master}");
        for variant in variants {
            assert!(variant.contains("BANDWIDTH="), "{variant}");
            assert!(variant.contains("CODECS=\"mp4a.40.2\""), "{variant}");
        }
        let report = ffprobe(&hls).await;
        assert!(audio_streams(&report) >= 3, "{extension}: {report}");
        let played = probed_seconds(&report);
        assert!((played - expected_seconds).abs() <= 0.5, "{extension}: HLS lasts {played} s");

        let dash = signed_url(&app, &listener, id, "dash").await;
        let report = ffprobe(&dash).await;
        assert!(audio_streams(&report) >= 3, "{extension}: {report}");
    }

    // Each track that became ready was announced, once, for the read sides.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let args = ["events", "tail", "track.published", "--from-beginning", "--max", "10"];
        let tail = crate::support::tonearm_cli(&args, &app.data_dir, &[]);
        let published: Vec<String> = crate::support::succeeded(&tail)
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .map(|event| event["payload"]["track_id"].as_str().unwrap().to_owned())
            .collect();
        if published.len() == uploads.len() {
            for (_, id, _) in &uploads {
                assert!(published.contains(id), "{id} was not published: {published:?}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "published so far: {published:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The signed URL of a playlist entry (`64k/index.m3u8?…`) relative to `base`.
pub fn resolve(base: &str, relative: &str) -> String {
    let directory = &base[..base.split('?').next().unwrap().rfind('/').unwrap() + 1];
    format!("{directory}{relative}")
}

pub fn uris(playlist: &str) -> Vec<String> {
    let mut uris: Vec<String> = playlist
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(str::to_owned)
        .collect();
    for line in playlist.lines().filter(|line| line.starts_with("#EXT-X-MAP:")) {
        uris.push(line.split('"').nth(1).unwrap().to_owned());
    }
    uris
}

#[tokio::test]
async fn media_is_served_only_through_valid_signatures_and_outside_the_api_budget() {
    let dir = TempDir::new().unwrap();
    let mut settings = test_settings(dir.path());
    // Registering, signing in and one refused request spend it all.
    settings.gateway.rate_limits.anonymous_per_minute = 3;
    settings.streaming.public_url = "https://cdn.example.test".into();
    let app = TestApp::up_with(settings, None).await;
    let listener = token(&app.login(&register(&app).await).await, "access_token");
    let id = uploaded_id(&app, &listener, "Signed.wav", audio("wav", 8, 3)).await;
    assert_eq!(settled(&app, &listener, &id).await["status"], "ready");

    let unauthenticated = app.get(&format!("/v1/tracks/{id}/stream"), None).await;
    assert_problem(unauthenticated, StatusCode::UNAUTHORIZED).await;
    let signed = signed_url(&app, &listener, &id, "stream").await;
    let path = signed.strip_prefix("https://cdn.example.test").expect("URLs point at the CDN");
    let master_url = app.url(path);

    // Far more requests than the anonymous budget of 3 a minute: media has its own guard.
    let mut master = String::new();
    for _ in 0..6 {
        let response = app.client.get(&master_url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit-limit").is_none());
        master = response.text().await.unwrap();
    }
    let variants = uris(&master);
    assert_eq!(variants.len(), 3);
    let media_url = resolve(&master_url, &variants[1]);
    let media = app.client.get(&media_url).send().await.unwrap().text().await.unwrap();
    let files = uris(&media);
    assert!(files.len() >= 3, "an init and two segments at least: {media}");
    for file in &files {
        assert!(file.contains("exp=") && file.contains("kid=") && file.contains("sig="), "{file}");
    }

    let segment_url = resolve(&media_url, &files[0]);
    let whole = app.client.get(&segment_url).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    let headers = whole.headers().clone();
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let whole = whole.bytes().await.unwrap();
    assert!(whole.len() > 100);

    let part = app.client.get(&segment_url).header(header::RANGE, "bytes=10-99").send().await;
    let part = part.unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    let range = format!("bytes 10-99/{}", whole.len());
    assert_eq!(part.headers()[header::CONTENT_RANGE], range.as_str());
    assert_eq!(part.bytes().await.unwrap(), whole.slice(10..100));
    let beyond = format!("bytes={}-", whole.len() + 10);
    let beyond = app.client.get(&segment_url).header(header::RANGE, beyond).send().await.unwrap();
    assert_problem(beyond, StatusCode::RANGE_NOT_SATISFIABLE).await;
    let cached = app.client.get(&segment_url).header(header::IF_NONE_MATCH, &etag).send().await;
    assert_eq!(cached.unwrap().status(), StatusCode::NOT_MODIFIED);

    // A media segment is large enough to leave with sendfile: the bytes stored, whole and
    // in part, from the first read and from the cache.
    let large_url = resolve(&media_url, &files[1]);
    let stored_at = large_url.split("/media/").nth(1).unwrap().split('?').next().unwrap();
    let stored = std::fs::read(app.data_dir.join("media/streams").join(stored_at)).unwrap();
    assert!(stored.len() > 2 * kernel::sendfile::MIN_SENDFILE_BYTES, "{} bytes", stored.len());
    let before = kernel::sendfile::bytes_sent_from_files();
    for _ in 0..2 {
        let whole = app.client.get(&large_url).send().await.unwrap();
        assert_eq!(whole.status(), StatusCode::OK);
        assert!(whole.bytes().await.unwrap() == stored, "the segment differs from its file");
    }
    let from_files = kernel::sendfile::bytes_sent_from_files() - before;
    assert!(from_files >= 2 * stored.len() as u64, "sent with sendfile: {from_files} bytes");
    let part = app.client.get(&large_url).header(header::RANGE, "bytes=1000-30000").send();
    let part = part.await.unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert!(part.bytes().await.unwrap() == stored[1000..=30000], "the range differs");
    let posted = app.client.post(&large_url).body("x").send().await.unwrap();
    assert_eq!(posted.headers()[header::ALLOW], "GET, HEAD");
    assert_problem(posted, StatusCode::METHOD_NOT_ALLOWED).await;
    let head = app.client.head(&large_url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[header::CONTENT_LENGTH], stored.len().to_string().as_str());

    // Tampering with the signature, the path or the expiry, or leaving the query out.
    let signature = segment_url.split("sig=").nth(1).unwrap().to_owned();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = segment_url
        .replace(&format!("sig={signature}"), &format!("sig={flipped}{}", &signature[1..]));
    let moved = segment_url.replacen("/128k/", "/256k/", 1);
    let exp = segment_url.split("exp=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let extended = segment_url
        .replace(&format!("exp={exp}"), &format!("exp={}", exp.parse::<i64>().unwrap() + 3600));
    let unsigned = segment_url.split('?').next().unwrap().to_owned();
    for refused in [forged, moved, extended, unsigned] {
        let response = app.client.get(&refused).send().await.unwrap();
        assert_problem(response, StatusCode::FORBIDDEN).await;
    }

    // A URL signed correctly but expired: signed here with the server's own key.
    let expired = sign_with_server_key(&app.data_dir, &master_url, -10).await;
    let body =
        assert_problem(app.client.get(&expired).send().await.unwrap(), StatusCode::FORBIDDEN).await;
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");
    let still_valid = sign_with_server_key(&app.data_dir, &master_url, 600).await;
    assert_eq!(app.client.get(&still_valid).send().await.unwrap().status(), StatusCode::OK);

    // A valid signature over a track that does not exist.
    let nobody = master_url.replace(&id, &uuid::Uuid::now_v7().to_string());
    let nobody = sign_with_server_key(&app.data_dir, &nobody, 600).await;
    assert_problem(app.client.get(&nobody).send().await.unwrap(), StatusCode::NOT_FOUND).await;
}

async fn register(app: &TestApp) -> String {
    let email = unique_email();
    app.register(&email).await;
    email
}

/// Re-signs `url`'s path to expire `seconds` from now with the key in the server's store.
async fn sign_with_server_key(data_dir: &Path, url: &str, seconds: i64) -> String {
    let database = format!("sqlite://{}", data_dir.join("streaming.db").display());
    let pool = kernel::db::SqlPool::connect(&kernel::engine::EngineUrl::new(database), "unused")
        .await
        .unwrap();
    let store = streaming::store::open(pool).await.unwrap();
    let signer = streaming::domain::UrlSigner::new(store.signing_keys().await.unwrap()).unwrap();
    let (without_query, _) = url.split_once('?').unwrap();
    let path = &without_query[without_query.find("/media/").unwrap()..];
    let query = signer.sign(path, chrono::Utc::now().timestamp() + seconds);
    format!("{without_query}?{query}")
}

#[tokio::test]
async fn a_garbage_mp3_fails_with_a_reason_and_the_server_keeps_serving() {
    let app = TestApp::up().await;
    let listener = token(&app.register(&unique_email()).await, "access_token");
    // An ID3 header, so it passes for an MP3, then noise.
    let mut garbage = b"ID3\x03\x00\x00\x00\x00\x00\x0a".to_vec();
    garbage.extend((0..60_000_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let id = uploaded_id(&app, &listener, "Broken.mp3", garbage).await;
    let track = settled(&app, &listener, &id).await;
    assert_eq!(track["status"], "failed", "{track}");
    let reason = track["error"].as_str().unwrap();
    assert!(reason.starts_with("cannot "), "{reason}");
    assert_ne!(reason, streaming::worker::GAVE_UP, "undecodable input is not retried");
    for tool_talk in ["ffmpeg", "Invalid data", "@ 0x", "Error", app.data_dir.to_str().unwrap()] {
        assert!(!reason.contains(tool_talk), "a reason in words, not the tool's: {reason}");
    }
    assert!(track["renditions"].as_array().unwrap().is_empty());
    // Nobody streams it, and nobody but its uploader sees it at all.
    let stream = app.get(&format!("/v1/tracks/{id}/stream"), Some(&listener)).await;
    assert_problem(stream, StatusCode::NOT_FOUND).await;
    let stranger = token(&app.register(&unique_email()).await, "access_token");
    let unseen = app.get(&format!("/v1/tracks/{id}"), Some(&stranger)).await;
    assert_problem(unseen, StatusCode::NOT_FOUND).await;
    let listed: Value = app.get("/v1/tracks", Some(&stranger)).await.json().await.unwrap();
    assert!(listed["items"].as_array().unwrap().iter().all(|t| t["id"] != id.as_str()), "{listed}");
    let found: Value = app.get("/v1/search?q=broken", Some(&stranger)).await.json().await.unwrap();
    assert_eq!(found["tracks"]["total"], 0, "{found}");
    let own: Value = app.get("/v1/tracks", Some(&listener)).await.json().await.unwrap();
    assert!(own["items"].as_array().unwrap().iter().any(|t| t["id"] == id.as_str()), "{own}");
    let transcode_dir = app.data_dir.join("transcode").join(&id);
    assert!(!transcode_dir.exists(), "scratch files are removed");
    let written = files_under(&app.data_dir.join("media/streams").join(&id));
    assert_eq!(written, 0, "no half-written stream");

    // A file cut off mid-way plays as far as it goes, or fails with a reason; either way
    // it settles, and nothing half-made is left behind.
    let mut truncated = audio("mp3", 10, 8);
    truncated.truncate(truncated.len() * 2 / 5);
    let cut = uploaded_id(&app, &listener, "Cut Short.mp3", truncated).await;
    let track = settled(&app, &listener, &cut).await;
    match track["status"].as_str().unwrap() {
        "ready" => assert!(track["duration_ms"].as_u64().unwrap() < 6_000, "{track}"),
        _ => assert!(track["error"].as_str().is_some_and(|e| !e.is_empty()), "{track}"),
    }

    // The server is fine: the next upload plays.
    let good = uploaded_id(&app, &listener, "Fine.ogg", audio("ogg", 4, 9)).await;
    assert_eq!(settled(&app, &listener, &good).await["status"], "ready");
}

#[tokio::test]
async fn deleting_a_track_removes_its_stream() {
    let app = TestApp::up().await;
    let listener = token(&app.register(&unique_email()).await, "access_token");
    let id = uploaded_id(&app, &listener, "Short-lived.flac", audio("flac", 7, 5)).await;
    assert_eq!(settled(&app, &listener, &id).await["status"], "ready");
    let master_url = signed_url(&app, &listener, &id, "stream").await;
    let master = app.client.get(&master_url).send().await.unwrap().text().await.unwrap();
    let media_url = resolve(&master_url, &uris(&master)[0]);
    let media = app.client.get(&media_url).send().await.unwrap().text().await.unwrap();
    let segment_url = resolve(&media_url, &uris(&media)[0]);
    assert_eq!(app.client.get(&segment_url).send().await.unwrap().status(), StatusCode::OK);

    let path = format!("/v1/tracks/{id}");
    let deleted = app.send(reqwest::Method::DELETE, &path, Some(&listener), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let stream_dir: PathBuf = app.data_dir.join("media/streams").join(&id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&stream_dir) > 0
        || app.client.get(&segment_url).send().await.unwrap().status() == 200
    {
        assert!(Instant::now() < deadline, "the stream outlived its track");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = app.client.get(&segment_url).send().await.unwrap();
    assert_problem(gone, StatusCode::NOT_FOUND).await;
    let stream = app.get(&format!("/v1/tracks/{id}/stream"), Some(&listener)).await;
    assert_problem(stream, StatusCode::NOT_FOUND).await;
}

/// Killing the process mid-transcode loses nothing: on restart the job runs again.
#[tokio::test]
async fn a_transcode_killed_mid_job_resumes_after_a_restart() {
    let dir = TempDir::new().unwrap();
    let email = unique_email();
    let server = UpProcess::start(dir.path()).await;
    let first = TestApp::attach(&server.url, dir.path());
    first.register(&email).await;
    let listener = token(&first.login(&email).await, "access_token");
    // Long enough that the kill lands mid-job: a few seconds of encoding.
    let id = uploaded_id(&first, &listener, "Long Take.mp3", audio("mp3", 300, 11)).await;

    let scratch = dir.path().join("transcode").join(&id);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !has_segments(&scratch) {
        assert!(Instant::now() < deadline, "the transcode never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();

    let restarted = UpProcess::start(dir.path()).await;
    let second = TestApp::attach(&restarted.url, dir.path());
    let listener = token(&second.login(&email).await, "access_token");
    let track = settled(&second, &listener, &id).await;
    assert_eq!(track["status"], "ready", "{track}");
    let played =
        probed_seconds(&ffprobe(&signed_url(&second, &listener, &id, "stream").await).await);
    assert!((played - 300.0).abs() <= 0.5, "the whole track plays: {played} s");
    assert!(!scratch.exists(), "the interrupted attempt's scratch files are gone");
    // The killed process's ffmpeg outlives it; whatever it wrote is gone with its directory.
    assert_eq!(files_under(&dir.path().join("transcode")), 0, "no scratch files are left");
}

/// Files anywhere under `dir` (object storage on the filesystem leaves empty directories).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| {
            if entry.file_type().is_ok_and(|t| t.is_dir()) { files_under(&entry.path()) } else { 1 }
        })
        .sum()
}

/// Whether an attempt under a track's scratch directory has written a media segment.
fn has_segments(scratch: &Path) -> bool {
    let Ok(attempts) = std::fs::read_dir(scratch) else { return false };
    attempts.filter_map(Result::ok).any(|attempt| {
        std::fs::read_dir(attempt.path().join("out").join("256k"))
            .map(|entries| entries.filter_map(Result::ok).any(|e| e.file_name() != "index.m3u8"))
            .unwrap_or(false)
    })
}

/// A fault of the machine (here ffmpeg missing) is retried, and the job completes once the
/// fault is gone; input that is merely too long fails at once, without retries.
#[tokio::test]
async fn faults_are_retried_until_they_pass_and_limits_fail_at_once() {
    let dir = TempDir::new().unwrap();
    let tools = TempDir::new().unwrap();
    let ffmpeg = tools.path().join("ffmpeg");
    let mut settings = test_settings(dir.path());
    settings.streaming.ffmpeg = ffmpeg.clone();
    settings.streaming.retry_backoff_secs = 1;
    settings.streaming.max_attempts = 10;
    settings.streaming.max_duration_secs = 60;
    let app = TestApp::up_with(settings, None).await;
    let listener = token(&app.login(&register(&app).await).await, "access_token");

    let ready = app.get("/readyz", None).await;
    let body = assert_problem(ready, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(body["detail"].as_str().unwrap().contains("streaming.ffmpeg"), "{body}");

    let id = uploaded_id(&app, &listener, "Patient.wav", audio("wav", 5, 13)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !job_error(&app.data_dir, &id).await.is_some_and(|e| e.contains("cannot run")) {
        assert!(Instant::now() < deadline, "the fault was never met");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let track: Value =
        app.get(&format!("/v1/tracks/{id}"), Some(&listener)).await.json().await.unwrap();
    assert_eq!(track["status"], "processing", "a fault is not a failure: {track}");

    let real = String::from_utf8(
        Command::new("sh").args(["-c", "command -v ffmpeg"]).output().unwrap().stdout,
    )
    .unwrap();
    std::os::unix::fs::symlink(real.trim(), &ffmpeg).unwrap();
    let track = settled(&app, &listener, &id).await;
    assert_eq!(track["status"], "ready", "{track}");
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);

    let long = uploaded_id(&app, &listener, "Endless.flac", audio("flac", 75, 14)).await;
    let track = settled(&app, &listener, &long).await;
    assert_eq!(track["status"], "failed");
    let reason = track["error"].as_str().unwrap();
    assert_eq!(reason, "the audio lasts 0:01:15, longer than the 0:01:00 accepted");
}

/// The last fault a transcode job met, read from the streaming store.
async fn job_error(data_dir: &Path, id: &str) -> Option<String> {
    let database = format!("sqlite://{}", data_dir.join("streaming.db").display());
    let pool = kernel::db::SqlPool::connect(&kernel::engine::EngineUrl::new(database), "unused")
        .await
        .unwrap();
    let store = streaming::store::open(pool).await.unwrap();
    let job = store.job(id.parse().unwrap()).await.unwrap()?;
    job.error
}

/// `tonearm keys rotate --media` while the server runs: URLs signed with the new key are
/// accepted at once, and those signed before keep working.
#[tokio::test]
async fn media_keys_rotate_without_breaking_signed_urls() {
    let app = TestApp::up().await;
    let listener = token(&app.register(&unique_email()).await, "access_token");
    let id = uploaded_id(&app, &listener, "Rotating.wav", audio("wav", 3, 17)).await;
    assert_eq!(settled(&app, &listener, &id).await["status"], "ready");
    let before = signed_url(&app, &listener, &id, "stream").await;

    let rotated = crate::support::tonearm_cli(&["keys", "rotate", "--media"], &app.data_dir, &[]);
    let said = crate::support::succeeded(&rotated);
    assert!(said.contains("new media URL signing key"), "{said}");
    let with_new_key = sign_with_server_key(&app.data_dir, &before, 3_600).await;
    assert_ne!(kid(&with_new_key), kid(&before));
    assert_eq!(app.client.get(&with_new_key).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.client.get(&before).send().await.unwrap().status(), StatusCode::OK);
}

fn kid(url: &str) -> &str {
    url.split("kid=").nth(1).unwrap().split('&').next().unwrap()
}
