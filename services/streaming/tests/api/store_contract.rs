//! One contract for every `StreamingStore` adapter: each case below runs once on SQLite and
//! once on PostgreSQL (`store_contract::sqlite::*`, `store_contract::postgres::*`), each
//! time on a fresh database.

use std::{collections::HashSet, sync::Arc};

use bus::{
    Envelope, Event,
    events::{RenditionInfo, TrackTranscoded, TranscodeOutcome},
    outbox::OutboxStore,
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kernel::db::SqlPool;
use streaming::{
    domain::{Job, JobResult, JobStatus, NewJob, Packaged, PackagedRendition, Segment, SigningKey},
    store::{QueueDepth, StoreError, StreamingStore},
};
use uuid::Uuid;

macro_rules! store_contract {
    (
        stores: [$($case:ident),* $(,)?],
        fixtures: [$($raw:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            store_contract!(@engine sqlite; [$($case),*]; [$($raw),*]);
        }

        mod postgres {
            store_contract!(@engine postgres; [$($case),*]; [$($raw),*]);
        }
    };
    (@engine $engine:ident; [$($case:ident),*]; [$($raw:ident),*]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture = super::StoreFixture::$engine().await;
                super::$case(fixture.store()).await;
                fixture.finish().await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $raw() {
                let fixture = super::StoreFixture::$engine().await;
                super::$raw(&fixture).await;
                fixture.finish().await;
            }
        )*
    };
}

store_contract!(
    stores: [
        jobs_are_queued_once_per_event_and_per_track,
        the_oldest_due_job_is_claimed_first,
        a_job_is_not_claimed_before_it_is_due,
        a_lease_is_extended_by_its_owner,
        a_lapsed_lease_is_reclaimed_and_the_first_owner_loses_the_job,
        the_queue_depth_counts_waiting_and_running_jobs,
        a_transient_fault_puts_the_job_back_until_it_is_due,
        a_finished_job_keeps_its_packaging_and_records_one_event,
        a_failed_job_keeps_its_reason,
        running_jobs_are_requeued,
        forgetting_is_once_per_event_and_deletes_the_job,
        signing_keys_round_trip_and_duplicate_ids_conflict,
        concurrent_claimers_never_share_a_job,
        the_outbox_drains,
    ],
    fixtures: [undecodable_rows_are_reported_as_corrupt],
);

/// A store on a database of its own, removed again by [`StoreFixture::finish`].
struct StoreFixture {
    store: Arc<dyn StreamingStore>,
    database: testkit::TestDatabase,
}

impl StoreFixture {
    async fn sqlite() -> Self {
        Self::open(testkit::TestDatabase::sqlite().await).await
    }

    async fn postgres() -> Self {
        Self::open(testkit::TestDatabase::postgres().await).await
    }

    async fn open(database: testkit::TestDatabase) -> Self {
        let store = streaming::store::open(database.pool().clone())
            .await
            .unwrap_or_else(|error| panic!("cannot migrate the test database: {error}"));
        Self { store, database }
    }

    fn store(&self) -> Arc<dyn StreamingStore> {
        Arc::clone(&self.store)
    }

    /// Runs one statement with a track id as `$1`, behind the store's back.
    async fn execute(&self, sql: &str, track_id: Uuid) {
        match self.database.pool() {
            SqlPool::Sqlite(pool) => sqlx::query(sql).bind(track_id).execute(pool).await.map(drop),
            SqlPool::Postgres(pool) => {
                sqlx::query(sql).bind(track_id).execute(pool).await.map(drop)
            }
        }
        .unwrap_or_else(|error| panic!("cannot run {sql}: {error}"));
    }

    /// Drops the store, then the database (a failed test leaves it for a look).
    async fn finish(self) {
        drop(self.store);
        self.database.finish().await;
    }
}

const CONSUMER: &str = "streaming.test";

/// Now at the millisecond precision the service keeps.
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::milliseconds(1)).expect("truncate to milliseconds")
}

fn secs(seconds: i64) -> TimeDelta {
    TimeDelta::seconds(seconds)
}

fn new_job(created_at: DateTime<Utc>) -> NewJob {
    let track_id = Uuid::now_v7();
    NewJob {
        track_id,
        source_key: format!("tracks/{track_id}/original.flac"),
        format: "flac".to_owned(),
        created_at,
    }
}

/// Queues a new job created at `created_at`, under an event of its own.
async fn queued(store: &dyn StreamingStore, created_at: DateTime<Utc>) -> NewJob {
    let job = new_job(created_at);
    assert!(store.enqueue(CONSUMER, Uuid::now_v7(), &job).await.unwrap(), "queued");
    job
}

async fn claimed(
    store: &dyn StreamingStore,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Job {
    store
        .claim(owner, now, lease_until)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{owner} claims a job at {now}"))
}

async fn job(store: &dyn StreamingStore, track_id: Uuid) -> Job {
    store.job(track_id).await.unwrap().unwrap_or_else(|| panic!("job {track_id} exists"))
}

fn packaged() -> Packaged {
    let rendition = |bitrate_kbps: u32| PackagedRendition {
        bitrate_kbps,
        codec: "mp4a.40.2".to_owned(),
        sample_rate: 48_000,
        channels: 2,
        peak_bandwidth: u64::from(bitrate_kbps) * 1_100,
        average_bandwidth: u64::from(bitrate_kbps) * 1_000,
        dir: format!("{bitrate_kbps}k"),
        init: "init.mp4".to_owned(),
        segments: vec![
            Segment {
                file: "seg000.m4s".to_owned(),
                duration_us: 6_016_000,
                size_bytes: u64::from(bitrate_kbps) * 752,
            },
            Segment {
                file: "seg001.m4s".to_owned(),
                duration_us: 1_234_567,
                size_bytes: u64::from(bitrate_kbps) * 154,
            },
        ],
    };
    Packaged {
        duration_ms: 7_251,
        loudness_lufs: Some(-13.87),
        renditions: vec![rendition(64), rendition(128), rendition(256)],
    }
}

/// The `track.transcoded` event a worker records with a job's end.
fn transcoded(track_id: Uuid, result: &JobResult, at: DateTime<Utc>) -> Envelope {
    let outcome = match result {
        JobResult::Done(packaged) => TranscodeOutcome::Ready {
            renditions: packaged
                .renditions
                .iter()
                .map(|rendition| RenditionInfo {
                    bitrate_kbps: rendition.bitrate_kbps,
                    codec: rendition.codec.clone(),
                })
                .collect(),
            loudness_lufs: packaged.loudness_lufs,
            duration_ms: packaged.duration_ms,
        },
        JobResult::Failed(error) => TranscodeOutcome::Failed { error: error.clone() },
    };
    Envelope::new(&TrackTranscoded { track_id, outcome, finished_at: at }, at)
}

/// Ends `owner`'s job with `result` and its event; whether the store took it.
async fn finish(
    store: &dyn StreamingStore,
    track_id: Uuid,
    owner: &str,
    result: &JobResult,
    at: DateTime<Utc>,
) -> (bool, Envelope) {
    let event = transcoded(track_id, result, at);
    let finished = store.finish(track_id, owner, result, &event, at).await.unwrap();
    (finished, event)
}

async fn pending(store: &dyn StreamingStore) -> Vec<Envelope> {
    OutboxStore::pending(store, 1_000).await.expect("read the outbox")
}

async fn jobs_are_queued_once_per_event_and_per_track(store: Arc<dyn StreamingStore>) {
    let created_at = now();
    let new = new_job(created_at);
    let event_id = Uuid::now_v7();
    assert!(store.enqueue(CONSUMER, event_id, &new).await.unwrap(), "first delivery");
    assert!(!store.enqueue(CONSUMER, event_id, &new).await.unwrap(), "redelivery");

    let again = NewJob {
        source_key: "tracks/elsewhere.mp3".to_owned(),
        format: "mp3".to_owned(),
        created_at: created_at + secs(5),
        ..new.clone()
    };
    assert!(!store.enqueue(CONSUMER, Uuid::now_v7(), &again).await.unwrap(), "same track");
    assert!(!store.enqueue("other.consumer", event_id, &again).await.unwrap(), "same track");

    assert_eq!(
        job(store.as_ref(), new.track_id).await,
        Job {
            track_id: new.track_id,
            source_key: new.source_key.clone(),
            format: "flac".to_owned(),
            status: JobStatus::Queued,
            attempts: 0,
            error: None,
            packaged: None,
            created_at,
            updated_at: created_at,
        },
        "the first job is kept as it was queued"
    );
    assert_eq!(store.job(Uuid::now_v7()).await.unwrap(), None);
    assert!(pending(store.as_ref()).await.is_empty(), "queueing announces nothing");
}

async fn the_oldest_due_job_is_claimed_first(store: Arc<dyn StreamingStore>) {
    let t0 = now();
    let younger = queued(store.as_ref(), t0 - secs(10)).await;
    let oldest = queued(store.as_ref(), t0 - secs(30)).await;
    let at = t0 + secs(1);
    let lease = at + secs(60);

    let first = claimed(store.as_ref(), "worker-a", at, lease).await;
    assert_eq!(
        first,
        Job {
            track_id: oldest.track_id,
            source_key: oldest.source_key.clone(),
            format: oldest.format.clone(),
            status: JobStatus::Running,
            attempts: 1,
            error: None,
            packaged: None,
            created_at: oldest.created_at,
            updated_at: at,
        }
    );
    assert_eq!(job(store.as_ref(), oldest.track_id).await, first, "read back as claimed");

    let second = claimed(store.as_ref(), "worker-b", at, lease).await;
    assert_eq!(second.track_id, younger.track_id, "the next job, not the claimed one");
    assert_eq!((second.status, second.attempts), (JobStatus::Running, 1));

    assert_eq!(store.claim("worker-c", at, lease).await.unwrap(), None, "nothing left");
    assert_eq!(job(store.as_ref(), oldest.track_id).await.attempts, 1, "not claimed again");
}

async fn a_job_is_not_claimed_before_it_is_due(store: Arc<dyn StreamingStore>) {
    let t0 = now();
    let later = queued(store.as_ref(), t0 + secs(60)).await;
    assert_eq!(store.claim("worker", t0, t0 + secs(30)).await.unwrap(), None);
    assert_eq!(store.claim("worker", t0 + secs(59), t0 + secs(90)).await.unwrap(), None);
    assert_eq!(job(store.as_ref(), later.track_id).await.status, JobStatus::Queued);

    let due = claimed(store.as_ref(), "worker", t0 + secs(60), t0 + secs(90)).await;
    assert_eq!((due.track_id, due.attempts), (later.track_id, 1), "due at its time");
}

async fn a_lease_is_extended_by_its_owner(store: Arc<dyn StreamingStore>) {
    let t0 = now();
    let new = queued(store.as_ref(), t0).await;
    claimed(store.as_ref(), "worker-a", t0, t0 + secs(30)).await;

    assert!(store.extend_lease(new.track_id, "worker-a", t0 + secs(90)).await.unwrap());
    assert!(!store.extend_lease(new.track_id, "worker-b", t0 + secs(900)).await.unwrap());
    assert!(!store.extend_lease(Uuid::now_v7(), "worker-a", t0 + secs(900)).await.unwrap());

    assert_eq!(store.claim("worker-b", t0 + secs(31), t0 + secs(60)).await.unwrap(), None);
    assert_eq!(
        store.claim("worker-b", t0 + secs(90), t0 + secs(120)).await.unwrap(),
        None,
        "a lease lasts until its end"
    );
    let reclaimed = claimed(store.as_ref(), "worker-b", t0 + secs(91), t0 + secs(120)).await;
    assert_eq!((reclaimed.track_id, reclaimed.attempts), (new.track_id, 2));
}

async fn a_lapsed_lease_is_reclaimed_and_the_first_owner_loses_the_job(
    store: Arc<dyn StreamingStore>,
) {
    let t0 = now();
    let new = queued(store.as_ref(), t0).await;
    claimed(store.as_ref(), "worker-a", t0, t0 + secs(30)).await;
    assert_eq!(store.claim("worker-b", t0 + secs(30), t0 + secs(60)).await.unwrap(), None);

    let lapsed_at = t0 + secs(31);
    let reclaimed = claimed(store.as_ref(), "worker-b", lapsed_at, t0 + secs(90)).await;
    assert_eq!(
        (reclaimed.track_id, reclaimed.status, reclaimed.attempts, reclaimed.updated_at),
        (new.track_id, JobStatus::Running, 2, lapsed_at)
    );

    assert!(!store.extend_lease(new.track_id, "worker-a", t0 + secs(600)).await.unwrap());
    let (finished, _) =
        finish(store.as_ref(), new.track_id, "worker-a", &JobResult::Done(packaged()), lapsed_at)
            .await;
    assert!(!finished, "the first owner no longer holds the job");
    assert!(
        !store.retry_later(new.track_id, "worker-a", "timeout", lapsed_at).await.unwrap(),
        "nor can it requeue it"
    );
    assert!(pending(store.as_ref()).await.is_empty(), "a lost job records no event");
    assert_eq!(job(store.as_ref(), new.track_id).await, reclaimed, "unchanged");

    let (finished, event) =
        finish(store.as_ref(), new.track_id, "worker-b", &JobResult::Done(packaged()), lapsed_at)
            .await;
    assert!(finished, "the new owner does");
    assert_eq!(pending(store.as_ref()).await, [event]);
}

async fn a_transient_fault_puts_the_job_back_until_it_is_due(store: Arc<dyn StreamingStore>) {
    let t0 = now();
    let new = queued(store.as_ref(), t0).await;
    claimed(store.as_ref(), "worker-a", t0, t0 + secs(30)).await;

    let retry_at = t0 + secs(120);
    assert!(
        !store.retry_later(new.track_id, "worker-b", "not mine", retry_at).await.unwrap(),
        "only the owner requeues"
    );
    assert!(
        store
            .retry_later(new.track_id, "worker-a", "object storage timed out", retry_at)
            .await
            .unwrap()
    );
    let waiting = job(store.as_ref(), new.track_id).await;
    assert_eq!(
        (waiting.status, waiting.attempts, waiting.error.as_deref()),
        (JobStatus::Queued, 1, Some("object storage timed out"))
    );
    assert!(
        !store.extend_lease(new.track_id, "worker-a", retry_at).await.unwrap(),
        "a queued job is no one's"
    );

    assert_eq!(store.claim("worker-b", t0 + secs(60), t0 + secs(90)).await.unwrap(), None);
    assert_eq!(
        store
            .claim("worker-b", retry_at - TimeDelta::milliseconds(1), retry_at + secs(30))
            .await
            .unwrap(),
        None
    );
    let retried = claimed(store.as_ref(), "worker-b", retry_at, retry_at + secs(30)).await;
    assert_eq!(
        (retried.track_id, retried.status, retried.attempts),
        (new.track_id, JobStatus::Running, 2)
    );
    assert!(store.extend_lease(new.track_id, "worker-b", retry_at + secs(60)).await.unwrap());
}

async fn a_finished_job_keeps_its_packaging_and_records_one_event(store: Arc<dyn StreamingStore>) {
    let t0 = now();
    let new = queued(store.as_ref(), t0).await;
    claimed(store.as_ref(), "worker", t0, t0 + secs(30)).await;
    store.retry_later(new.track_id, "worker", "flaky", t0).await.unwrap();
    claimed(store.as_ref(), "worker", t0, t0 + secs(30)).await;

    let done_at = t0 + secs(7);
    let result = JobResult::Done(packaged());
    let (finished, event) = finish(store.as_ref(), new.track_id, "worker", &result, done_at).await;
    assert!(finished);
    assert_eq!(
        job(store.as_ref(), new.track_id).await,
        Job {
            track_id: new.track_id,
            source_key: new.source_key.clone(),
            format: new.format.clone(),
            status: JobStatus::Done,
            attempts: 2,
            error: None,
            packaged: Some(packaged()),
            created_at: t0,
            updated_at: done_at,
        },
        "done, with its packaging read back whole and the last fault cleared"
    );
    assert_eq!(pending(store.as_ref()).await, std::slice::from_ref(&event), "exactly one event");
    assert_eq!(pending(store.as_ref()).await[0].event_type, TrackTranscoded::TYPE);

    let (again, _) = finish(store.as_ref(), new.track_id, "worker", &result, done_at).await;
    assert!(!again, "a finished job is no one's");
    assert_eq!(pending(store.as_ref()).await, [event], "still one event");
    assert!(!store.extend_lease(new.track_id, "worker", t0 + secs(600)).await.unwrap());
    assert_eq!(
        store.claim("worker", t0 + secs(3_600), t0 + secs(3_660)).await.unwrap(),
        None,
        "a finished job is never claimed again"
    );
}

async fn a_failed_job_keeps_its_reason(store: Arc<dyn StreamingStore>) {
    let t0 = now();
    let new = queued(store.as_ref(), t0).await;
    claimed(store.as_ref(), "worker", t0, t0 + secs(30)).await;

    let reason = "the upload is not audio ffmpeg can decode".to_owned();
    let result = JobResult::Failed(reason.clone());
    let (finished, event) = finish(store.as_ref(), new.track_id, "worker", &result, t0).await;
    assert!(finished);
    let failed = job(store.as_ref(), new.track_id).await;
    assert_eq!(
        (failed.status, failed.attempts, failed.error, failed.packaged),
        (JobStatus::Failed, 1, Some(reason.clone()), None)
    );
    let events = pending(store.as_ref()).await;
    assert_eq!(events, [event]);
    let recorded: TrackTranscoded = events[0].decode().unwrap();
    assert_eq!(recorded.outcome, TranscodeOutcome::Failed { error: reason });
    assert_eq!(store.claim("worker", t0 + secs(3_600), t0 + secs(3_660)).await.unwrap(), None);
}

async fn the_queue_depth_counts_waiting_and_running_jobs(store: Arc<dyn StreamingStore>) {
    let t0 = now();
    assert_eq!(store.queue_depth().await.unwrap(), QueueDepth::default());
    let running = queued(store.as_ref(), t0 - secs(3)).await;
    let done = queued(store.as_ref(), t0 - secs(2)).await;
    queued(store.as_ref(), t0 - secs(1)).await;
    queued(store.as_ref(), t0 + secs(600)).await;
    assert_eq!(claimed(store.as_ref(), "a", t0, t0 + secs(30)).await.track_id, running.track_id);
    assert_eq!(claimed(store.as_ref(), "b", t0, t0 + secs(30)).await.track_id, done.track_id);
    finish(store.as_ref(), done.track_id, "b", &JobResult::Done(packaged()), t0).await;
    assert_eq!(
        store.queue_depth().await.unwrap(),
        QueueDepth { queued: 2, running: 1 },
        "a job due later waits too; a finished one is gone from the queue"
    );
}

async fn running_jobs_are_requeued(store: Arc<dyn StreamingStore>) {
    let t0 = now();
    let done = queued(store.as_ref(), t0 - secs(3)).await;
    let running = queued(store.as_ref(), t0 - secs(2)).await;
    let lapsed = queued(store.as_ref(), t0 - secs(1)).await;
    let waiting = queued(store.as_ref(), t0 + secs(600)).await;
    assert_eq!(claimed(store.as_ref(), "old", t0, t0 + secs(30)).await.track_id, done.track_id);
    finish(store.as_ref(), done.track_id, "old", &JobResult::Done(packaged()), t0).await;
    assert_eq!(claimed(store.as_ref(), "old", t0, t0 + secs(300)).await.track_id, running.track_id);
    assert_eq!(claimed(store.as_ref(), "old", t0, t0 - secs(1)).await.track_id, lapsed.track_id);

    let restart = t0 + secs(5);
    assert_eq!(store.requeue_running(restart).await.unwrap(), 2);
    for track_id in [running.track_id, lapsed.track_id] {
        let requeued = job(store.as_ref(), track_id).await;
        assert_eq!(
            (requeued.status, requeued.attempts, requeued.updated_at),
            (JobStatus::Queued, 1, restart)
        );
    }
    assert_eq!(job(store.as_ref(), done.track_id).await.status, JobStatus::Done);
    assert_eq!(job(store.as_ref(), waiting.track_id).await.status, JobStatus::Queued);
    assert!(!store.extend_lease(running.track_id, "old", t0 + secs(600)).await.unwrap());

    let mut reclaimed = Vec::new();
    while let Some(job) = store.claim("new", restart, restart + secs(30)).await.unwrap() {
        assert_eq!((job.attempts, job.status), (2, JobStatus::Running));
        reclaimed.push(job.track_id);
    }
    reclaimed.sort();
    let mut expected = vec![running.track_id, lapsed.track_id];
    expected.sort();
    assert_eq!(reclaimed, expected, "both run again at once; the waiting job stays due later");
    assert_eq!(store.requeue_running(restart).await.unwrap(), 2);
    assert_eq!(store.requeue_running(restart).await.unwrap(), 0, "nothing running");
}

async fn forgetting_is_once_per_event_and_deletes_the_job(store: Arc<dyn StreamingStore>) {
    let t0 = now();
    let upload = Uuid::now_v7();
    let new = new_job(t0);
    assert!(store.enqueue(CONSUMER, upload, &new).await.unwrap());
    let other = queued(store.as_ref(), t0).await;

    let deletion = Uuid::now_v7();
    assert!(store.forget(CONSUMER, deletion, new.track_id).await.unwrap());
    assert_eq!(store.job(new.track_id).await.unwrap(), None);
    assert!(!store.forget(CONSUMER, deletion, new.track_id).await.unwrap(), "redelivery");
    assert!(!store.forget(CONSUMER, Uuid::now_v7(), new.track_id).await.unwrap(), "no job left");
    assert_eq!(job(store.as_ref(), other.track_id).await.status, JobStatus::Queued, "untouched");

    assert!(!store.enqueue(CONSUMER, upload, &new).await.unwrap(), "the upload was handled");
    assert_eq!(store.job(new.track_id).await.unwrap(), None, "a redelivery does not revive it");

    // A handled deletion that comes again does not delete a job queued since.
    assert!(store.enqueue(CONSUMER, Uuid::now_v7(), &new).await.unwrap());
    assert!(!store.forget(CONSUMER, deletion, new.track_id).await.unwrap());
    assert_eq!(job(store.as_ref(), new.track_id).await.status, JobStatus::Queued);

    // A running job can be forgotten too; its worker then finds it gone.
    let running = claimed(store.as_ref(), "worker", t0, t0 + secs(30)).await;
    assert!(store.forget(CONSUMER, Uuid::now_v7(), running.track_id).await.unwrap());
    assert!(!store.extend_lease(running.track_id, "worker", t0 + secs(60)).await.unwrap());
    let (finished, _) =
        finish(store.as_ref(), running.track_id, "worker", &JobResult::Done(packaged()), t0).await;
    assert!(!finished);
    assert!(pending(store.as_ref()).await.is_empty());
}

async fn signing_keys_round_trip_and_duplicate_ids_conflict(store: Arc<dyn StreamingStore>) {
    assert!(store.signing_keys().await.unwrap().is_empty());
    let t0 = now();
    let first = SigningKey::generate(t0);
    let second = SigningKey {
        id: testkit::unique("kid"),
        secret: (0..=255).collect(),
        created_at: t0 + secs(3_600),
    };
    store.add_signing_key(&first).await.unwrap();
    store.add_signing_key(&second).await.unwrap();

    let duplicate = SigningKey { secret: vec![7; 32], created_at: t0 + secs(1), ..first.clone() };
    let error = store.add_signing_key(&duplicate).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict), "{error:?}");

    let mut keys = store.signing_keys().await.unwrap();
    keys.sort_by_key(|key| key.created_at);
    assert_eq!(keys, [first, second], "secrets and times read back exactly");
}

async fn concurrent_claimers_never_share_a_job(store: Arc<dyn StreamingStore>) {
    const JOBS: usize = 20;
    const CLAIMERS: usize = 8;
    let t0 = now();
    let mut queued_ids = HashSet::new();
    for n in 0..JOBS {
        let created_at = t0 - TimeDelta::milliseconds(i64::try_from(n).unwrap());
        queued_ids.insert(queued(store.as_ref(), created_at).await.track_id);
    }

    let start = Arc::new(tokio::sync::Barrier::new(CLAIMERS));
    let claimers: Vec<_> = (0..CLAIMERS)
        .map(|n| {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                let owner = format!("worker-{n}");
                let mut claimed = Vec::new();
                start.wait().await;
                for _ in 0..=JOBS {
                    match store.claim(&owner, t0, t0 + secs(300)).await.unwrap() {
                        Some(job) => claimed.push((job.track_id, owner.clone(), job.attempts)),
                        None => break,
                    }
                }
                claimed
            })
        })
        .collect();

    let mut claims = Vec::new();
    for claimer in claimers {
        claims.extend(claimer.await.unwrap());
    }
    let claimed_ids: HashSet<Uuid> = claims.iter().map(|(track_id, _, _)| *track_id).collect();
    assert_eq!(claims.len(), JOBS, "every job claimed exactly once: {claims:?}");
    assert_eq!(claimed_ids, queued_ids, "no job claimed twice, none left behind");
    assert!(claims.iter().all(|(_, _, attempts)| *attempts == 1), "{claims:?}");
    for (track_id, owner, _) in &claims {
        assert!(
            store.extend_lease(*track_id, owner, t0 + secs(600)).await.unwrap(),
            "{owner} holds {track_id}"
        );
    }
    assert_eq!(store.claim("late", t0, t0 + secs(300)).await.unwrap(), None);
}

async fn the_outbox_drains(store: Arc<dyn StreamingStore>) {
    let t0 = now();
    let one = queued(store.as_ref(), t0 - secs(2)).await;
    let two = queued(store.as_ref(), t0 - secs(1)).await;
    let mut events = Vec::new();
    for new in [&one, &two] {
        let job = claimed(store.as_ref(), "worker", t0, t0 + secs(30)).await;
        assert_eq!(job.track_id, new.track_id);
        let result = JobResult::Failed(format!("failure {}", events.len()));
        let (finished, event) = finish(store.as_ref(), job.track_id, "worker", &result, t0).await;
        assert!(finished);
        events.push(event);
    }
    assert_eq!(OutboxStore::pending(store.as_ref(), 10).await.unwrap(), events, "in order");
    assert_eq!(OutboxStore::pending(store.as_ref(), 1).await.unwrap(), events[..1]);

    let published_at = now();
    store.mark_published(&[events[0].id], published_at).await.unwrap();
    assert_eq!(OutboxStore::pending(store.as_ref(), 10).await.unwrap(), events[1..]);
    store.mark_published(&[events[1].id], published_at).await.unwrap();
    store.mark_published(&[events[1].id], published_at + secs(9)).await.unwrap();
    assert!(OutboxStore::pending(store.as_ref(), 10).await.unwrap().is_empty());

    assert_eq!(store.prune_published(published_at).await.unwrap(), 0, "nothing older");
    assert_eq!(store.prune_published(published_at + secs(1)).await.unwrap(), 1);
    assert_eq!(store.prune_published(published_at + secs(10)).await.unwrap(), 1);
    assert_eq!(store.prune_published(published_at + secs(10)).await.unwrap(), 0);
}

async fn undecodable_rows_are_reported_as_corrupt(fixture: &StoreFixture) {
    let store = fixture.store();
    let t0 = now();
    let new = queued(store.as_ref(), t0).await;

    fixture
        .execute(
            r#"UPDATE transcode_jobs SET packaged = '{"duration_ms": "long"}'
               WHERE track_id = $1"#,
            new.track_id,
        )
        .await;
    let error = store.job(new.track_id).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt(reason) if reason.contains("packaging")),
        "{error:?}"
    );
    let error = store.claim("worker", t0, t0 + secs(30)).await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "a claim reports it too: {error:?}");

    fixture
        .execute(
            "UPDATE transcode_jobs SET status = 'queued', packaged = NULL, attempts = -1
             WHERE track_id = $1",
            new.track_id,
        )
        .await;
    let error = store.job(new.track_id).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt(reason) if reason.contains("attempts")),
        "{error:?}"
    );

    fixture
        .execute(
            r#"UPDATE transcode_jobs SET attempts = 0,
                   packaged = '{"duration_ms": 1, "loudness_lufs": null, "renditions": []}'
               WHERE track_id = $1"#,
            new.track_id,
        )
        .await;
    let repaired = job(store.as_ref(), new.track_id).await;
    assert_eq!(
        repaired.packaged,
        Some(Packaged { duration_ms: 1, loudness_lufs: None, renditions: Vec::new() }),
        "readable again once repaired"
    );
}
