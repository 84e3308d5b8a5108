//! Audio in: any WAV, MP3, Ogg Vorbis or FLAC body, recognised by its content, decoded in
//! process, mixed down to mono and resampled to the 16 kHz Whisper hears. Audio out: WAV.

use std::io::Cursor;

use bytes::Bytes;
use rubato::{FftFixedIn, Resampler as _};
use symphonia::core::{
    audio::SampleBuffer,
    codecs::{CODEC_TYPE_NULL, DecoderOptions},
    errors::Error as SymphoniaError,
    formats::FormatOptions,
    io::{MediaSourceStream, MediaSourceStreamOptions},
    meta::MetadataOptions,
    probe::Hint,
};

/// The sample rate the speech model hears.
pub const SPEECH_RATE: u32 = 16_000;

/// Audio shorter than this holds no word (a truncated file, say) and is refused.
pub const MIN_SPEECH_MS: u64 = 100;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AudioError {
    #[error("the body is empty: send the audio itself (WAV, MP3, Ogg Vorbis or FLAC)")]
    Empty,
    #[error("the body is not audio this service can decode (WAV, MP3, Ogg Vorbis or FLAC): {0}")]
    Undecodable(String),
    #[error("the audio is shorter than {MIN_SPEECH_MS} ms: too short to hold a word")]
    TooShort,
    #[error("the audio is longer than {max_secs} s")]
    TooLong { max_secs: u32 },
}

/// Mono speech at [`SPEECH_RATE`].
#[derive(Debug, Clone)]
pub struct Speech {
    pub samples: Vec<f32>,
}

impl Speech {
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(SPEECH_RATE)
    }
}

/// Decodes `body` into mono 16 kHz speech. Decoding stops as soon as the audio is longer
/// than `max_secs`, so a long upload costs no more than a short one.
pub fn decode_speech(body: Bytes, max_secs: u32) -> Result<Speech, AudioError> {
    if body.is_empty() {
        return Err(AudioError::Empty);
    }
    let (mono, rate) = decode_mono(body, max_secs)?;
    if (mono.len() as u64) * 1000 < MIN_SPEECH_MS * u64::from(rate) {
        return Err(AudioError::TooShort);
    }
    let samples = resample(&mono, rate, SPEECH_RATE).map_err(AudioError::Undecodable)?;
    Ok(Speech { samples })
}

fn decode_mono(body: Bytes, max_secs: u32) -> Result<(Vec<f32>, u32), AudioError> {
    let undecodable = |error: SymphoniaError| AudioError::Undecodable(error.to_string());
    let source =
        MediaSourceStream::new(Box::new(Cursor::new(body)), MediaSourceStreamOptions::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            source,
            &FormatOptions { enable_gapless: true, ..FormatOptions::default() },
            &MetadataOptions::default(),
        )
        .map_err(undecodable)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::Undecodable("it holds no audio track".into()))?;
    let track_id = track.id;
    let rate = track
        .codec_params
        .sample_rate
        .filter(|rate| (1_000..=384_000).contains(rate))
        .ok_or_else(|| AudioError::Undecodable("it names no usable sample rate".into()))?;
    let max_frames = u64::from(max_secs) * u64::from(rate);
    if track.codec_params.n_frames.is_some_and(|frames| frames > max_frames) {
        return Err(AudioError::TooLong { max_secs });
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(undecodable)?;
    let mut mono = Vec::new();
    let mut buffer: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(error))
                if error.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(error) => return Err(undecodable(error)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // A damaged packet is skipped, as players do; a file of nothing but damage
            // ends up empty and is refused below.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(error) => return Err(undecodable(error)),
        };
        let spec = *decoded.spec();
        let channels = spec.channels.count().max(1);
        let buffer =
            buffer.get_or_insert_with(|| SampleBuffer::new(decoded.capacity() as u64, spec));
        if buffer.capacity() < decoded.capacity() * channels {
            *buffer = SampleBuffer::new(decoded.capacity() as u64, spec);
        }
        buffer.copy_interleaved_ref(decoded);
        let scale = 1.0 / channels as f32;
        mono.extend(
            buffer.samples().chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() * scale),
        );
        if mono.len() as u64 > max_frames {
            return Err(AudioError::TooLong { max_secs });
        }
    }
    Ok((mono, rate))
}

/// Resamples mono audio from `from` Hz to `to` Hz (band-limited, FFT based).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to {
        return Ok(samples.to_vec());
    }
    const CHUNK: usize = 1024;
    let mut resampler = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1)
        .map_err(|error| error.to_string())?;
    let expected = (samples.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(expected + delay + CHUNK);
    let mut chunks = samples.chunks_exact(CHUNK);
    for chunk in &mut chunks {
        let resampled = resampler.process(&[chunk], None).map_err(|e| e.to_string())?;
        out.extend_from_slice(&resampled[0]);
    }
    let rest = chunks.remainder();
    // The tail, then enough silence to flush the resampler's delay.
    let mut tail = rest.to_vec();
    while out.len() < expected + delay {
        tail.resize(CHUNK, 0.0);
        let resampled = resampler.process(&[&tail], None).map_err(|e| e.to_string())?;
        out.extend_from_slice(&resampled[0]);
        tail.clear();
    }
    Ok(out.into_iter().skip(delay).take(expected).collect())
}

/// 16-bit PCM WAV of mono `samples` at `rate` Hz.
pub fn wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX - 36);
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, secs: f32) -> Vec<i16> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| {
                let t = i as f32 / rate as f32;
                ((t * 440.0 * std::f32::consts::TAU).sin() * 12_000.0) as i16
            })
            .collect()
    }

    #[test]
    fn a_wav_at_another_rate_comes_out_as_16_khz_mono_of_the_same_length() {
        let body = Bytes::from(wav(&tone(44_100, 1.5), 44_100));
        let speech = decode_speech(body, 60).expect("decodes");
        assert_eq!(speech.samples.len(), 24_000);
        assert_eq!(speech.duration_ms(), 1_500);
        let peak = speech.samples.iter().fold(0f32, |peak, s| peak.max(s.abs()));
        assert!((0.3..0.4).contains(&peak), "the tone keeps its level: {peak}");
    }

    #[test]
    fn audio_past_the_limit_is_too_long() {
        let body = Bytes::from(wav(&tone(8_000, 3.0), 8_000));
        assert_eq!(
            decode_speech(body, 2).expect_err("too long"),
            AudioError::TooLong { max_secs: 2 }
        );
    }

    #[test]
    fn empty_and_foreign_bodies_are_refused() {
        assert_eq!(decode_speech(Bytes::new(), 60).expect_err("empty"), AudioError::Empty);
        let text = Bytes::from_static(b"{\"text\": \"not audio\"}");
        assert!(matches!(decode_speech(text, 60), Err(AudioError::Undecodable(_))));
        let mut truncated = wav(&tone(16_000, 1.0), 16_000);
        truncated.truncate(30);
        assert!(matches!(
            decode_speech(Bytes::from(truncated), 60),
            Err(AudioError::Undecodable(_) | AudioError::TooShort)
        ));
    }
}
