//! Whisper's input: the log-mel spectrogram of a 30 s window of 16 kHz audio, as OpenAI's
//! reference computes it (a 400-point Hann STFT every 160 samples, centred with reflected
//! padding; a Slaney mel filterbank; log10, floored 8 below the peak, scaled to about
//! [-1, 1]).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
/// Samples in one window the model hears: 30 s.
pub const WINDOW_SAMPLES: usize = 30 * SAMPLE_RATE;
/// Spectrogram frames in one window.
pub const WINDOW_FRAMES: usize = WINDOW_SAMPLES / HOP;

const N_BINS: usize = N_FFT / 2 + 1;

/// Computes log-mel spectrograms; built once, shared by every request.
pub struct MelSpectrogram {
    n_mels: usize,
    /// `[n_mels][N_BINS]`, row-major.
    filters: Vec<f32>,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl std::fmt::Debug for MelSpectrogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelSpectrogram").field("n_mels", &self.n_mels).finish()
    }
}

impl MelSpectrogram {
    pub fn new(n_mels: usize) -> Self {
        // Periodic Hann, as torch.hann_window gives.
        let window = (0..N_FFT)
            .map(|i| {
                let phase = std::f32::consts::TAU * i as f32 / N_FFT as f32;
                0.5 - 0.5 * phase.cos()
            })
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        Self { n_mels, filters: slaney_filterbank(n_mels), window, fft }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The spectrogram of one window: `samples` (at most [`WINDOW_SAMPLES`]) padded with
    /// silence to 30 s, as `[n_mels][WINDOW_FRAMES]`, row-major.
    pub fn window(&self, samples: &[f32]) -> Vec<f32> {
        self.window_frames(samples, WINDOW_FRAMES)
    }

    /// The first `frames` frames (at most [`WINDOW_FRAMES`]) of the window's spectrogram,
    /// `[n_mels][frames]`.
    pub fn window_frames(&self, samples: &[f32], frames: usize) -> Vec<f32> {
        let frames = frames.min(WINDOW_FRAMES);
        let samples = &samples[..samples.len().min(frames * HOP)];
        let mut padded = vec![0f32; frames * HOP];
        padded[..samples.len()].copy_from_slice(samples);
        self.spectrogram(&padded, frames)
    }

    fn spectrogram(&self, samples: &[f32], frames: usize) -> Vec<f32> {
        let power = self.power_frames(samples, frames);
        let mut mel = vec![0f32; self.n_mels * frames];
        for (frame, spectrum) in power.chunks_exact(N_BINS).enumerate() {
            for (m, filter) in self.filters.chunks_exact(N_BINS).enumerate() {
                let energy: f32 = filter.iter().zip(spectrum).map(|(w, p)| w * p).sum();
                mel[m * frames + frame] = energy.max(1e-10).log10();
            }
        }
        let peak = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for value in &mut mel {
            *value = (value.max(peak - 8.0) + 4.0) / 4.0;
        }
        mel
    }

    /// `|STFT|²` of the first `frames` frames of the centred (reflect-padded) signal.
    fn power_frames(&self, samples: &[f32], frames: usize) -> Vec<f32> {
        let half = N_FFT / 2;
        let at = |index: isize| -> f32 {
            // Reflection without repeating the edge, as numpy's "reflect" pads.
            let len = samples.len() as isize;
            let mut i = index;
            if i < 0 {
                i = -i;
            }
            if i >= len {
                i = 2 * (len - 1) - i;
            }
            samples.get(i.clamp(0, len - 1) as usize).copied().unwrap_or(0.0)
        };
        let mut input = self.fft.make_input_vec();
        let mut output = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = Vec::with_capacity(frames * N_BINS);
        for frame in 0..frames {
            let start = (frame * HOP) as isize - half as isize;
            for (i, slot) in input.iter_mut().enumerate() {
                *slot = at(start + i as isize) * self.window[i];
            }
            // The lengths are the planner's own, so this cannot fail.
            let _ = self.fft.process_with_scratch(&mut input, &mut output, &mut scratch);
            power.extend(output.iter().map(|c| c.norm_sqr()));
        }
        power
    }

    /// The filterbank, `[n_mels][N_FFT / 2 + 1]`, for checks against other implementations.
    pub fn filters(&self) -> &[f32] {
        &self.filters
    }
}

fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ { min_log_mel + (hz / MIN_LOG_HZ).ln() / log_step } else { hz / F_SP }
}

fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (log_step * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// librosa's `filters.mel(sr=16000, n_fft=400, n_mels)`: Slaney's mel scale and area
/// normalisation, which Whisper was trained on.
fn slaney_filterbank(n_mels: usize) -> Vec<f32> {
    let nyquist = SAMPLE_RATE as f64 / 2.0;
    let bin_hz: Vec<f64> = (0..N_BINS).map(|i| i as f64 * nyquist / (N_BINS - 1) as f64).collect();
    let (low, high) = (hz_to_mel(0.0), hz_to_mel(nyquist));
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(low + (high - low) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut filters = vec![0f32; n_mels * N_BINS];
    for m in 0..n_mels {
        let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
        let norm = 2.0 / (right - left);
        for (bin, &hz) in bin_hz.iter().enumerate() {
            let rising = (hz - left) / (centre - left);
            let falling = (right - hz) / (right - centre);
            filters[m * N_BINS + bin] = (rising.min(falling).max(0.0) * norm) as f32;
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mel_scale_round_trips_on_both_sides_of_its_knee() {
        for hz in [0.0, 300.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6, "{hz}");
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn filters_tile_the_spectrum_with_slaney_areas() {
        let mel = MelSpectrogram::new(80);
        let filters = mel.filters();
        assert_eq!(filters.len(), 80 * N_BINS);
        // Every filter covers some bin, and none is negative.
        for row in filters.chunks_exact(N_BINS) {
            assert!(row.iter().any(|w| *w > 0.0));
            assert!(row.iter().all(|w| *w >= 0.0));
        }
        // librosa's first filter peaks at 0.02486 (its second bin); the constant is theirs.
        assert!((filters[1] - 0.024_862).abs() < 1e-4, "{}", filters[1]);
    }

    #[test]
    fn a_tone_lights_the_band_that_holds_its_pitch() {
        let mel = MelSpectrogram::new(80);
        let tone: Vec<f32> = (0..SAMPLE_RATE)
            .map(|i| (std::f32::consts::TAU * 1000.0 * i as f32 / SAMPLE_RATE as f32).sin() * 0.5)
            .collect();
        let spectrogram = mel.window(&tone);
        assert_eq!(spectrogram.len(), 80 * WINDOW_FRAMES);
        let frame = 50;
        let loudest = (0..80)
            .max_by(|a, b| {
                spectrogram[a * WINDOW_FRAMES + frame]
                    .total_cmp(&spectrogram[b * WINDOW_FRAMES + frame])
            })
            .expect("bands");
        let (low, high) = (
            mel_to_hz(hz_to_mel(8000.0) * loudest as f64 / 81.0),
            mel_to_hz(hz_to_mel(8000.0) * (loudest + 2) as f64 / 81.0),
        );
        assert!((low..=high).contains(&1000.0), "band {loudest} spans {low}..{high} Hz");
        // Past the tone's second, only the floor is left.
        let floor = spectrogram[loudest * WINDOW_FRAMES + 2000];
        assert!(floor < spectrogram[loudest * WINDOW_FRAMES + frame] - 1.0);
    }
}
