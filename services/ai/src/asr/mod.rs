//! Speech to text: Whisper behind a bounded queue. One worker thread owns the model;
//! requests that arrive while it is busy wait in the queue and are then run together, their
//! 30 s windows in one forward pass. A full queue refuses at once rather than growing.

mod blocked;
pub mod ct2;
pub mod decoder;
pub mod encoder;
pub mod mel;
mod ops;
pub mod whisper;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use candle_core::Device;
use tokio::sync::{mpsc, oneshot};

use crate::audio::Speech;
pub use whisper::{LoadError, WhisperModel};

#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error("speech recognition is busy; try again shortly")]
    Busy,
    #[error("speech recognition stopped")]
    Stopped,
    #[error("the model failed: {0}")]
    Model(String),
}

/// How the queue and batches are sized.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Requests waiting at most; past it a request is refused as busy.
    pub queue: usize,
    /// 30 s windows in one forward pass at most; 1 runs requests one by one.
    pub max_windows: usize,
    /// Sequences kept per window while decoding; 1 is greedy.
    pub beam_size: usize,
}

struct Job {
    windows: Vec<Vec<f32>>,
    reply: oneshot::Sender<Result<Vec<String>, AsrError>>,
    queued: Instant,
}

/// The transcriber's handle: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Transcriber {
    jobs: mpsc::Sender<Job>,
    waiting: Arc<AtomicUsize>,
    parameters: usize,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcriber").field("parameters", &self.parameters).finish()
    }
}

/// The device models run on: the first GPU where built with `cuda` and one is there.
pub fn device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(device) = Device::new_cuda(0) {
        return device;
    }
    Device::Cpu
}

impl Transcriber {
    /// Loads the model in `dir` and starts its worker thread.
    pub fn start(dir: &Path, options: BatchOptions) -> Result<Self, LoadError> {
        let model = WhisperModel::load(dir, &device(), options.beam_size)?;
        Ok(Self::with_model(model, options))
    }

    pub fn with_model(model: WhisperModel, options: BatchOptions) -> Self {
        let parameters = model.parameters();
        let (jobs, queue) = mpsc::channel(options.queue.max(1));
        let waiting = Arc::new(AtomicUsize::new(0));
        let worker_waiting = waiting.clone();
        let max_windows = options.max_windows.max(1);
        std::thread::Builder::new()
            .name("whisper".into())
            .spawn(move || work(model, queue, max_windows, &worker_waiting))
            .map(drop)
            .unwrap_or_else(|error| tracing::error!(%error, "the speech worker did not start"));
        Self { jobs, waiting, parameters }
    }

    pub fn parameters(&self) -> usize {
        self.parameters
    }

    /// Transcribes speech of any length, 30 s window by window; the windows' texts are
    /// joined. Refused as [`AsrError::Busy`] when the queue is full.
    pub async fn transcribe(&self, speech: &Speech) -> Result<String, AsrError> {
        let windows: Vec<Vec<f32>> =
            speech.samples.chunks(mel::WINDOW_SAMPLES).map(<[f32]>::to_vec).collect();
        let (reply, answer) = oneshot::channel();
        // Counted before it is queued, so that the worker never takes away more than there is.
        let depth = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        if let Err(error) = self.jobs.try_send(Job { windows, reply, queued: Instant::now() }) {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(match error {
                mpsc::error::TrySendError::Full(_) => AsrError::Busy,
                mpsc::error::TrySendError::Closed(_) => AsrError::Stopped,
            });
        }
        metrics::gauge!("ai_asr_queue_depth").set(depth as f64);
        let texts = answer.await.map_err(|_| AsrError::Stopped)??;
        Ok(texts
            .iter()
            .map(|text| text.trim())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" "))
    }
}

/// The worker: takes the oldest job, then whatever else waits, up to `max_windows`
/// windows, and runs them as one batch.
fn work(
    mut model: WhisperModel,
    mut queue: mpsc::Receiver<Job>,
    max_windows: usize,
    waiting: &AtomicUsize,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        let mut windows = batch[0].windows.len();
        while windows < max_windows {
            match queue.try_recv() {
                Ok(job) => {
                    windows += job.windows.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let left = waiting.fetch_sub(batch.len(), Ordering::Relaxed).saturating_sub(batch.len());
        metrics::gauge!("ai_asr_queue_depth").set(left as f64);
        for job in &batch {
            metrics::histogram!("ai_asr_wait_seconds").record(job.queued.elapsed().as_secs_f64());
        }
        let started = Instant::now();
        let all: Vec<&[f32]> =
            batch.iter().flat_map(|job| job.windows.iter().map(Vec::as_slice)).collect();
        let mut texts = Vec::with_capacity(all.len());
        let mut failure = None;
        for chunk in all.chunks(max_windows) {
            metrics::histogram!("ai_asr_batch_windows").record(chunk.len() as f64);
            // A panic in the model fails this batch, not the worker: later requests are
            // still heard.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.transcribe(chunk)));
            match outcome {
                Ok(Ok(done)) => texts.extend(done),
                Ok(Err(error)) => {
                    tracing::error!(%error, "transcription failed");
                    failure = Some(error.to_string());
                    break;
                }
                Err(_) => {
                    tracing::error!("transcription panicked");
                    failure = Some("the model panicked".to_owned());
                    break;
                }
            }
        }
        metrics::histogram!("ai_asr_batch_seconds").record(started.elapsed().as_secs_f64());
        let mut texts = texts.into_iter();
        for job in batch {
            let answer = match &failure {
                Some(error) => Err(AsrError::Model(error.clone())),
                None => Ok(texts.by_ref().take(job.windows.len()).collect()),
            };
            // The client may have gone; its answer is then dropped.
            let _ = job.reply.send(answer);
        }
    }
}
