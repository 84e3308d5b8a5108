//! Whisper on candle: windows of speech in, text out, several windows in one forward pass.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::{
    ct2::{Ct2Error, Ct2Model},
    decoder::{SelfCache, TextDecoder, log_probs},
    encoder::AudioEncoder,
    mel::{HOP, MelSpectrogram, WINDOW_FRAMES},
};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the model file: {0}")]
    Model(#[from] Ct2Error),
    #[error("the tokenizer: {0}")]
    Tokenizer(String),
    #[error("building the model: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Decoding settings from the model's `config.json`.
#[derive(Debug, Default, Deserialize)]
struct DecodingConfig {
    #[serde(default)]
    suppress_ids: Vec<u32>,
    #[serde(default)]
    suppress_ids_begin: Vec<u32>,
}

/// The tokens that frame a transcript.
#[derive(Debug, Clone, Copy)]
struct Special {
    start_of_transcript: u32,
    end_of_text: u32,
    no_timestamps: u32,
    /// Multilingual models are told the language and the task; English-only ones are not.
    english_transcribe: Option<(u32, u32)>,
}

/// A loaded Whisper with its tokenizer: turns windows of 16 kHz speech into text.
pub struct WhisperModel {
    encoder: AudioEncoder,
    decoder: TextDecoder,
    mel: MelSpectrogram,
    tokenizer: Tokenizer,
    device: Device,
    special: Special,
    /// Added to the logits at every step: 0, or -inf for tokens never to emit.
    suppress: Vec<f32>,
    /// Added at the first step as well: no transcript starts with a blank or ends at once.
    suppress_begin: Vec<f32>,
    max_tokens: usize,
    beam_size: usize,
    parameters: usize,
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel").field("parameters", &self.parameters).finish()
    }
}

impl WhisperModel {
    /// Loads a CTranslate2 Whisper directory (`model.bin`, `tokenizer.json`, `config.json`).
    pub fn load(dir: &Path, device: &Device, beam_size: usize) -> Result<Self, LoadError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path)
                .map_err(|source| LoadError::Read { path: path.display().to_string(), source })
        };
        let ct2 = Ct2Model::parse(read("model.bin")?)?;
        let config = ct2.config()?;
        let weights = ct2.candle_weights(DType::F32, device)?;
        drop(ct2);
        let parameters = weights.values().map(Tensor::elem_count).sum();
        let builder = VarBuilder::from_tensors(weights, DType::F32, device);
        let encoder = AudioEncoder::load(builder.pp("model.encoder"), &config)?;
        let decoder = TextDecoder::load(builder.pp("model.decoder"), &config)?;
        let tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|error| LoadError::Tokenizer(error.to_string()))?;
        let decoding: DecodingConfig = read("config.json")
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let token = |text: &str| {
            tokenizer
                .token_to_id(text)
                .ok_or_else(|| LoadError::Tokenizer(format!("it has no {text} token")))
        };
        // OpenAI's rule: a vocabulary this large is a multilingual model's.
        let multilingual = config.vocab_size >= 51_865;
        let special = Special {
            start_of_transcript: token("<|startoftranscript|>")?,
            end_of_text: token("<|endoftext|>")?,
            no_timestamps: token("<|notimestamps|>")?,
            english_transcribe: if multilingual {
                Some((token("<|en|>")?, token("<|transcribe|>")?))
            } else {
                None
            },
        };
        let vocab = config.vocab_size;
        let mut mask = vec![0f32; vocab];
        // No special token, timestamps included, is text; the end of text is the exception.
        for (id, slot) in mask.iter_mut().enumerate().skip(special.start_of_transcript as usize) {
            if id as u32 != special.end_of_text {
                *slot = f32::NEG_INFINITY;
            }
        }
        for id in &decoding.suppress_ids {
            if let Some(slot) = mask.get_mut(*id as usize) {
                *slot = f32::NEG_INFINITY;
            }
        }
        let mut begin = mask.clone();
        for id in &decoding.suppress_ids_begin {
            if let Some(slot) = begin.get_mut(*id as usize) {
                *slot = f32::NEG_INFINITY;
            }
        }
        Ok(Self {
            mel: MelSpectrogram::new(config.num_mel_bins),
            suppress: mask,
            suppress_begin: begin,
            max_tokens: config.max_target_positions / 2,
            beam_size: beam_size.max(1),
            encoder,
            decoder,
            tokenizer,
            device: device.clone(),
            special,
            parameters,
        })
    }

    pub fn parameters(&self) -> usize {
        self.parameters
    }

    /// Transcribes each window (at most 30 s of 16 kHz samples): one encoder pass for all of
    /// them, then beam search over all their beams at once (greedy with a beam of 1). The
    /// encoder hears only as much of the window as the longest audio needs
    /// ([`context_frames`]); a transcript that comes back repeating itself, Whisper's way
    /// of failing on a short context, is transcribed again from the whole 30 s window.
    pub fn transcribe(&mut self, windows: &[&[f32]]) -> candle_core::Result<Vec<String>> {
        let longest = windows.iter().map(|window| window.len()).max().unwrap_or(0);
        let frames = context_frames(longest);
        let mut texts = self.transcribe_with_context(windows, frames)?;
        if frames < WINDOW_FRAMES {
            let repeating: Vec<usize> =
                (0..texts.len()).filter(|i| repeats_itself(&texts[*i])).collect();
            if !repeating.is_empty() {
                metrics::counter!("ai_asr_full_context_retries_total")
                    .increment(repeating.len() as u64);
                let again: Vec<&[f32]> = repeating.iter().map(|i| windows[*i]).collect();
                let retried = self.transcribe_with_context(&again, WINDOW_FRAMES)?;
                for (i, text) in repeating.into_iter().zip(retried) {
                    texts[i] = text;
                }
            }
        }
        Ok(texts)
    }

    fn transcribe_with_context(
        &mut self,
        windows: &[&[f32]],
        frames: usize,
    ) -> candle_core::Result<Vec<String>> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let batch = windows.len();
        let n_mels = self.mel.n_mels();
        let mut features = Vec::with_capacity(batch * n_mels * frames);
        for window in windows {
            features.extend(self.mel.window_frames(window, frames));
        }
        let mel = Tensor::from_vec(features, (batch, n_mels, frames), &self.device)?;
        let audio = self.encoder.forward(&mel)?;
        self.decode(&audio, batch)
    }

    /// Beam search as Whisper's reference does it: per window, the `beam_size` best
    /// sequences by summed log-probability go on; a sequence that ends is kept aside; the
    /// search stops when `beam_size` have ended; the best by mean log-probability wins.
    /// Every window's beams are decoded together, one new token each per step.
    fn decode(&mut self, audio: &Tensor, windows: usize) -> candle_core::Result<Vec<String>> {
        let beam = self.beam_size;
        let rows = windows * beam;
        let end = self.special.end_of_text;
        let context = self.decoder.audio_context(audio)?;
        let mut cache = SelfCache::default();
        let mut prompt = vec![self.special.start_of_transcript];
        if let Some((english, transcribe)) = self.special.english_transcribe {
            prompt.extend([english, transcribe]);
        }
        prompt.push(self.special.no_timestamps);
        let mut feed = Tensor::from_vec(
            prompt.iter().copied().cycle().take(rows * prompt.len()).collect(),
            (rows, prompt.len()),
            &self.device,
        )?;
        let mut searches: Vec<Search> = (0..windows).map(|_| Search::new()).collect();
        for step in 0..self.max_tokens {
            let logits = self.decoder.step(&feed, &context, &mut cache)?;
            let mask = if step == 0 { &self.suppress_begin } else { &self.suppress };
            let log_probs = log_probs(logits, mask);
            let mut order = Vec::with_capacity(rows);
            let mut next = Vec::with_capacity(rows);
            for (window, search) in searches.iter_mut().enumerate() {
                let first_row = window * beam;
                let parents = if search.done {
                    Vec::new()
                } else {
                    // At the first step every row of a window holds the same prompt.
                    let live = if step == 0 { 1 } else { search.live.len() };
                    search.advance(&log_probs[first_row..first_row + live], beam, end)
                };
                for k in 0..beam {
                    // A finished window's rows stay as they are, fed its end; nothing reads them.
                    match parents.get(k).or(parents.first()) {
                        Some(parent) if !search.done => {
                            order.push((first_row + parent) as u32);
                            let live = &search.live[k.min(search.live.len() - 1)].0;
                            next.push(live.last().copied().unwrap_or(end));
                        }
                        _ => {
                            order.push((first_row + k) as u32);
                            next.push(end);
                        }
                    }
                }
            }
            if searches.iter().all(|search| search.done) {
                break;
            }
            cache.reorder(&Tensor::new(order, &self.device)?)?;
            feed = Tensor::from_vec(next, (rows, 1), &self.device)?;
        }
        Ok(searches
            .into_iter()
            .map(|search| {
                let best = search.best();
                self.tokenizer.decode(&best, true).unwrap_or_default().trim().to_owned()
            })
            .collect())
    }
}

/// The spectrogram frames the encoder hears for `samples` of audio: the audio and at
/// least 5 s of the silence after it, never under 10 s, in steps of 2 s, at most the whole
/// 30 s window. The encoder's cost grows with the square of its context, so a 3 s request
/// costs a fraction of a padded 30 s window. Less silence than that, and Whisper (trained
/// on 30 s windows) takes to repeating what it heard.
fn context_frames(samples: usize) -> usize {
    const STEP: usize = 200;
    const MIN: usize = 1_000;
    (samples / HOP + 500).max(MIN).div_ceil(STEP).saturating_mul(STEP).min(WINDOW_FRAMES)
}

/// Whether a transcript says the same three or more words twice in a row ("add this track.
/// add this track."): a hallucination, not speech.
fn repeats_itself(text: &str) -> bool {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|word| word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|word| !word.is_empty())
        .collect();
    (3..=words.len() / 2).any(|block| {
        (0..=words.len() - 2 * block)
            .any(|start| words[start..start + block] == words[start + block..start + 2 * block])
    })
}

/// One window's beam search.
struct Search {
    /// Sequences still going, with their summed log-probabilities.
    live: Vec<(Vec<u32>, f32)>,
    /// Sequences that ended (without their end token), with theirs.
    finished: Vec<(Vec<u32>, f32)>,
    done: bool,
}

impl Search {
    fn new() -> Self {
        Self { live: vec![(Vec::new(), 0.0)], finished: Vec::new(), done: false }
    }

    /// Extends the live sequences by the rows' log-probabilities (one row per sequence);
    /// returns, for each new live sequence, the index of the one it extends.
    fn advance(&mut self, rows: &[Vec<f32>], beam: usize, end: u32) -> Vec<usize> {
        let mut candidates: Vec<(usize, u32, f32)> = Vec::with_capacity(rows.len() * (beam + 1));
        for (k, row) in rows.iter().enumerate() {
            let base = self.live[k].1;
            for token in top_tokens(row, beam + 1) {
                candidates.push((k, token, base + row[token as usize]));
            }
        }
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mut next = Vec::with_capacity(beam);
        let mut parents = Vec::with_capacity(beam);
        for (k, token, score) in candidates {
            if token == end {
                if self.finished.len() < beam {
                    self.finished.push((self.live[k].0.clone(), score));
                }
            } else {
                let mut tokens = self.live[k].0.clone();
                tokens.push(token);
                next.push((tokens, score));
                parents.push(k);
            }
            if next.len() == beam {
                break;
            }
        }
        self.live = next;
        self.done = self.finished.len() >= beam || self.live.is_empty();
        parents
    }

    /// The winner: the ended (or, if none ended, live) sequence of best mean log-probability.
    fn best(self) -> Vec<u32> {
        let pool = if self.finished.is_empty() { self.live } else { self.finished };
        pool.into_iter()
            .max_by(|a, b| {
                let mean = |(tokens, score): &(Vec<u32>, f32)| score / tokens.len().max(1) as f32;
                mean(a).total_cmp(&mean(b))
            })
            .map(|(tokens, _)| tokens)
            .unwrap_or_default()
    }
}

/// The `count` most likely tokens of a row, best first, in one pass over it.
fn top_tokens(row: &[f32], count: usize) -> Vec<u32> {
    let mut best: Vec<u32> = Vec::with_capacity(count + 1);
    for (token, value) in row.iter().enumerate() {
        let better =
            best.len() < count || best.last().is_some_and(|last| *value > row[*last as usize]);
        if better && value.is_finite() {
            let at = best.partition_point(|kept| row[*kept as usize] >= *value);
            best.insert(at, token as u32);
            best.truncate(count);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row where `likely` tokens have the given log-probabilities and the rest -20.
    fn row(likely: &[(u32, f32)]) -> Vec<f32> {
        let mut row = vec![-20.0; 10];
        for (token, log_prob) in likely {
            row[*token as usize] = *log_prob;
        }
        row
    }

    #[test]
    fn a_transcript_saying_the_same_words_twice_in_a_row_repeats_itself() {
        assert!(repeats_itself(
            "Add this track to your favorites. Add this track to your favorites."
        ));
        assert!(repeats_itself("so what now so what now"), "three words twice");
        assert!(!repeats_itself("play kind of blue by miles davis"));
        assert!(!repeats_itself("la la"), "two words are allowed");
        assert!(!repeats_itself(""));
    }

    #[test]
    fn short_audio_gets_a_short_context_and_long_audio_the_whole_window() {
        assert_eq!(context_frames(16_000), 1_000, "1 s of audio: 10 s");
        assert_eq!(context_frames(8 * 16_000), 1_400, "8 s: 8 + 5, in steps of 2 s");
        assert_eq!(context_frames(28 * 16_000), WINDOW_FRAMES);
    }

    #[test]
    fn the_best_tokens_come_first() {
        assert_eq!(top_tokens(&row(&[(3, -0.1), (7, -0.5), (1, -2.0)]), 2), vec![3, 7]);
    }

    #[test]
    fn a_beam_keeps_the_sequence_a_greedy_choice_would_have_lost() {
        const END: u32 = 0;
        let mut search = Search::new();
        // Step 1: token 1 looks best, token 2 close behind.
        search.advance(&[row(&[(1, -0.4), (2, -0.6)])], 2, END);
        assert_eq!(
            search.live.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
            vec![vec![1], vec![2]]
        );
        // Step 2: after 1 everything is unlikely; after 2, token 3 is near certain.
        search.advance(&[row(&[(4, -3.0)]), row(&[(3, -0.05)])], 2, END);
        assert_eq!(search.live[0].0, vec![2, 3]);
        // Step 3: both end.
        search.advance(&[row(&[(END, -0.01)]), row(&[(END, -0.02)])], 2, END);
        assert!(search.done);
        assert_eq!(search.best(), vec![2, 3]);
    }

    #[test]
    fn a_beam_of_one_is_greedy() {
        const END: u32 = 0;
        let mut search = Search::new();
        search.advance(&[row(&[(1, -0.4), (2, -0.6)])], 1, END);
        search.advance(&[row(&[(END, -0.1), (5, -0.2)])], 1, END);
        assert!(search.done);
        assert_eq!(search.best(), vec![1]);
    }
}
