//! Playlists and manifests, rendered from a track's packaging. Every URI inside them is
//! relative (so the same text serves behind any host or CDN) and carries its own signature.

use std::fmt::Write as _;

use super::{Packaged, PackagedRendition};

/// The HLS master playlist's file name under a track's prefix.
pub const MASTER: &str = "master.m3u8";
/// The DASH manifest's file name under a track's prefix.
pub const MPD: &str = "manifest.mpd";
/// A rendition's media playlist's file name within its directory.
pub const MEDIA_PLAYLIST: &str = "index.m3u8";

/// Signs a path relative to the track's prefix (e.g. `128k/seg001.m4s`), returning the
/// query string that authorises it.
pub trait Sign {
    fn query(&self, path_in_track: &str) -> String;
}

impl<F: Fn(&str) -> String> Sign for F {
    fn query(&self, path_in_track: &str) -> String {
        self(path_in_track)
    }
}

/// What a request under a track's prefix names.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaFile<'a> {
    Master,
    Mpd,
    MediaPlaylist(&'a PackagedRendition),
    /// An initialisation or media segment: its rendition and its object key under the track.
    Segment(String),
}

impl Packaged {
    /// Resolves a path under the track's prefix; `None` for anything the packaging does not
    /// have, so arbitrary names never reach object storage.
    pub fn resolve(&self, path: &str) -> Option<MediaFile<'_>> {
        match path {
            MASTER => return Some(MediaFile::Master),
            MPD => return Some(MediaFile::Mpd),
            _ => {}
        }
        let (dir, file) = path.split_once('/')?;
        let rendition = self.renditions.iter().find(|r| r.dir == dir)?;
        if file == MEDIA_PLAYLIST {
            return Some(MediaFile::MediaPlaylist(rendition));
        }
        let known =
            file == rendition.init || rendition.segments.iter().any(|segment| segment.file == file);
        known.then(|| MediaFile::Segment(path.to_owned()))
    }

    /// The HLS master playlist: one variant per rendition with `BANDWIDTH`,
    /// `AVERAGE-BANDWIDTH` and `CODECS`.
    pub fn master_playlist(&self, sign: &impl Sign) -> String {
        let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        for rendition in &self.renditions {
            let path = format!("{}/{MEDIA_PLAYLIST}", rendition.dir);
            let _ = write!(
                text,
                "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"\n{path}?{}\n",
                rendition.peak_bandwidth.max(rendition.average_bandwidth),
                rendition.average_bandwidth,
                rendition.codec,
                sign.query(&path),
            );
        }
        text
    }

    /// A rendition's media playlist; its URIs are relative to the rendition's directory.
    pub fn media_playlist(rendition: &PackagedRendition, sign: &impl Sign) -> String {
        let target = rendition
            .segments
            .iter()
            .map(|segment| segment.duration_us.div_ceil(1_000_000))
            .max()
            .unwrap_or(1);
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        );
        let in_track = |file: &str| format!("{}/{file}", rendition.dir);
        let _ = writeln!(
            text,
            "#EXT-X-MAP:URI=\"{}?{}\"",
            rendition.init,
            sign.query(&in_track(&rendition.init))
        );
        for segment in &rendition.segments {
            let seconds = segment.duration_us / 1_000_000;
            let micros = segment.duration_us % 1_000_000;
            let _ = write!(
                text,
                "#EXTINF:{seconds}.{micros:06},\n{}?{}\n",
                segment.file,
                sign.query(&in_track(&segment.file))
            );
        }
        text.push_str("#EXT-X-ENDLIST\n");
        text
    }

    /// A static DASH manifest over the same fMP4 segments: one audio adaptation set, a
    /// representation per rendition, each with an explicit, signed segment list.
    pub fn mpd(&self, sign: &impl Sign) -> String {
        let mut text = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
             profiles=\"urn:mpeg:dash:profile:isoff-main:2011\" type=\"static\" \
             mediaPresentationDuration=\"{}\" minBufferTime=\"PT2S\">\n\
             \x20 <Period id=\"0\" start=\"PT0S\">\n\
             \x20   <AdaptationSet id=\"0\" contentType=\"audio\" mimeType=\"audio/mp4\" \
             segmentAlignment=\"true\" startWithSAP=\"1\" lang=\"und\">\n",
            iso_duration(self.duration_ms)
        );
        for rendition in &self.renditions {
            let in_track = |file: &str| format!("{}/{file}", rendition.dir);
            let uri = |file: &str| {
                let path = in_track(file);
                xml_escape(&format!("{path}?{}", sign.query(&path)))
            };
            let _ = write!(
                text,
                "      <Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" \
                 audioSamplingRate=\"{}\">\n\
                 \x20       <AudioChannelConfiguration \
                 schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" \
                 value=\"{}\"/>\n\
                 \x20       <SegmentList timescale=\"1000000\">\n\
                 \x20         <Initialization sourceURL=\"{}\"/>\n\
                 \x20         <SegmentTimeline>\n",
                rendition.dir,
                rendition.peak_bandwidth.max(rendition.average_bandwidth),
                rendition.codec,
                rendition.sample_rate,
                rendition.channels,
                uri(&rendition.init),
            );
            let mut start = 0_u64;
            for segment in &rendition.segments {
                let _ =
                    writeln!(text, "            <S t=\"{start}\" d=\"{}\"/>", segment.duration_us);
                start += segment.duration_us;
            }
            text.push_str("          </SegmentTimeline>\n");
            for segment in &rendition.segments {
                let _ = writeln!(text, "          <SegmentURL media=\"{}\"/>", uri(&segment.file));
            }
            text.push_str("        </SegmentList>\n      </Representation>\n");
        }
        text.push_str("    </AdaptationSet>\n  </Period>\n</MPD>\n");
        text
    }
}

/// An ISO 8601 duration, e.g. `PT3M7.250S`.
fn iso_duration(ms: u64) -> String {
    let minutes = ms / 60_000;
    let seconds = (ms % 60_000) / 1_000;
    let millis = ms % 1_000;
    if minutes > 0 {
        format!("PT{minutes}M{seconds}.{millis:03}S")
    } else {
        format!("PT{seconds}.{millis:03}S")
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    fn packaged() -> Packaged {
        let rendition = |kbps: u32| PackagedRendition {
            bitrate_kbps: kbps,
            codec: "mp4a.40.2".into(),
            sample_rate: 44_100,
            channels: 2,
            peak_bandwidth: u64::from(kbps) * 1_100,
            average_bandwidth: u64::from(kbps) * 1_000,
            dir: format!("{kbps}k"),
            init: "init.mp4".into(),
            segments: vec![
                Segment { file: "seg000.m4s".into(), duration_us: 6_016_000, size_bytes: 1 },
                Segment { file: "seg001.m4s".into(), duration_us: 4_500_000, size_bytes: 1 },
            ],
        };
        Packaged {
            duration_ms: 10_516,
            loudness_lufs: Some(-14.0),
            renditions: vec![rendition(64), rendition(128), rendition(256)],
        }
    }

    fn sign(path: &str) -> String {
        format!("sig={}", path.replace('/', "~"))
    }

    #[test]
    fn the_master_lists_every_variant_with_bandwidth_and_codecs() {
        let master = packaged().master_playlist(&sign);
        let variants: Vec<&str> =
            master.lines().filter(|line| line.starts_with("#EXT-X-STREAM-INF")).collect();
        assert_eq!(variants.len(), 3);
        assert_eq!(
            variants[1],
            "#EXT-X-STREAM-INF:BANDWIDTH=140800,AVERAGE-BANDWIDTH=128000,CODECS=\"mp4a.40.2\""
        );
        assert!(master.contains("\n128k/index.m3u8?sig=128k~index.m3u8\n"), "{master}");
    }

    #[test]
    fn media_playlists_sign_the_map_and_every_segment() {
        let packaged = packaged();
        let playlist = Packaged::media_playlist(&packaged.renditions[0], &sign);
        assert!(playlist.contains("#EXT-X-TARGETDURATION:7\n"), "{playlist}");
        assert!(playlist.contains("#EXT-X-MAP:URI=\"init.mp4?sig=64k~init.mp4\"\n"));
        assert!(playlist.contains("#EXTINF:6.016000,\nseg000.m4s?sig=64k~seg000.m4s\n"));
        assert!(playlist.contains("#EXTINF:4.500000,\nseg001.m4s?sig=64k~seg001.m4s\n"));
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn the_mpd_lists_signed_segments_with_their_timeline() {
        let mpd = packaged().mpd(&|path: &str| format!("a=1&b={path}"));
        assert!(mpd.contains("mediaPresentationDuration=\"PT10.516S\""), "{mpd}");
        assert_eq!(mpd.matches("<Representation ").count(), 3);
        assert!(
            mpd.contains("<Initialization sourceURL=\"256k/init.mp4?a=1&amp;b=256k/init.mp4\"/>")
        );
        assert!(mpd.contains("<S t=\"6016000\" d=\"4500000\"/>"));
        assert!(mpd.contains("<SegmentURL media=\"64k/seg001.m4s?a=1&amp;b=64k/seg001.m4s\"/>"));
    }

    #[test]
    fn only_packaged_files_resolve() {
        let packaged = packaged();
        assert_eq!(packaged.resolve("master.m3u8"), Some(MediaFile::Master));
        assert_eq!(packaged.resolve("manifest.mpd"), Some(MediaFile::Mpd));
        assert!(
            matches!(packaged.resolve("64k/index.m3u8"), Some(MediaFile::MediaPlaylist(r)) if r.bitrate_kbps == 64)
        );
        assert_eq!(
            packaged.resolve("128k/seg001.m4s"),
            Some(MediaFile::Segment("128k/seg001.m4s".into()))
        );
        for unknown in ["128k/seg999.m4s", "512k/init.mp4", "../etc/passwd", "128k", "", "x/y/z"] {
            assert_eq!(packaged.resolve(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn durations_are_iso_8601() {
        assert_eq!(iso_duration(187_250), "PT3M7.250S");
        assert_eq!(iso_duration(999), "PT0.999S");
    }
}
