//! ffmpeg, driven as a subprocess: one probe to vet the input, then one decoding pass that
//! encodes every rendition of the ladder into fMP4 HLS segments and measures loudness
//! (EBU R128) on the way.

use std::{
    collections::VecDeque,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde::Deserialize;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::domain::{
    Packaged, PackagedRendition, Segment,
    ladder::{AAC_LC, LADDER, SEGMENT_SECS, bandwidths, parse_media_playlist, rendition_dir},
};

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The input cannot be made playable; trying again will not change that.
    #[error("{0}")]
    Unplayable(String),
    /// Something about this machine, not the input: a missing program, a full disk, a
    /// killed process. Worth another attempt.
    #[error("{0}")]
    Fault(String),
}

/// What the probe learned of the input's first audio stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Probed {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Transcoder {
    ffmpeg: PathBuf,
    ffprobe: PathBuf,
    max_duration: Duration,
}

/// Lines of ffmpeg's log kept for error messages.
const LOG_TAIL: usize = 40;

impl Transcoder {
    pub fn new(ffmpeg: PathBuf, ffprobe: PathBuf, max_duration: Duration) -> Self {
        Self { ffmpeg, ffprobe, max_duration }
    }

    /// ffmpeg's version line; an error when ffmpeg or ffprobe cannot be run.
    pub async fn version(&self) -> Result<String, String> {
        let mut version = String::new();
        for program in [&self.ffmpeg, &self.ffprobe] {
            let output = Command::new(program)
                .arg("-version")
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|error| format!("cannot run {}: {error}", program.display()))?;
            if !output.status.success() {
                return Err(format!("{} -version failed", program.display()));
            }
            if version.is_empty() {
                version = String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        Ok(version)
    }

    /// Vets the input: it must hold an audio stream of a sane length.
    pub async fn probe(&self, input: &Path) -> Result<Probed, TranscodeError> {
        let output = Command::new(&self.ffprobe)
            .args(["-v", "error", "-select_streams", "a:0", "-show_entries"])
            .arg("stream=codec_name,sample_rate,channels:format=duration")
            .args(["-of", "json"])
            .arg(input)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|error| not_runnable(&self.ffprobe, &error))?;
        if !output.status.success() {
            let log = without_path(&String::from_utf8_lossy(&output.stderr), input);
            return Err(classify(&log, output.status.code().is_none(), UNREADABLE));
        }
        let report: ProbeReport = serde_json::from_slice(&output.stdout).map_err(|error| {
            TranscodeError::Fault(format!("unexpected ffprobe output: {error}"))
        })?;
        let probed = report.probed().ok_or_else(|| {
            TranscodeError::Unplayable("the file holds no audio stream".to_owned())
        })?;
        match probed.duration {
            Some(duration) if duration > self.max_duration => {
                Err(TranscodeError::Unplayable(format!(
                    "the audio lasts {}, longer than the {} accepted",
                    clock(duration),
                    clock(self.max_duration)
                )))
            }
            Some(duration) if duration < Duration::from_millis(100) => {
                Err(TranscodeError::Unplayable("the audio is empty".to_owned()))
            }
            _ => Ok(probed),
        }
    }

    /// Encodes `input` into the ladder under `out` (`<out>/<64k|128k|256k>/…`) and reads
    /// back what was written.
    pub async fn package(
        &self,
        input: &Path,
        probed: &Probed,
        out: &Path,
    ) -> Result<Packaged, TranscodeError> {
        let fault = |error: std::io::Error| TranscodeError::Fault(error.to_string());
        for bitrate in LADDER {
            tokio::fs::create_dir_all(out.join(rendition_dir(bitrate))).await.map_err(fault)?;
        }
        let mut child = Command::new(&self.ffmpeg)
            .args(ffmpeg_args(input, probed, out))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| not_runnable(&self.ffmpeg, &error))?;
        let mut log = VecDeque::with_capacity(LOG_TAIL);
        let mut loudness = None;
        if let Some(stderr) = child.stderr.take() {
            let mut lines = BufReader::new(stderr).lines();
            let mut in_integrated = false;
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim_start().starts_with("Integrated loudness:") {
                    in_integrated = true;
                } else if in_integrated && let Some(value) = integrated_loudness(&line) {
                    loudness = Some(value);
                    in_integrated = false;
                }
                if log.len() == LOG_TAIL {
                    log.pop_front();
                }
                log.push_back(line);
            }
        }
        let status = child.wait().await.map_err(fault)?;
        if !status.success() {
            let log: Vec<String> = log.into();
            let log = without_path(&log.join("\n"), input);
            return Err(classify(&log, status.code().is_none(), UNDECODABLE));
        }
        let mut renditions = Vec::with_capacity(LADDER.len());
        for bitrate in LADDER {
            renditions.push(read_rendition(out, bitrate, probed).await?);
        }
        let encoded_us: u64 =
            renditions[0].segments.iter().map(|segment| segment.duration_us).sum();
        Ok(Packaged {
            duration_ms: track_duration_ms(probed.duration, encoded_us),
            // ffmpeg reports -70 LUFS (the absolute gate) for silence, which has no loudness.
            loudness_lufs: loudness.filter(|lufs| *lufs > -70.0),
            renditions,
        })
    }
}

/// How long a track lasts: the source's own length, as its container states it, when
/// the encoding bears it out. An encoding is padded to whole frames (AAC's 1024 samples,
/// plus priming), so the renditions run a little longer, and keep their own lengths in the
/// manifests. A container that claims far more than decodes (a file cut short, an MP3
/// whose header guesses) is not believed: then the encoded length is the truth.
fn track_duration_ms(stated: Option<Duration>, encoded_us: u64) -> u64 {
    const BELIEVABLE_US: u64 = 500_000;
    match stated.and_then(|stated| u64::try_from(stated.as_micros()).ok()) {
        Some(stated_us) if stated_us.abs_diff(encoded_us) <= BELIEVABLE_US => stated_us / 1_000,
        _ => encoded_us / 1_000,
    }
}

/// The arguments of the one pass: decode once, split, encode each rendition, meter one copy.
pub fn ffmpeg_args(input: &Path, probed: &Probed, out: &Path) -> Vec<OsString> {
    let outputs = LADDER.len();
    // AAC in HLS plays everywhere at 44.1 and 48 kHz; anything else is resampled.
    let resample =
        if [44_100, 48_000].contains(&probed.sample_rate) { "" } else { "aresample=48000," };
    let channels = probed.channels.clamp(1, 2);
    let mut graph = format!("[0:a:0]asplit={}", outputs + 1);
    for index in 0..outputs {
        graph.push_str(&format!("[s{index}]"));
    }
    graph.push_str("[meter];[meter]ebur128=peak=none[measured]");
    for index in 0..outputs {
        graph.push_str(&format!(";[s{index}]{resample}aformat=channel_layouts="));
        graph.push_str(if channels == 1 { "mono" } else { "stereo" });
        graph.push_str(&format!("[r{index}]"));
    }
    let mut args: Vec<OsString> = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push("-i".into());
    args.push(input.into());
    args.extend(["-filter_complex".into(), OsString::from(graph)]);
    for index in 0..outputs {
        args.extend(["-map".into(), OsString::from(format!("[r{index}]"))]);
    }
    args.extend(["-map_metadata", "-1", "-c:a", "aac"].map(OsString::from));
    for (index, bitrate) in LADDER.iter().enumerate() {
        args.push(format!("-b:a:{index}").into());
        args.push(format!("{bitrate}k").into());
    }
    let stream_map: Vec<String> = LADDER
        .iter()
        .enumerate()
        .map(|(index, bitrate)| format!("a:{index},name:{}", rendition_dir(*bitrate)))
        .collect();
    args.extend(
        [
            "-f",
            "hls",
            "-hls_time",
            &SEGMENT_SECS.to_string(),
            "-hls_playlist_type",
            "vod",
            "-hls_segment_type",
            "fmp4",
            "-hls_flags",
            "independent_segments",
            "-hls_fmp4_init_filename",
            "init.mp4",
            "-var_stream_map",
            &stream_map.join(" "),
        ]
        .map(OsString::from),
    );
    args.push("-hls_segment_filename".into());
    args.push(out.join("%v").join("seg%03d.m4s").into());
    args.push(out.join("%v").join("index.m3u8").into());
    args.extend(["-map", "[measured]", "-f", "null", "-"].map(OsString::from));
    args
}

async fn read_rendition(
    out: &Path,
    bitrate_kbps: u32,
    probed: &Probed,
) -> Result<PackagedRendition, TranscodeError> {
    let dir = rendition_dir(bitrate_kbps);
    let fault = |error: std::io::Error| TranscodeError::Fault(format!("reading {dir}: {error}"));
    let text = tokio::fs::read_to_string(out.join(&dir).join("index.m3u8")).await.map_err(fault)?;
    let playlist = parse_media_playlist(&text).map_err(TranscodeError::Unplayable)?;
    tokio::fs::metadata(out.join(&dir).join(&playlist.init)).await.map_err(fault)?;
    let mut segments = Vec::with_capacity(playlist.segments.len());
    for (file, duration_us) in playlist.segments {
        let size_bytes =
            tokio::fs::metadata(out.join(&dir).join(&file)).await.map_err(fault)?.len();
        segments.push(Segment { file, duration_us, size_bytes });
    }
    let (peak_bandwidth, average_bandwidth) = bandwidths(&segments);
    Ok(PackagedRendition {
        bitrate_kbps,
        codec: AAC_LC.to_owned(),
        sample_rate: if [44_100, 48_000].contains(&probed.sample_rate) {
            probed.sample_rate
        } else {
            48_000
        },
        channels: probed.channels.clamp(1, 2),
        peak_bandwidth,
        average_bandwidth,
        init: playlist.init,
        dir,
        segments,
    })
}

#[derive(Debug, Deserialize)]
struct ProbeReport {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Debug, Deserialize)]
struct ProbeStream {
    codec_name: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

impl ProbeReport {
    fn probed(&self) -> Option<Probed> {
        let stream = self.streams.first()?;
        let duration = self
            .format
            .as_ref()
            .and_then(|format| format.duration.as_deref())
            .and_then(|seconds| seconds.parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(Duration::from_secs_f64);
        Some(Probed {
            codec: stream.codec_name.clone().unwrap_or_default(),
            sample_rate: stream.sample_rate.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0),
            channels: stream.channels.unwrap_or(2),
            duration,
        })
    }
}

/// The value of a summary line such as `    I:         -23.0 LUFS`.
fn integrated_loudness(line: &str) -> Option<f64> {
    let value = line.trim().strip_prefix("I:")?.trim().strip_suffix("LUFS")?;
    value.trim().parse().ok()
}

/// ffmpeg names the input by its path; uploaders should not see this machine's paths.
fn without_path(log: &str, input: &Path) -> String {
    log.replace(&format!("{}: ", input.display()), "")
        .replace(&input.display().to_string(), "input")
}

fn not_runnable(program: &Path, error: &std::io::Error) -> TranscodeError {
    TranscodeError::Fault(format!("cannot run {}: {error}", program.display()))
}

/// Why a file the probe cannot open is refused, as its uploader reads it.
const UNREADABLE: &str =
    "cannot read the file as audio: it may be damaged, or not the format it claims to be";
/// Why a file that opens but does not decode to its end is refused.
const UNDECODABLE: &str = "cannot decode the audio: the file may be damaged or cut short";

/// Tells a file ffmpeg cannot read from a machine that cannot run it. The uploader is
/// told `reason`, in words; ffmpeg's own words go to the log, for the operator.
fn classify(log: &str, killed: bool, reason: &str) -> TranscodeError {
    const MACHINE_FAULTS: [&str; 4] =
        ["No space left on device", "Cannot allocate memory", "Permission denied", "Killed"];
    if killed || MACHINE_FAULTS.iter().any(|fault| log.contains(fault)) {
        return TranscodeError::Fault(format!("ffmpeg stopped: {}", last_line(log)));
    }
    tracing::info!(ffmpeg = %last_line(log), reason, "input refused");
    TranscodeError::Unplayable(reason.to_owned())
}

/// The last line of a log worth showing, without ffmpeg's `[component @ 0x…]` prefix.
fn last_line(log: &str) -> String {
    let line = log.lines().rev().map(str::trim).find(|line| !line.is_empty()).unwrap_or("");
    let line = match line.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
        Some((_, message)) => message,
        None => line,
    };
    let line = line.trim();
    if line.is_empty() { "unknown error".to_owned() } else { line.chars().take(300).collect() }
}

fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    format!("{}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_track_lasts_as_long_as_its_source_when_the_encoding_bears_it_out() {
        let stated = |ms| Some(Duration::from_millis(ms));
        assert_eq!(track_duration_ms(stated(20_000), 20_023_220), 20_000, "AAC padding");
        assert_eq!(track_duration_ms(stated(10_031), 4_010_000), 4_010, "a file cut short");
        assert_eq!(track_duration_ms(None, 3_050_000), 3_050);
    }

    #[test]
    fn reads_the_integrated_loudness_line() {
        assert_eq!(integrated_loudness("    I:         -27.8 LUFS"), Some(-27.8));
        assert_eq!(integrated_loudness("    LRA:         0.0 LU"), None);
        assert_eq!(integrated_loudness("    Threshold: -37.8 LUFS"), None);
    }

    #[test]
    fn errors_name_the_cause_without_ffmpeg_noise() {
        let log = "Input #0, mp3\n[mp3 @ 0x5581] Failed to read frame size\n\
                   /tmp/x.mp3: Invalid data found when processing input\n";
        match classify(log, false, UNDECODABLE) {
            TranscodeError::Unplayable(reason) => assert_eq!(reason, UNDECODABLE),
            other => panic!("expected unplayable, got {other:?}"),
        }
        assert!(matches!(
            classify("[hls @ 0x1] write: No space left on device", false, "x"),
            TranscodeError::Fault(_)
        ));
        assert!(matches!(classify("", true, "x"), TranscodeError::Fault(_)), "a killed ffmpeg");
    }

    #[test]
    fn one_pass_encodes_the_whole_ladder_and_meters_loudness() {
        let probed =
            Probed { codec: "flac".into(), sample_rate: 96_000, channels: 6, duration: None };
        let args: Vec<String> = ffmpeg_args(Path::new("in.flac"), &probed, Path::new("/w"))
            .into_iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("asplit=4[s0][s1][s2][meter]"), "{joined}");
        assert!(joined.contains("[meter]ebur128=peak=none[measured]"), "{joined}");
        assert!(joined.contains("[s2]aresample=48000,aformat=channel_layouts=stereo[r2]"));
        assert!(joined.contains("-b:a:0 64k -b:a:1 128k -b:a:2 256k"), "{joined}");
        assert!(joined.contains("a:0,name:64k a:1,name:128k a:2,name:256k"), "{joined}");
        assert!(joined.contains("-hls_segment_type fmp4"));
        assert!(joined.ends_with("/w/%v/index.m3u8 -map [measured] -f null -"), "{joined}");

        let cd = Probed { codec: "mp3".into(), sample_rate: 44_100, channels: 1, duration: None };
        let joined = ffmpeg_args(Path::new("a.mp3"), &cd, Path::new("/w"))
            .into_iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(joined.contains("[s0]aformat=channel_layouts=mono[r0]"), "{joined}");
    }

    #[test]
    fn probe_reports_without_audio_are_refused() {
        let report: ProbeReport =
            serde_json::from_str(r#"{"streams":[],"format":{"duration":"3.0"}}"#).unwrap();
        assert_eq!(report.probed(), None);
        let report: ProbeReport = serde_json::from_str(
            r#"{"streams":[{"codec_name":"mp3","sample_rate":"44100","channels":2}],
                "format":{"duration":"30.0500"}}"#,
        )
        .unwrap();
        let probed = report.probed().unwrap();
        assert_eq!(probed.sample_rate, 44_100);
        assert_eq!(probed.duration, Some(Duration::from_secs_f64(30.05)));
    }
}
