//! Text to speech: a Piper VITS voice on ONNX Runtime, fed phonemes from espeak-ng.

pub mod espeak;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
};

use ort::{session::Session, value::Tensor};
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization as _;

use espeak::{Espeak, EspeakError};

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the voice's settings: {0}")]
    Settings(#[from] serde_json::Error),
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error(transparent)]
    Espeak(#[from] EspeakError),
    #[error("the text has nothing to say")]
    Nothing,
}

impl From<ort::Error> for VoiceError {
    fn from(error: ort::Error) -> Self {
        Self::Runtime(error.to_string())
    }
}

/// The parts of a Piper voice's `.onnx.json` that synthesis needs.
#[derive(Debug, Deserialize)]
struct VoiceSettings {
    audio: AudioSettings,
    espeak: EspeakSettings,
    inference: Inference,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    num_speakers: u32,
}

#[derive(Debug, Deserialize)]
struct AudioSettings {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakSettings {
    voice: String,
}

#[derive(Debug, Deserialize)]
struct Inference {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

const PAD: &str = "_";
const BOS: &str = "^";
const EOS: &str = "$";

/// Opens ONNX Runtime's shared library, once per process; later calls reuse it.
pub fn load_runtime(library: &Path) -> Result<(), VoiceError> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            if !library.is_file() {
                return Err(format!("{} is not there", library.display()));
            }
            // ort panics on a library it cannot open, so opening it is tried first.
            #[allow(unsafe_code)]
            // SAFETY: ONNX Runtime's library has no load-time preconditions; this handle
            // only proves it opens and is closed again.
            let probe = unsafe { libloading::Library::new(library) };
            probe.map_err(|error| error.to_string())?;
            ort::init_from(library.display().to_string())
                .with_name("tonearm")
                .commit()
                .map(drop)
                .map_err(|error| error.to_string())
        })
        .clone()
        .map_err(VoiceError::Runtime)
}

/// A loaded voice.
pub struct Voice {
    name: String,
    settings: VoiceSettings,
    session: Mutex<Session>,
    espeak: Espeak,
}

impl std::fmt::Debug for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voice").field("name", &self.name).finish()
    }
}

/// Speech, as 16-bit samples.
#[derive(Debug, Clone)]
pub struct Spoken {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

impl Voice {
    /// Loads the Piper voice `model` (`<name>.onnx`, with `<name>.onnx.json` beside it);
    /// ONNX Runtime must have been loaded.
    pub fn load(name: &str, model: &Path, threads: usize) -> Result<Self, VoiceError> {
        let settings_path = PathBuf::from(format!("{}.json", model.display()));
        let settings = std::fs::read(&settings_path).map_err(|source| VoiceError::Read {
            path: settings_path.display().to_string(),
            source,
        })?;
        let settings: VoiceSettings = serde_json::from_slice(&settings)?;
        let espeak = Espeak::open(&settings.espeak.voice)?;
        let session =
            Session::builder()?.with_intra_threads(threads.max(1))?.commit_from_file(model)?;
        Ok(Self { name: name.to_owned(), settings, session: Mutex::new(session), espeak })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The voice's phoneme ids for `phonemes`: BOS, each phoneme followed by the pad, EOS.
    /// Phonemes the voice does not know are skipped.
    fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        let map = &self.settings.phoneme_id_map;
        let id = |symbol: &str| map.get(symbol).cloned().unwrap_or_default();
        let mut ids = id(BOS);
        ids.extend(id(PAD));
        let mut symbol = [0u8; 4];
        for phoneme in phonemes.nfd() {
            if let Some(known) = map.get(phoneme.encode_utf8(&mut symbol) as &str) {
                ids.extend(known);
                ids.extend(id(PAD));
            }
        }
        ids.extend(id(EOS));
        ids
    }

    /// Speaks `text`: phonemes from espeak-ng, audio from the voice.
    pub fn speak(&self, text: &str) -> Result<Spoken, VoiceError> {
        let phonemes = self.espeak.phonemize(text)?;
        let ids = self.phoneme_ids(&phonemes);
        if ids.len() <= 3 {
            return Err(VoiceError::Nothing);
        }
        let length = ids.len();
        let inference = &self.settings.inference;
        let input = Tensor::from_array(([1usize, length], ids))?;
        let lengths = Tensor::from_array(([1usize], vec![length as i64]))?;
        let scales = Tensor::from_array((
            [3usize],
            vec![inference.noise_scale, inference.length_scale, inference.noise_w],
        ))?;
        let mut session = self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = if self.settings.num_speakers > 1 {
            let speaker = Tensor::from_array(([1usize], vec![0i64]))?;
            session.run(ort::inputs![
                "input" => input, "input_lengths" => lengths, "scales" => scales, "sid" => speaker
            ])?
        } else {
            session.run(
                ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales],
            )?
        };
        let (_, audio) = outputs[0].try_extract_tensor::<f32>()?;
        // Normalised to the loudest sample, as Piper does, with headroom.
        let peak = audio.iter().fold(0.01f32, |peak, s| peak.max(s.abs()));
        let gain = 32_767.0 * 0.9 / peak;
        let samples = audio.iter().map(|s| (s * gain).clamp(-32_768.0, 32_767.0) as i16).collect();
        Ok(Spoken { samples, sample_rate: self.settings.audio.sample_rate })
    }
}
