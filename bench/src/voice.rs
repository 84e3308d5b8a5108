//! Voice: Whisper's real-time factor on a 20 s clip and on 8 short requests arriving
//! together (batched into one forward pass, and one by one), the voice's speed, and the
//! process's peak memory. With `--reference PYTHON`, faster-whisper (CTranslate2) runs the
//! same model on the same clip in the same run, for comparison.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use ai::{AiConfig, AiService};
use anyhow::{Context, bail};
use testkit::voice::{EmptyCatalog, espeak_wav};

pub struct VoiceArgs {
    pub models: Option<PathBuf>,
    pub repeat: usize,
    /// A Python with faster-whisper installed, to time the reference on the same clip.
    pub reference: Option<PathBuf>,
}

const PARAGRAPH: &str = "Welcome to your evening mix. First up is a track from Kind of Blue by \
    Miles Davis, followed by Blue Train from John Coltrane. After that we have a few quiet \
    piano pieces for studying, and then some upbeat songs to finish the night. Enjoy the music.";

const SHORT: [&str; 8] = [
    "play kind of blue by miles davis",
    "shuffle my favorite jazz songs",
    "songs like so what",
    "play blue train",
    "find the song hotel california",
    "put on some classical piano music",
    "play the top hits from last summer",
    "search for love songs",
];

/// Exactly `secs` of speech at 16 kHz as WAV: the paragraph, repeated or cut to length.
fn clip(dir: &Path, secs: usize) -> anyhow::Result<(Vec<u8>, PathBuf)> {
    let speech = ai::audio::decode_speech(espeak_wav(PARAGRAPH).into(), 600)?;
    let samples: Vec<i16> =
        speech.samples.iter().cycle().take(secs * 16_000).map(|s| (s * 32_000.0) as i16).collect();
    let wav = ai::audio::wav(&samples, 16_000);
    let path = dir.join(format!("clip-{secs}s.wav"));
    std::fs::write(&path, &wav)?;
    Ok((wav, path))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The process's peak resident memory so far, in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

async fn service(models: &Option<PathBuf>, max_batch: usize) -> anyhow::Result<Arc<AiService>> {
    let config = AiConfig { models_dir: models.clone(), max_batch, ..AiConfig::default() };
    let service = Arc::new(AiService::new(config, Arc::new(EmptyCatalog)));
    service.load_models().await;
    service.transcriber_state().map_err(anyhow::Error::msg)?;
    service.voice_state().map_err(anyhow::Error::msg)?;
    Ok(service)
}

pub async fn run(args: VoiceArgs) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let repeat = args.repeat.max(1);
    let mut lines = Vec::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    lines.push(format!("voice benchmark, {threads} cores"));

    let loading = Instant::now();
    let batched = service(&args.models, 8).await?;
    lines.push(format!(
        "models loaded in {:.2} s (Whisper tiny.en and the Piper voice); peak RSS {:.0} MiB",
        loading.elapsed().as_secs_f64(),
        peak_rss_mib()
    ));

    // A 20 s clip, one request at a time.
    let (wav, clip_path) = clip(dir.path(), 20)?;
    batched.transcribe(wav.clone().into()).await?; // warm-up
    let mut times = Vec::new();
    for _ in 0..repeat {
        let started = Instant::now();
        batched.transcribe(wav.clone().into()).await?;
        times.push(started.elapsed().as_secs_f64());
    }
    let clip_secs = median(times);
    lines.push(format!(
        "ASR 20 s clip: {clip_secs:.2} s (median of {repeat}), real-time factor {:.3}",
        clip_secs / 20.0
    ));
    lines.push(format!("peak RSS after ASR: {:.0} MiB", peak_rss_mib()));

    // 8 short requests at once, batched and one by one.
    let mut short = Vec::new();
    let mut audio_secs = 0.0;
    for text in SHORT {
        let bytes = espeak_wav(text);
        audio_secs +=
            ai::audio::decode_speech(bytes.clone().into(), 60)?.duration_ms() as f64 / 1000.0;
        short.push(bytes);
    }
    let alone = service(&args.models, 1).await?;
    for (label, service) in [("batched (up to 8 windows a pass)", &batched), ("one by one", &alone)]
    {
        let mut times = Vec::new();
        for _ in 0..repeat {
            let started = Instant::now();
            let answers = futures::future::join_all(
                short.iter().map(|bytes| service.transcribe(bytes.clone().into())),
            )
            .await;
            for answer in answers {
                answer?;
            }
            times.push(started.elapsed().as_secs_f64());
        }
        let wall = median(times);
        lines.push(format!(
            "ASR 8 concurrent short requests ({audio_secs:.1} s of audio), {label}: {wall:.2} s, \
             real-time factor {:.3}",
            wall / audio_secs
        ));
    }
    drop(alone);

    // The voice.
    let mut spoken_secs = 0.0;
    let started = Instant::now();
    for _ in 0..repeat {
        for sentence in PARAGRAPH.split(". ") {
            let wav = batched.speak(sentence, None).await?;
            spoken_secs += (wav.len() - 44) as f64 / 2.0 / 22_050.0;
        }
    }
    let took = started.elapsed().as_secs_f64();
    lines.push(format!(
        "TTS: {spoken_secs:.1} s of speech in {took:.2} s, {:.1}× real time",
        spoken_secs / took
    ));
    lines.push(format!("peak RSS (whole run): {:.0} MiB", peak_rss_mib()));

    if let Some(python) = &args.reference {
        let models = args.models.clone().unwrap_or_else(ai::models::default_dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("voice_reference.py");
        let output = std::process::Command::new(python)
            .arg(&script)
            .arg(models.join(ai::models::WHISPER_TINY_EN.dir))
            .arg(&clip_path)
            .arg(repeat.to_string())
            .arg(threads.to_string())
            .output()
            .context("running the faster-whisper reference")?;
        if !output.status.success() {
            bail!("the reference failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        lines.extend(String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned));
    }
    Ok(lines.join("\n"))
}
