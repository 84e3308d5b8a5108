//! Transcode speed: Tonearm's pass (probe, then one ffmpeg run that encodes the ladder and
//! meters loudness) against the plain ffmpeg command line that encodes the same ladder, on
//! the same inputs, alternating run by run so that both meet the same machine state.
//!
//! The Tonearm side is timed twice from the same run: probe + package alone (what ffmpeg
//! work a job costs), and the whole job as a worker does it with local object storage
//! (download the original to scratch, probe, package, upload every segment), so the cost of
//! storage I/O shows separately. The job queue, leases and events are left out: they are a
//! few SQLite writes per track.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use objects::{ObjectKey, Objects, StorageConfig};
use streaming::transcoder::Transcoder;
use tokio::process::Command;

pub struct TranscodeArgs {
    /// Timed runs of each side per input.
    pub repeat: usize,
    /// Lengths of the generated inputs, in seconds; each is made as MP3 and as FLAC.
    pub lengths: Vec<u32>,
}

/// A generated input and what it holds.
struct Input {
    name: String,
    path: PathBuf,
    seconds: f64,
}

/// One input's timings, in seconds.
#[derive(Default)]
struct Timings {
    package: Vec<f64>,
    job: Vec<f64>,
    cli: Vec<f64>,
}

pub async fn run(args: TranscodeArgs) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let transcoder =
        Transcoder::new("ffmpeg".into(), "ffprobe".into(), Duration::from_secs(4 * 3600));
    let objects = Objects::connect(&StorageConfig::default(), dir.path()).await?;
    let mut inputs = Vec::new();
    for (seed, seconds) in args.lengths.iter().copied().enumerate() {
        for (format, codec) in
            [("mp3", &["-c:a", "libmp3lame", "-b:a", "192k"][..]), ("flac", &["-c:a", "flac"][..])]
        {
            let path = dir.path().join(format!("{seconds}s.{format}"));
            generate(&path, seconds, seed as u32 + 1, codec).await?;
            let name = format!("{seconds} s {}", if format == "mp3" { "MP3 192k" } else { "FLAC" });
            inputs.push(Input { name, path, seconds: f64::from(seconds) });
        }
    }

    // One untimed run of each side first: the first ffmpeg start pays for loading its
    // libraries, which no later run does.
    if let Some(first) = inputs.first() {
        tonearm_job(&transcoder, &objects, first, &dir.path().join("warm")).await?;
        cli(first, &dir.path().join("warm-cli")).await?;
    }

    let mut rows = Vec::new();
    for input in &inputs {
        let mut timings = Timings::default();
        for rep in 0..args.repeat {
            let scratch = dir.path().join(format!("job-{rep}"));
            let out = dir.path().join(format!("cli-{rep}"));
            // Alternate which side goes first, so neither always runs on a warmer machine.
            if rep % 2 == 0 {
                let (package, job) = tonearm_job(&transcoder, &objects, input, &scratch).await?;
                timings.cli.push(cli(input, &out).await?);
                timings.package.push(package);
                timings.job.push(job);
            } else {
                timings.cli.push(cli(input, &out).await?);
                let (package, job) = tonearm_job(&transcoder, &objects, input, &scratch).await?;
                timings.package.push(package);
                timings.job.push(job);
            }
            let _ = tokio::fs::remove_dir_all(&scratch).await;
            let _ = tokio::fs::remove_dir_all(&out).await;
        }
        rows.push(row(input, &mut timings));
    }
    let mut table = String::from(
        "| input | audio | Tonearm probe + package | × real time | whole job, local storage | \
         ffmpeg CLI | × real time | Tonearm speed ÷ CLI speed |\n|---|---|---|---|---|---|---|---|\n",
    );
    for line in rows {
        table.push_str(&line);
        table.push('\n');
    }
    table.push_str(&format!(
        "\nmedians of {} runs per side; times in seconds of wall clock; `{}`",
        args.repeat,
        ffmpeg_version().await
    ));
    Ok(table)
}

/// A tone under pink noise, stereo at 44.1 kHz: the same recipe the API tests upload, so
/// every codec has something to encode.
async fn generate(path: &Path, seconds: u32, seed: u32, codec: &[&str]) -> anyhow::Result<()> {
    let tone = format!("sine=frequency={}:duration={seconds}:sample_rate=44100", 220 + seed * 7);
    let noise = format!("anoisesrc=d={seconds}:c=pink:a=0.08:seed={seed}:r=44100");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", &tone])
        .args(["-f", "lavfi", "-i", &noise])
        .args(["-filter_complex", "[0][1]amix=inputs=2,aformat=channel_layouts=stereo"])
        .args(codec)
        .arg(path)
        .status()
        .await
        .context("running ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not make {}", path.display());
    }
    Ok(())
}

/// A worker's job against local object storage: the original is stored first (untimed,
/// that is the upload's cost), then download, probe, package and upload are timed.
/// Returns (probe + package, whole job) in seconds.
async fn tonearm_job(
    transcoder: &Transcoder,
    objects: &Objects,
    input: &Input,
    scratch: &Path,
) -> anyhow::Result<(f64, f64)> {
    let original = ObjectKey::parse(&format!("originals/bench/{}", file_name(&input.path)))?;
    objects.put(&original, Bytes::from(tokio::fs::read(&input.path).await?)).await?;
    let prefix = ObjectKey::parse("streams/bench")?;
    let _ = objects.delete_prefix(&prefix).await;

    let started = Instant::now();
    tokio::fs::create_dir_all(scratch).await?;
    let source = scratch.join(file_name(&input.path));
    let mut chunks = objects.get_stream(&original).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.try_next().await? {
        bytes.extend_from_slice(&chunk);
    }
    tokio::fs::write(&source, bytes).await?;
    let packaging = Instant::now();
    let probed = transcoder.probe(&source).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    let out = scratch.join("out");
    let packaged = transcoder
        .package(&source, &probed, &out)
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let package = packaging.elapsed().as_secs_f64();
    let files: Vec<String> = packaged
        .renditions
        .iter()
        .flat_map(|rendition| {
            std::iter::once(&rendition.init)
                .chain(rendition.segments.iter().map(|segment| &segment.file))
                .map(move |file| format!("{}/{file}", rendition.dir))
        })
        .collect();
    // As the worker uploads: 16 at a time.
    futures::stream::iter(files)
        .map(|file| {
            let (out, prefix) = (&out, &prefix);
            async move {
                let bytes = tokio::fs::read(out.join(&file)).await?;
                objects.put(&prefix.join(&file)?, Bytes::from(bytes)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok((package, started.elapsed().as_secs_f64()))
}

/// The ffmpeg command line that encodes the same ladder in one pass, without loudness.
async fn cli(input: &Input, out: &Path) -> anyhow::Result<f64> {
    tokio::fs::create_dir_all(out).await?;
    let started = Instant::now();
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y", "-i"])
        .arg(&input.path)
        .args(["-map", "0:a", "-map", "0:a", "-map", "0:a", "-c:a", "aac"])
        .args(["-b:a:0", "64k", "-b:a:1", "128k", "-b:a:2", "256k"])
        .args(["-f", "hls", "-hls_time", "6", "-hls_playlist_type", "vod"])
        .args(["-hls_segment_type", "fmp4", "-var_stream_map", "a:0 a:1 a:2"])
        .arg(out.join("v%v").join("index.m3u8"))
        .output()
        .await
        .context("running ffmpeg")?;
    let elapsed = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("ffmpeg failed on {}: {}", input.name, String::from_utf8_lossy(&output.stderr));
    }
    Ok(elapsed)
}

fn row(input: &Input, timings: &mut Timings) -> String {
    let package = median(&mut timings.package);
    let job = median(&mut timings.job);
    let cli = median(&mut timings.cli);
    let speed = |secs: f64| input.seconds / secs;
    format!(
        "| {} | {:.0} s | {package:.2} s | {:.0}× | {job:.2} s ({:.0}×) | {cli:.2} s | {:.0}× | {:.2} |",
        input.name,
        input.seconds,
        speed(package),
        speed(job),
        speed(cli),
        cli / package,
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

async fn ffmpeg_version() -> String {
    let transcoder = Transcoder::new("ffmpeg".into(), "ffprobe".into(), Duration::ZERO);
    transcoder.version().await.unwrap_or_else(|error| error)
}
