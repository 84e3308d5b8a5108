//! The edge: bad audio gets its documented problem, nothing panics, and a full queue
//! answers 503 with `Retry-After`.

use std::{net::SocketAddr, sync::Arc};

use ai::{AiConfig, AiService};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::{EmptyCatalog, config, espeak_wav, service};

async fn serve(service: Arc<AiService>) -> SocketAddr {
    let (router, _) = ai::router(service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn post(addr: SocketAddr, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header(kernel::caller::USER_ID, Uuid::now_v7().to_string())
        .header(kernel::caller::SESSION_ID, Uuid::now_v7().to_string())
        .header(kernel::caller::TIER, "free")
        .header(kernel::caller::ROLE, "user")
}

async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    response.json().await.unwrap()
}

/// A WAV header that declares `secs` of 16 kHz mono audio, followed by one second of it.
fn declared_wav(secs: u32) -> Vec<u8> {
    let mut wav = ai::audio::wav(&vec![0i16; 16_000], 16_000);
    let data = secs * 16_000 * 2;
    wav[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    wav[40..44].copy_from_slice(&data.to_le_bytes());
    wav
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_audio_gets_its_documented_problem_and_the_service_carries_on() {
    let addr = serve(service(config()).await).await;
    let transcribe = || post(addr, "/v1/ai/transcribe");

    let empty = transcribe().send().await.unwrap();
    let body = problem(empty, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("empty"), "{body}");

    let corrupt: Vec<u8> =
        (0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    problem(transcribe().body(corrupt).send().await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .await;

    let json = transcribe().json(&serde_json::json!({"text": "hello"})).send().await.unwrap();
    problem(json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    let two_hours = transcribe().body(declared_wav(2 * 3600)).send().await.unwrap();
    let body = problem(two_hours, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(body["detail"].as_str().unwrap().contains("60 s"), "{body}");

    let oversized = vec![0u8; 17 * 1024 * 1024];
    problem(transcribe().body(oversized).send().await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE)
        .await;

    let mut truncated = espeak_wav("play kind of blue");
    truncated.truncate(60);
    let answer = transcribe().body(truncated).send().await.unwrap();
    problem(answer, StatusCode::UNPROCESSABLE_ENTITY).await;

    // And it still hears.
    let fine =
        transcribe().body(espeak_wav("find the song hotel california")).send().await.unwrap();
    assert_eq!(fine.status(), StatusCode::OK);
    let heard: Value = fine.json().await.unwrap();
    assert!(heard["text"].as_str().unwrap().to_lowercase().contains("hotel california"), "{heard}");
    assert_eq!(heard["language"], "en");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speak_answers_wav_and_refuses_empty_or_long_text() {
    let addr = serve(service(config()).await).await;
    let speak = || post(addr, "/v1/ai/speak");
    let spoken = speak().json(&serde_json::json!({"text": "Hello there."})).send().await.unwrap();
    assert_eq!(spoken.status(), StatusCode::OK);
    assert_eq!(spoken.headers()["content-type"], "audio/wav");
    let wav = spoken.bytes().await.unwrap();
    assert!(wav.len() > 22_050, "at least half a second of 22.05 kHz audio: {}", wav.len());

    for text in ["", "   ", &"la ".repeat(400), "hello\0there"] {
        let refused = speak().json(&serde_json::json!({"text": text})).send().await.unwrap();
        problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let other =
        speak().json(&serde_json::json!({"text": "hi", "voice": "nobody"})).send().await.unwrap();
    problem(other, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_and_the_rest_are_heard() {
    let addr = serve(service(AiConfig { queue: 2, max_batch: 1, ..config() }).await).await;
    let wav = espeak_wav("play kind of blue by miles davis");
    let answers = futures::future::join_all(
        (0..50).map(|_| post(addr, "/v1/ai/transcribe").body(wav.clone()).send()),
    )
    .await;
    let (mut heard, mut busy) = (0, 0);
    for answer in answers {
        let answer = answer.unwrap();
        match answer.status() {
            StatusCode::OK => heard += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                let retry: u64 = answer.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(retry >= 1);
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy > 0, "a queue of 2 cannot take 50 at once");
    assert!(heard >= 2, "the queued ones are heard: {heard}");
    let after = post(addr, "/v1/ai/transcribe").body(wav).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK, "the service is still well afterwards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_models_are_503_naming_the_command_that_fetches_them() {
    let empty = tempfile::tempdir().unwrap();
    let config = AiConfig { models_dir: Some(empty.path().to_owned()), ..AiConfig::default() };
    let service = Arc::new(AiService::new(config, Arc::new(EmptyCatalog)));
    service.load_models().await;
    assert!(service.transcriber_state().unwrap_err().contains("tonearm models fetch"));
    let addr = serve(service).await;
    let answer = post(addr, "/v1/ai/transcribe").body(espeak_wav("hello")).send().await.unwrap();
    let body = problem(answer, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(body["detail"].as_str().unwrap().contains("tonearm models fetch"), "{body}");
    let answer = post(addr, "/v1/ai/speak")
        .json(&serde_json::json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    let body = problem(answer, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(body["detail"].as_str().unwrap().contains("tonearm models fetch"), "{body}");
}
