//! The encoding ladder and what packaging it produced.

use serde::{Deserialize, Serialize};

/// AAC-LC bitrates every track is encoded at, in kbps, lowest first.
pub const LADDER: [u32; 3] = [64, 128, 256];

/// AAC-LC, as HLS `CODECS` and DASH `codecs` name it (RFC 6381).
pub const AAC_LC: &str = "mp4a.40.2";

/// The target segment length, in seconds.
pub const SEGMENT_SECS: u32 = 6;

/// Where a rendition's files live under the track's prefix, e.g. `128k`.
pub fn rendition_dir(bitrate_kbps: u32) -> String {
    format!("{bitrate_kbps}k")
}

/// A transcoded track: its renditions, duration and loudness. Stored with the job, and
/// the source of every playlist and manifest (they are rendered, signed, per request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Packaged {
    pub duration_ms: u64,
    /// Integrated loudness (EBU R128), absent when the whole track is below the gate.
    pub loudness_lufs: Option<f64>,
    pub renditions: Vec<PackagedRendition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackagedRendition {
    pub bitrate_kbps: u32,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    /// The highest bitrate of any whole segment, in bits/s (HLS `BANDWIDTH`).
    pub peak_bandwidth: u64,
    /// Total bits over total duration (HLS `AVERAGE-BANDWIDTH`).
    pub average_bandwidth: u64,
    /// The directory under the track's prefix, e.g. `128k`.
    pub dir: String,
    /// The initialisation segment's file name within `dir`.
    pub init: String,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The file name within the rendition's directory.
    pub file: String,
    pub duration_us: u64,
    pub size_bytes: u64,
}

/// A media playlist as ffmpeg's HLS muxer writes it, reduced to what packaging needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPlaylist {
    pub init: String,
    /// File name and duration in microseconds, in order.
    pub segments: Vec<(String, u64)>,
}

/// Reads an fMP4 media playlist: its `EXT-X-MAP` and its `EXTINF` entries.
pub fn parse_media_playlist(text: &str) -> Result<MediaPlaylist, String> {
    let mut init = None;
    let mut segments = Vec::new();
    let mut pending_duration = None;
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        if let Some(map) = line.strip_prefix("#EXT-X-MAP:") {
            let uri = map
                .split(',')
                .find_map(|attribute| attribute.strip_prefix("URI="))
                .map(|uri| uri.trim_matches('"').to_owned())
                .ok_or_else(|| format!("EXT-X-MAP without a URI: {line}"))?;
            init = Some(uri);
        } else if let Some(info) = line.strip_prefix("#EXTINF:") {
            let seconds = info.split(',').next().unwrap_or_default();
            let seconds: f64 =
                seconds.parse().map_err(|_| format!("EXTINF without a duration: {line}"))?;
            if !seconds.is_finite() || seconds < 0.0 {
                return Err(format!("EXTINF with a negative duration: {line}"));
            }
            pending_duration = Some((seconds * 1_000_000.0).round() as u64);
        } else if !line.starts_with('#') {
            let duration = pending_duration
                .take()
                .ok_or_else(|| format!("segment {line} has no EXTINF before it"))?;
            segments.push((line.to_owned(), duration));
        }
    }
    let init = init.ok_or("the playlist has no EXT-X-MAP initialisation segment")?;
    if segments.is_empty() {
        return Err("the playlist has no segments".to_owned());
    }
    Ok(MediaPlaylist { init, segments })
}

/// `(peak, average)` bitrates in bits/s. Segments under a second (the tail) are left out
/// of the peak: their container overhead would overstate it; the average counts them all.
pub fn bandwidths(segments: &[Segment]) -> (u64, u64) {
    let bits_per_second = |bytes: u64, duration_us: u64| {
        (bytes * 8 * 1_000_000).checked_div(duration_us).unwrap_or_default()
    };
    let whole: Vec<&Segment> =
        segments.iter().filter(|segment| segment.duration_us >= 1_000_000).collect();
    let measured = if whole.is_empty() { segments.iter().collect() } else { whole };
    let peak = measured
        .iter()
        .map(|segment| bits_per_second(segment.size_bytes, segment.duration_us))
        .max()
        .unwrap_or_default();
    let bytes: u64 = segments.iter().map(|segment| segment.size_bytes).sum();
    let duration: u64 = segments.iter().map(|segment| segment.duration_us).sum();
    (peak, bits_per_second(bytes, duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG_PLAYLIST: &str = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI=\"init.mp4\"
#EXTINF:6.016000,
seg000.m4s
#EXTINF:5.994667,
seg001.m4s
#EXTINF:0.021333,
seg002.m4s
#EXT-X-ENDLIST
";

    #[test]
    fn reads_what_ffmpeg_writes() {
        let playlist = parse_media_playlist(FFMPEG_PLAYLIST).unwrap();
        assert_eq!(playlist.init, "init.mp4");
        assert_eq!(
            playlist.segments,
            [
                ("seg000.m4s".to_owned(), 6_016_000),
                ("seg001.m4s".to_owned(), 5_994_667),
                ("seg002.m4s".to_owned(), 21_333)
            ]
        );
    }

    #[test]
    fn refuses_playlists_it_cannot_package() {
        assert!(parse_media_playlist("#EXTM3U\n#EXTINF:6.0,\nseg0.m4s\n").is_err(), "no map");
        assert!(parse_media_playlist("#EXTM3U\n#EXT-X-MAP:URI=\"i.mp4\"\n").is_err(), "empty");
        assert!(parse_media_playlist("#EXT-X-MAP:URI=\"i.mp4\"\nseg0.m4s\n").is_err(), "no EXTINF");
        assert!(parse_media_playlist("#EXT-X-MAP:URI=\"i.mp4\"\n#EXTINF:x,\ns\n").is_err());
    }

    #[test]
    fn the_peak_ignores_a_short_tail_and_the_average_counts_everything() {
        let segment =
            |duration_us, size_bytes| Segment { file: String::new(), duration_us, size_bytes };
        let segments = [
            segment(6_000_000, 96_000),  // 128 kb/s
            segment(6_000_000, 120_000), // 160 kb/s
            segment(20_000, 2_000),      // 800 kb/s, but only 20 ms
        ];
        let (peak, average) = bandwidths(&segments);
        assert_eq!(peak, 160_000);
        assert_eq!(average, (218_000 * 8 * 1_000_000) / 12_020_000);
    }
}
