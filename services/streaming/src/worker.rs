//! The transcode workers: each claims a job, fetches the original, packages it, uploads the
//! ladder and reports the outcome, holding a lease on the job while it works so that a
//! crashed worker's job is picked up again once the lease lapses.

use std::{path::Path, sync::Arc, time::Duration};

use bus::{
    Envelope,
    events::{RenditionInfo, TrackTranscoded, TranscodeOutcome},
};
use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use kernel::background::{Background, StopSignal};
use objects::{ObjectKey, ObjectsError};
use tokio::{io::AsyncWriteExt, sync::watch};

use crate::{
    StreamingService,
    domain::{Job, JobResult, Packaged},
    scratch::{Scratch, sweep_retired},
    service::media_prefix,
    transcoder::TranscodeError,
};

/// How long a claim holds a job without renewal; workers renew at a third of it.
pub const LEASE: Duration = Duration::from_secs(60);

/// What the uploader of a track reads when its transcode kept meeting faults of the
/// server's (a missing program, a full disk): the faults themselves are the operator's.
pub const GAVE_UP: &str =
    "the server could not process this file after several attempts; try uploading it again later";

/// How often an idle worker looks for due work it was not woken for (retries, other
/// replicas' lapsed leases).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Runs the service's transcode workers in the background.
pub struct Workers {
    service: Arc<StreamingService>,
    lease: Duration,
}

impl Workers {
    pub fn new(service: Arc<StreamingService>) -> Self {
        Self { service, lease: LEASE }
    }

    /// A shorter lease, for tests that wait for one to lapse.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    pub fn spawn(self) -> Background {
        Background::spawn(|stop| self.run(stop))
    }

    async fn run(self, stop: StopSignal) {
        let count = self.service.config().worker_count();
        sweep_retired(self.service.work_dir()).await;
        match self.service.transcoder().version().await {
            Ok(version) => tracing::info!(workers = count, %version, "transcode workers ready"),
            Err(error) => {
                tracing::error!(%error, "ffmpeg is unavailable; transcodes will wait and retry")
            }
        }
        for outcome in ["ready", "failed"] {
            metrics::counter!("transcodes_total", "outcome" => outcome).increment(0);
        }
        let (stopping, stopped) = watch::channel(false);
        let mut workers = tokio::task::JoinSet::new();
        workers.spawn(gauge_queue(self.service.clone(), stopped.clone()));
        for index in 0..count {
            let worker = Worker {
                service: self.service.clone(),
                owner: format!("{}-{index}", uuid::Uuid::new_v4().simple()),
                lease: self.lease,
            };
            workers.spawn(worker.run(stopped.clone()));
        }
        stop.await;
        let _ = stopping.send(true);
        workers.join_all().await;
    }
}

/// How often the queue's depth is read for `transcode_queue_depth`.
const QUEUE_GAUGE_EVERY: Duration = Duration::from_secs(15);

/// Keeps `transcode_queue_depth{state}` current: the jobs every replica shares, so each
/// replica reports the same figure (dashboards take the max).
async fn gauge_queue(service: Arc<StreamingService>, mut stopped: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(QUEUE_GAUGE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = every.tick() => {}
        }
        match service.store().queue_depth().await {
            Ok(depth) => {
                metrics::gauge!("transcode_queue_depth", "state" => "queued")
                    .set(depth.queued as f64);
                metrics::gauge!("transcode_queue_depth", "state" => "running")
                    .set(depth.running as f64);
            }
            Err(error) => tracing::warn!(%error, "cannot read the transcode queue's depth"),
        }
    }
}

struct Worker {
    service: Arc<StreamingService>,
    owner: String,
    lease: Duration,
}

/// What became of a claimed job.
enum Ended {
    Finished(JobResult),
    /// A transient fault: try again later.
    Fault(String),
    /// The job stopped being ours (deleted, or reclaimed after a lapsed lease).
    Lost,
    /// The process is stopping.
    Interrupted,
}

impl Worker {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let wake = self.service.wake().clone();
        loop {
            if *stopped.borrow() {
                return;
            }
            let now = Utc::now();
            let claimed =
                self.service.store().claim(&self.owner, now, now + delta(self.lease)).await;
            match claimed {
                Ok(Some(job)) => self.process(job, &mut stopped).await,
                Ok(None) => {
                    tokio::select! {
                        _ = stopped.changed() => {}
                        () = wake.notified() => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot claim transcode jobs");
                    tokio::select! {
                        _ = stopped.changed() => {}
                        () = tokio::time::sleep(IDLE_POLL * 5) => {}
                    }
                }
            }
        }
    }

    async fn process(&self, job: Job, stopped: &mut watch::Receiver<bool>) {
        let track_id = job.track_id;
        let max_attempts = self.service.config().max_attempts.max(1);
        let scratch = Scratch::new(self.service.work_dir(), track_id, &self.owner, job.attempts);
        let started = std::time::Instant::now();
        let ended = if job.attempts > max_attempts {
            // It keeps being claimed and never finishing: it takes its worker down with it.
            if let Err(error) = scratch.clear_track().await {
                tracing::warn!(%track_id, %error, "cannot move transcode scratch files away");
            }
            let last = job.error.clone().unwrap_or_else(|| "the worker stopped".into());
            tracing::error!(%track_id, attempts = job.attempts - 1, last_fault = %last, "transcode given up");
            Ended::Finished(JobResult::Failed(GAVE_UP.to_owned()))
        } else {
            tracing::info!(%track_id, attempt = job.attempts, "transcode started");
            let ended = self.with_lease(&job, stopped, self.transcode(&job, &scratch)).await;
            scratch.clear().await;
            ended
        };
        let store = self.service.store();
        let outcome = match ended {
            Ended::Finished(result) => self.finish(&job, result).await,
            Ended::Fault(reason) if job.attempts >= max_attempts => {
                tracing::error!(%track_id, attempts = job.attempts, last_fault = %reason, "transcode given up");
                self.finish(&job, JobResult::Failed(GAVE_UP.to_owned())).await
            }
            Ended::Fault(reason) => {
                let base = self.service.config().retry_backoff_secs;
                let backoff = Duration::from_secs(base * 2_u64.pow(job.attempts.clamp(1, 8) - 1));
                tracing::warn!(%track_id, attempt = job.attempts, %reason, retry_in_s = backoff.as_secs(), "transcode fault; will retry");
                let due = Utc::now() + delta(backoff);
                store.retry_later(track_id, &self.owner, &reason, due).await.map(drop)
            }
            Ended::Interrupted => {
                tracing::info!(%track_id, "transcode interrupted by shutdown; requeued");
                let now = Utc::now();
                store.retry_later(track_id, &self.owner, "interrupted", now).await.map(drop)
            }
            Ended::Lost => {
                tracing::info!(%track_id, "transcode abandoned: the job is gone or reclaimed");
                Ok(())
            }
        };
        if let Err(error) = outcome {
            // The lease lapses and another attempt picks the job up.
            tracing::warn!(%track_id, %error, "cannot record the transcode's end");
        }
        metrics::histogram!("transcode_duration_seconds").record(started.elapsed().as_secs_f64());
    }

    /// Runs `work` while renewing the lease; stops early if the lease is lost or the
    /// process stops.
    async fn with_lease(
        &self,
        job: &Job,
        stopped: &mut watch::Receiver<bool>,
        work: impl Future<Output = Ended>,
    ) -> Ended {
        tokio::pin!(work);
        let mut renew = tokio::time::interval(self.lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                ended = &mut work => return ended,
                _ = stopped.changed() => return Ended::Interrupted,
                _ = renew.tick() => {
                    let until = Utc::now() + delta(self.lease);
                    match self.service.store().extend_lease(job.track_id, &self.owner, until).await {
                        Ok(true) => {}
                        Ok(false) => return Ended::Lost,
                        Err(error) => tracing::warn!(track_id = %job.track_id, %error, "cannot renew a transcode lease"),
                    }
                }
            }
        }
    }

    async fn transcode(&self, job: &Job, scratch: &Scratch) -> Ended {
        match self.try_transcode(job, scratch).await {
            Ok(packaged) => Ended::Finished(JobResult::Done(packaged)),
            Err(TranscodeError::Unplayable(reason)) => Ended::Finished(JobResult::Failed(reason)),
            Err(TranscodeError::Fault(reason)) => Ended::Fault(reason),
        }
    }

    async fn try_transcode(
        &self,
        job: &Job,
        scratch: &Scratch,
    ) -> Result<Packaged, TranscodeError> {
        let scratch = scratch
            .prepare()
            .await
            .map_err(|error| TranscodeError::Fault(format!("scratch space: {error}")))?;
        let source = scratch.join(format!("source.{}", sanitized(&job.format)));
        self.download(&job.source_key, &source).await?;
        let transcoder = self.service.transcoder();
        let probed = transcoder.probe(&source).await?;
        let out = scratch.join("out");
        let packaged = transcoder.package(&source, &probed, &out).await?;
        self.upload(job, &out, &packaged).await?;
        Ok(packaged)
    }

    async fn download(&self, source_key: &str, to: &Path) -> Result<(), TranscodeError> {
        let objects_fault = |error: ObjectsError| match error {
            ObjectsError::NotFound(_) | ObjectsError::InvalidKey(_) => {
                TranscodeError::Unplayable("the uploaded original is missing".to_owned())
            }
            ObjectsError::Unavailable(reason) => TranscodeError::Fault(reason),
        };
        let key = ObjectKey::parse(source_key).map_err(objects_fault)?;
        let mut chunks = self.service.objects().get_stream(&key).await.map_err(objects_fault)?;
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(|error| TranscodeError::Fault(error.to_string()))?;
        while let Some(chunk) = chunks.try_next().await.map_err(objects_fault)? {
            file.write_all(&chunk)
                .await
                .map_err(|error| TranscodeError::Fault(error.to_string()))?;
        }
        file.flush().await.map_err(|error| TranscodeError::Fault(error.to_string()))
    }

    /// Puts every rendition's initialisation and media segments in object storage.
    async fn upload(
        &self,
        job: &Job,
        out: &Path,
        packaged: &Packaged,
    ) -> Result<(), TranscodeError> {
        let prefix =
            media_prefix(job.track_id).map_err(|error| TranscodeError::Fault(error.to_string()))?;
        let files: Vec<String> = packaged
            .renditions
            .iter()
            .flat_map(|rendition| {
                std::iter::once(&rendition.init)
                    .chain(rendition.segments.iter().map(|segment| &segment.file))
                    .map(move |file| format!("{}/{file}", rendition.dir))
            })
            .collect();
        let objects = self.service.objects();
        futures::stream::iter(files)
            .map(|file| {
                let prefix = prefix.clone();
                async move {
                    let bytes = tokio::fs::read(out.join(&file))
                        .await
                        .map_err(|error| TranscodeError::Fault(format!("{file}: {error}")))?;
                    let key = prefix
                        .join(&file)
                        .map_err(|error| TranscodeError::Fault(error.to_string()))?;
                    objects
                        .put(&key, Bytes::from(bytes))
                        .await
                        .map_err(|error| TranscodeError::Fault(error.to_string()))
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Records the job's end and its `track.transcoded` event together.
    async fn finish(&self, job: &Job, result: JobResult) -> Result<(), crate::store::StoreError> {
        let now = Utc::now();
        let outcome = match &result {
            JobResult::Done(packaged) => TranscodeOutcome::Ready {
                renditions: packaged
                    .renditions
                    .iter()
                    .map(|r| RenditionInfo { bitrate_kbps: r.bitrate_kbps, codec: r.codec.clone() })
                    .collect(),
                loudness_lufs: packaged.loudness_lufs,
                duration_ms: packaged.duration_ms,
            },
            JobResult::Failed(error) => TranscodeOutcome::Failed { error: error.clone() },
        };
        let event = Envelope::new(
            &TrackTranscoded { track_id: job.track_id, outcome, finished_at: now },
            now,
        );
        let recorded =
            self.service.store().finish(job.track_id, &self.owner, &result, &event, now).await?;
        match (&result, recorded) {
            (JobResult::Done(packaged), true) => {
                metrics::counter!("transcodes_total", "outcome" => "ready").increment(1);
                tracing::info!(track_id = %job.track_id, duration_ms = packaged.duration_ms, loudness_lufs = packaged.loudness_lufs, "transcode ready");
            }
            (JobResult::Failed(error), true) => {
                metrics::counter!("transcodes_total", "outcome" => "failed").increment(1);
                tracing::info!(track_id = %job.track_id, %error, "transcode failed");
            }
            (_, false) => {
                // The track was deleted meanwhile: take back what this attempt uploaded.
                if let Ok(prefix) = media_prefix(job.track_id) {
                    let _ = self.service.objects().delete_prefix(&prefix).await;
                }
            }
        }
        Ok(())
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// A format name safe as a file extension.
fn sanitized(format: &str) -> String {
    let clean: String = format.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    if clean.is_empty() { "bin".to_owned() } else { clean }
}
