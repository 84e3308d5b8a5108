/// The audio formats the catalog takes, recognised from the first bytes of the content,
/// never from a file name or a declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Mp3,
    Flac,
    OggVorbis,
    Wav,
    M4a,
}

impl AudioFormat {
    /// How many leading bytes [`AudioFormat::sniff`] needs.
    pub const SNIFF_LEN: usize = 64;

    pub fn sniff(head: &[u8]) -> Option<Self> {
        let at =
            |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
        if at(0, b"fLaC") {
            Some(Self::Flac)
        } else if at(0, b"OggS") {
            // Vorbis identification header: packet type 1 then "vorbis", after the page header.
            head.windows(7).any(|w| w == b"\x01vorbis").then_some(Self::OggVorbis)
        } else if at(0, b"RIFF") && at(8, b"WAVE") {
            Some(Self::Wav)
        } else if at(4, b"ftyp") {
            Some(Self::M4a)
        } else if at(0, b"ID3") || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0) {
            Some(Self::Mp3)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Flac => "flac",
            Self::OggVorbis => "ogg",
            Self::Wav => "wav",
            Self::M4a => "m4a",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Mp3, Self::Flac, Self::OggVorbis, Self::Wav, Self::M4a]
            .into_iter()
            .find(|f| f.as_str() == raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_by_their_content() {
        assert_eq!(AudioFormat::sniff(b"fLaC\0\0\0\x22"), Some(AudioFormat::Flac));
        assert_eq!(AudioFormat::sniff(b"RIFF\x24\0\0\0WAVEfmt "), Some(AudioFormat::Wav));
        assert_eq!(AudioFormat::sniff(b"ID3\x04\0\0\0\0\0\0"), Some(AudioFormat::Mp3));
        assert_eq!(AudioFormat::sniff(&[0xFF, 0xFB, 0x90, 0x64]), Some(AudioFormat::Mp3));
        assert_eq!(AudioFormat::sniff(b"\0\0\0\x20ftypM4A "), Some(AudioFormat::M4a));
        let mut ogg = b"OggS\0\x02".to_vec();
        ogg.extend_from_slice(&[0; 22]);
        ogg.extend_from_slice(b"\x01vorbis");
        assert_eq!(AudioFormat::sniff(&ogg), Some(AudioFormat::OggVorbis));
    }

    #[test]
    fn anything_else_is_refused() {
        for junk in
            [&b""[..], b"hello world", b"%PDF-1.7", b"\x89PNG\r\n\x1a\n", b"OggS\0\x02 opus"]
        {
            assert_eq!(AudioFormat::sniff(junk), None, "{junk:?}");
        }
    }
}
