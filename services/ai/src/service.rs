//! The AI service's operations: transcribe, voice search, speak.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use kernel::{api::SearchResults, caller::Caller, catalog::CatalogSearch};
use tokio::sync::Semaphore;

use crate::{
    asr::{AsrError, BatchOptions, Transcriber},
    audio::{self, AudioError},
    config::AiConfig,
    models,
    tts::{self, Spoken, Voice, VoiceError},
    voice::{self, Intent},
};

#[derive(Debug, thiserror::Error)]
pub enum AiError {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("{0}")]
    Unavailable(String),
    #[error("{what} is busy; try again shortly")]
    Busy { what: &'static str },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("the catalog is unavailable: {0}")]
    CatalogUnavailable(String),
    #[error("the model failed: {0}")]
    Model(String),
}

/// Whether a model is loaded, and why not when it is not.
#[derive(Debug, Clone)]
pub enum ModelState<T> {
    Loading,
    Ready(T),
    /// Not there: the files are missing (fetch them) or a library is not installed.
    Missing(String),
    Failed(String),
}

impl<T> ModelState<T> {
    fn ready(&self) -> Result<&T, String> {
        match self {
            Self::Ready(model) => Ok(model),
            Self::Loading => Err("loading".into()),
            Self::Missing(why) | Self::Failed(why) => Err(why.clone()),
        }
    }
}

/// A transcript.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub text: String,
    pub language: &'static str,
    pub duration_ms: u64,
}

/// A voice search's outcome: what was heard, how it was understood, what was found.
#[derive(Debug, Clone)]
pub struct VoiceSearch {
    pub text: String,
    pub intent: Intent,
    pub results: SearchResults,
}

pub struct AiService {
    config: AiConfig,
    transcriber: OnceLock<ModelState<Transcriber>>,
    voice: OnceLock<ModelState<Arc<Voice>>>,
    speaking: Arc<Semaphore>,
    catalog: Arc<dyn CatalogSearch>,
}

/// How many results each section of a voice search holds.
const VOICE_RESULTS: u32 = 10;

impl AiService {
    /// The service, its models not loaded yet: [`AiService::load_models`] loads them.
    pub fn new(config: AiConfig, catalog: Arc<dyn CatalogSearch>) -> Self {
        Self {
            speaking: Arc::new(Semaphore::new(config.speak_queue.max(1))),
            config,
            transcriber: OnceLock::new(),
            voice: OnceLock::new(),
            catalog,
        }
    }

    pub fn config(&self) -> &AiConfig {
        &self.config
    }

    /// Loads Whisper and the voice, once, on a blocking thread; a model that is missing or
    /// fails is reported, not fatal.
    pub async fn load_models(self: &Arc<Self>) {
        let service = self.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            service.transcriber.get_or_init(|| service.open_transcriber());
            service.voice.get_or_init(|| service.open_voice());
        })
        .await;
        if let Err(error) = loaded {
            tracing::error!(%error, "loading the models panicked");
        }
    }

    fn open_transcriber(&self) -> ModelState<Transcriber> {
        let dir = self.config.whisper_dir();
        if !dir.join("model.bin").is_file() {
            return ModelState::Missing(format!(
                "no Whisper model at {}; run `{}`",
                dir.display(),
                models::FETCH_COMMAND
            ));
        }
        let options = BatchOptions {
            queue: self.config.queue,
            max_windows: self.config.max_batch,
            beam_size: self.config.beam_size,
        };
        match Transcriber::start(&dir, options) {
            Ok(transcriber) => {
                tracing::info!(
                    model = %dir.display(),
                    parameters = transcriber.parameters(),
                    "speech recognition ready"
                );
                ModelState::Ready(transcriber)
            }
            Err(error) => {
                tracing::error!(%error, model = %dir.display(), "speech recognition did not load");
                ModelState::Failed(format!(
                    "the Whisper model at {} did not load: {error}",
                    dir.display()
                ))
            }
        }
    }

    fn open_voice(&self) -> ModelState<Arc<Voice>> {
        let model = self.config.voice_model();
        let library = self.config.onnxruntime_library();
        if !model.is_file() || !library.is_file() {
            return ModelState::Missing(format!(
                "no voice at {} or no ONNX Runtime at {}; run `{}`",
                model.display(),
                library.display(),
                models::FETCH_COMMAND
            ));
        }
        let loaded = tts::load_runtime(&library)
            .and_then(|()| Voice::load("joe", &model, self.config.speak_threads));
        match loaded {
            Ok(voice) => {
                tracing::info!(voice = %model.display(), "speech synthesis ready");
                ModelState::Ready(Arc::new(voice))
            }
            Err(error @ VoiceError::Espeak(tts::espeak::EspeakError::Missing(_))) => {
                ModelState::Missing(error.to_string())
            }
            Err(error) => {
                tracing::error!(%error, voice = %model.display(), "speech synthesis did not load");
                ModelState::Failed(format!(
                    "the voice at {} did not load: {error}",
                    model.display()
                ))
            }
        }
    }

    /// Whether speech recognition is ready, and why not.
    pub fn transcriber_state(&self) -> Result<(), String> {
        self.transcriber.get().unwrap_or(&ModelState::Loading).ready().map(drop)
    }

    /// Whether speech synthesis is ready, and why not.
    pub fn voice_state(&self) -> Result<(), String> {
        self.voice.get().unwrap_or(&ModelState::Loading).ready().map(drop)
    }

    fn transcriber(&self) -> Result<&Transcriber, AiError> {
        let state = self.transcriber.get().unwrap_or(&ModelState::Loading);
        state.ready().map_err(|why| {
            AiError::Unavailable(format!("speech recognition is unavailable: {why}"))
        })
    }

    fn voice(&self) -> Result<&Arc<Voice>, AiError> {
        let state = self.voice.get().unwrap_or(&ModelState::Loading);
        state
            .ready()
            .map_err(|why| AiError::Unavailable(format!("speech synthesis is unavailable: {why}")))
    }

    /// Transcribes an audio body.
    pub async fn transcribe(&self, body: Bytes) -> Result<Transcript, AiError> {
        let transcriber = self.transcriber()?;
        let max_secs = self.config.max_audio_secs;
        let speech = tokio::task::spawn_blocking(move || audio::decode_speech(body, max_secs))
            .await
            .map_err(|error| AiError::Model(error.to_string()))??;
        let duration_ms = speech.duration_ms();
        let text = transcriber.transcribe(&speech).await.map_err(|error| match error {
            AsrError::Busy => AiError::Busy { what: "speech recognition" },
            AsrError::Stopped | AsrError::Model(_) => AiError::Model(error.to_string()),
        })?;
        metrics::counter!("ai_transcribed_audio_seconds_total").increment(duration_ms / 1000);
        Ok(Transcript { text, language: "en", duration_ms })
    }

    /// Transcribes a spoken request, understands it, and searches the catalog for it.
    pub async fn voice_search(&self, caller: &Caller, body: Bytes) -> Result<VoiceSearch, AiError> {
        let transcript = self.transcribe(body).await?;
        let intent = voice::parse(&transcript.text);
        let results = self.find(caller, &transcript.text, &intent).await?;
        Ok(VoiceSearch { text: transcript.text, intent, results })
    }

    /// Searches for what the intent names. The catalog matches every word of a query in
    /// one place, so "kind of blue" is searched alone and what it finds is narrowed to the
    /// artist and album named; when that leaves nothing, every word named is searched, and
    /// at last the phrase as it was said (a "by" may belong to a title: "stand by me").
    async fn find(
        &self,
        caller: &Caller,
        transcript: &str,
        intent: &Intent,
    ) -> Result<SearchResults, AiError> {
        let search = |text: String| async move {
            if text.trim().is_empty() {
                return Ok(None);
            }
            self.catalog
                .search(caller, &text, VOICE_RESULTS)
                .await
                .map(Some)
                .map_err(AiError::CatalogUnavailable)
        };
        let named = intent.artist.is_some() || intent.album.is_some();
        let first = if intent.query.is_empty() {
            intent.album.clone().or_else(|| intent.artist.clone()).unwrap_or_default()
        } else {
            intent.query.clone()
        };
        if let Some(found) = search(first).await? {
            let narrowed = narrow(found, intent);
            if !is_empty(&narrowed) {
                return Ok(narrowed);
            }
        }
        if named {
            if let Some(found) = search(intent.search_text()).await?.filter(|f| !is_empty(f)) {
                return Ok(found);
            }
            if let Some(found) = search(intent.unqualified(transcript).query).await? {
                return Ok(found);
            }
        }
        Ok(empty_results())
    }

    /// Speaks `text` as WAV; at most `speak_queue` texts are spoken or wait at once.
    pub async fn speak(&self, text: &str, voice: Option<&str>) -> Result<Vec<u8>, AiError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AiError::Invalid { field: "text", reason: "must not be empty".into() });
        }
        // The phonemizer reads C strings: a NUL would end the text (the fuzzer found it).
        if text.contains('\0') {
            return Err(AiError::Invalid {
                field: "text",
                reason: "must not contain a NUL character".into(),
            });
        }
        let chars = text.chars().count();
        if chars > self.config.max_speak_chars {
            return Err(AiError::Invalid {
                field: "text",
                reason: format!(
                    "is {chars} characters; at most {} are spoken",
                    self.config.max_speak_chars
                ),
            });
        }
        let loaded = self.voice()?.clone();
        if let Some(asked) = voice.filter(|asked| *asked != loaded.name()) {
            return Err(AiError::Invalid {
                field: "voice",
                reason: format!("no voice `{asked}`; the voice here is `{}`", loaded.name()),
            });
        }
        let permit = self
            .speaking
            .clone()
            .try_acquire_owned()
            .map_err(|_| AiError::Busy { what: "speech synthesis" })?;
        let text = text.to_owned();
        let spoken: Spoken = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            loaded.speak(&text)
        })
        .await
        .map_err(|error| AiError::Model(error.to_string()))?
        .map_err(|error| match error {
            VoiceError::Nothing => {
                AiError::Invalid { field: "text", reason: "has nothing to say aloud".into() }
            }
            other => AiError::Model(other.to_string()),
        })?;
        Ok(audio::wav(&spoken.samples, spoken.sample_rate))
    }
}

/// Keeps what answers the artist and album the intent names.
fn narrow(mut results: SearchResults, intent: &Intent) -> SearchResults {
    if let Some(artist) = &intent.artist {
        results.tracks.items.retain(|track| voice::names_match(artist, &track.artist.name));
        results.albums.items.retain(|album| voice::names_match(artist, &album.artist.name));
        results.artists.items.retain(|found| voice::names_match(artist, &found.name));
    }
    if let Some(album) = &intent.album {
        results.tracks.items.retain(|track| voice::names_match(album, &track.album.title));
        results.albums.items.retain(|found| voice::names_match(album, &found.title));
        results.artists.items.clear();
    }
    // What is left is all there is: the totals count the narrowed first page.
    results.tracks.total = results.tracks.items.len() as u64;
    results.albums.total = results.albums.items.len() as u64;
    results.artists.total = results.artists.items.len() as u64;
    results
}

fn is_empty(results: &SearchResults) -> bool {
    results.tracks.items.is_empty()
        && results.albums.items.is_empty()
        && results.artists.items.is_empty()
}

fn empty_results() -> SearchResults {
    SearchResults {
        tracks: kernel::api::Page::slice(Vec::new(), VOICE_RESULTS, 0),
        albums: kernel::api::Page::slice(Vec::new(), VOICE_RESULTS, 0),
        artists: kernel::api::Page::slice(Vec::new(), VOICE_RESULTS, 0),
    }
}

/// `/readyz`'s report on the models: optional under `tonearm up` (the rest of Tonearm
/// works without them), required when the service runs alone.
pub struct ModelsProbe {
    pub service: Arc<AiService>,
    pub required: bool,
}

#[async_trait::async_trait]
impl kernel::http::Probe for ModelsProbe {
    fn name(&self) -> String {
        "ai.models".into()
    }

    async fn check(&self) -> Result<(), String> {
        match (self.service.transcriber_state(), self.service.voice_state()) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(asr), Ok(())) => Err(format!("speech recognition: {asr}")),
            (Ok(()), Err(tts)) => Err(format!("speech synthesis: {tts}")),
            (Err(asr), Err(tts)) => {
                Err(format!("speech recognition: {asr}; speech synthesis: {tts}"))
            }
        }
    }

    fn required(&self) -> bool {
        self.required
    }
}
