//! Accuracy: what Whisper hears of espeak-ng's speech, and of the service's own voice.

use ai::voice::word_errors;

use crate::{config, espeak_wav, service};

/// Music searches as a listener says them.
const SEARCHES: [&str; 10] = [
    "play kind of blue by miles davis",
    "shuffle my favorite jazz songs",
    "play the new album by taylor swift",
    "songs like bohemian rhapsody",
    "play something relaxing for studying",
    "find the song hotel california",
    "play workout music with a fast beat",
    "put on some classical piano music",
    "play the top hits from last summer",
    "search for love songs from the eighties",
];

/// Sentences the service might say.
const SENTENCES: [&str; 10] = [
    "Welcome back to your music.",
    "Your playlist has twelve new songs.",
    "Now playing the first track of the album.",
    "This song was released in nineteen ninety.",
    "Shuffle is on and repeat is off.",
    "Your weekly mix is ready to play.",
    "The concert starts at eight tonight.",
    "Thank you for listening with us today.",
    "Add this track to your favorites.",
    "The next song is a quiet piano piece.",
];

fn rate(total: (usize, usize)) -> f64 {
    total.0 as f64 / total.1 as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoken_music_searches_are_transcribed_within_ten_percent_word_error_rate() {
    let service = service(config()).await;
    let mut total = (0, 0);
    let mut report = Vec::new();
    for phrase in SEARCHES {
        let heard = service.transcribe(espeak_wav(phrase).into()).await.unwrap();
        let (errors, words) = word_errors(phrase, &heard.text);
        total = (total.0 + errors, total.1 + words);
        report.push(format!("{phrase:?} → {:?} ({errors} errors)", heard.text));
        assert!(heard.duration_ms > 1_000, "{phrase}: {} ms", heard.duration_ms);
        assert_eq!(heard.language, "en");
    }
    let wer = rate(total);
    eprintln!("word error rate {wer:.3}:\n{}", report.join("\n"));
    assert!(wer <= 0.10, "word error rate {wer:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_voice_is_understood_when_whisper_hears_it_back() {
    let service = service(config()).await;
    let mut total = (0, 0);
    let mut report = Vec::new();
    for sentence in SENTENCES {
        let wav = service.speak(sentence, None).await.unwrap();
        assert_eq!(&wav[..4], b"RIFF");
        let heard = service.transcribe(wav.into()).await.unwrap();
        let (errors, words) = word_errors(sentence, &heard.text);
        total = (total.0 + errors, total.1 + words);
        report.push(format!("{sentence:?} → {:?} ({errors} errors)", heard.text));
    }
    let wer = rate(total);
    eprintln!("word error rate {wer:.3}:\n{}", report.join("\n"));
    assert!(wer <= 0.15, "word error rate {wer:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_arrive_together_are_heard_as_each_would_be_alone() {
    let service = service(config()).await;
    let phrases = ["play blue train", "shuffle my liked songs", "songs like so what", "play jazz"];
    let mut alone = Vec::new();
    for phrase in phrases {
        alone.push(service.transcribe(espeak_wav(phrase).into()).await.unwrap().text);
    }
    let together = futures::future::join_all(
        phrases.iter().map(|phrase| service.transcribe(espeak_wav(phrase).into())),
    )
    .await;
    let together: Vec<String> = together.into_iter().map(|heard| heard.unwrap().text).collect();
    assert_eq!(together, alone);
    let (errors, words) = word_errors("play blue train", &together[0]);
    assert!(errors * 3 <= words, "{together:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_longer_than_a_window_is_heard_window_by_window() {
    let service = service(config()).await;
    let phrase = "play kind of blue by miles davis";
    // 40 s: the phrase, 35 s of silence, the phrase again.
    let speech = ai::audio::decode_speech(espeak_wav(phrase).into(), 60).unwrap();
    let mut samples = speech.samples.clone();
    samples.resize(samples.len() + 35 * 16_000, 0.0);
    samples.extend_from_slice(&speech.samples);
    let pcm: Vec<i16> = samples.iter().map(|s| (s * 32_000.0) as i16).collect();
    let heard = service.transcribe(ai::audio::wav(&pcm, 16_000).into()).await.unwrap();
    assert!(heard.duration_ms > 35_000);
    let (errors, words) = word_errors(&format!("{phrase} {phrase}"), &heard.text);
    assert!(errors * 5 <= words, "{:?}", heard.text);
}

/// `wav` converted by ffmpeg to the format of `extension`.
fn converted(wav: &[u8], extension: &str, codec: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wav");
    let output = dir.path().join(format!("out.{extension}"));
    std::fs::write(&input, wav).unwrap();
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(&input)
        .args(codec)
        .arg(&output)
        .status()
        .expect("ffmpeg runs (the test script installs it)");
    assert!(status.success());
    std::fs::read(output).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mp3_ogg_vorbis_and_flac_are_heard_like_wav() {
    let service = service(config()).await;
    let phrase = "play kind of blue by miles davis";
    let wav = espeak_wav(phrase);
    let wav_ms = ai::audio::decode_speech(wav.clone().into(), 60).unwrap().duration_ms();
    for (extension, codec) in [
        ("mp3", &["-c:a", "libmp3lame", "-b:a", "64k"][..]),
        ("ogg", &["-c:a", "libvorbis", "-q:a", "3"][..]),
        ("flac", &["-c:a", "flac", "-ar", "44100", "-ac", "2"][..]),
    ] {
        let heard = service.transcribe(converted(&wav, extension, codec).into()).await.unwrap();
        let (errors, words) = word_errors(phrase, &heard.text);
        assert!(errors * 7 <= words, "{extension}: {:?}", heard.text);
        let ms = heard.duration_ms;
        assert!(ms.abs_diff(wav_ms) < 100, "{extension}: {ms} ms, the WAV {wav_ms} ms");
    }
}
