//! Request samples for the analytics service. Every answered API request leaves a
//! [`RequestSample`] named by its route template, never its raw path, so that ids in paths
//! do not turn one route into millions. A background task publishes what gathered as one
//! `api.request` event per interval. Recording never waits on the bus: when the buffer is
//! full the sample is dropped and counted, because analytics may lose a sample but the API
//! must not slow down for it.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{Method, header},
    middleware::Next,
    response::Response,
};
use bus::{
    BusError, Envelope, EventBus, Message,
    events::{ApiRequest, RequestSample},
};
use chrono::Utc;
use kernel::background::{Background, StopSignal};
use tokio::{sync::mpsc, time::MissedTickBehavior};

use crate::GatewayConfig;

/// The route of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Counts samples lost to a full buffer or to a bus that stayed unavailable.
pub const DROPPED_TOTAL: &str = "api_request_samples_dropped_total";

/// Events kept while the bus refuses them. Past this the oldest go: analytics wants the
/// present more than a complete past, and memory stays bounded through a long outage.
const MAX_PENDING: usize = 10;

/// The buffer between requests and the flusher never grows past this, whatever the batch.
const MAX_BUFFERED: usize = 1 << 20;

/// One warning per this long while publishing keeps failing, so an outage is one line a
/// minute rather than one a second.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The hot-path end: hands samples to the flusher without waiting.
#[derive(Clone)]
pub struct RequestRecorder {
    samples: mpsc::Sender<RequestSample>,
}

impl RequestRecorder {
    fn push(&self, sample: RequestSample) {
        if self.samples.try_send(sample).is_err() {
            metrics::counter!(DROPPED_TOTAL).increment(1);
        }
    }
}

/// Marks a response that is not API traffic (media, operations, the docs), which the
/// recorder leaves out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unrecorded;

pub(crate) async fn unrecorded(mut response: Response) -> Response {
    response.extensions_mut().insert(Unrecorded);
    response
}

/// Wraps the whole router, outside the budgets and token checks, so that a refused request
/// is recorded with the status and time its caller saw.
pub(crate) async fn record(
    State(recorder): State<RequestRecorder>,
    request: Request,
    next: Next,
) -> Response {
    // A CORS preflight is the browser asking, answered before any route runs (so before
    // the media and operations marks too); counting it would only dilute the latencies of
    // the routes it names.
    if request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return next.run(request).await;
    }
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.extensions().get::<Unrecorded>().is_none() {
        recorder.push(RequestSample {
            route: route.as_ref().map_or(UNMATCHED, MatchedPath::as_str).to_owned(),
            method: method.as_str().to_owned(),
            status: response.status().as_u16(),
            duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            at: Utc::now(),
        });
    }
    response
}

/// Starts the flusher that publishes recorded samples on `bus`; stopping it publishes
/// what is left.
pub fn start(bus: Arc<dyn EventBus>, config: &GatewayConfig) -> (RequestRecorder, Background) {
    let (recorder, flusher) = Flusher::new(bus, config.request_events_max_batch);
    let every = Duration::from_millis(config.request_events_flush_ms.max(1));
    (recorder, Background::spawn(move |stopped| flusher.run(every, stopped)))
}

/// Names this gateway in its events (and keys them): the host and process, which is what
/// an operator looks for when one instance misbehaves.
fn instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "gateway".to_owned());
    format!("{host}-{}", std::process::id())
}

/// An event ready to publish. It keeps its event id across retries, so a publish that
/// landed but reported a failure is not appended twice.
struct Pending {
    message: Message,
    samples: usize,
}

struct Flusher {
    bus: Arc<dyn EventBus>,
    instance: String,
    samples: mpsc::Receiver<RequestSample>,
    max_batch: usize,
    /// Oldest first, so events go out in the order their requests were answered.
    pending: VecDeque<Pending>,
    warned_at: Option<Instant>,
    /// Failed publishes since the last warning.
    failures: u64,
}

impl Flusher {
    fn new(bus: Arc<dyn EventBus>, max_batch: usize) -> (RequestRecorder, Self) {
        let max_batch = max_batch.max(1);
        // Room for as many samples as the flusher may hold pending, so that a slow bus
        // shows as pending events dropped, not as requests finding the buffer full.
        let buffered = max_batch.saturating_mul(MAX_PENDING).min(MAX_BUFFERED);
        let (sender, samples) = mpsc::channel(buffered);
        let flusher = Self {
            bus,
            instance: instance_id(),
            samples,
            max_batch,
            pending: VecDeque::new(),
            warned_at: None,
            failures: 0,
        };
        (RequestRecorder { samples: sender }, flusher)
    }

    async fn run(mut self, every: Duration, mut stopped: StopSignal) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stopped => break,
                _ = ticks.tick() => self.flush().await,
            }
        }
        // The server has stopped answering by now, so this is the last of the samples.
        self.flush().await;
        let lost: usize = self.pending.drain(..).map(|pending| pending.samples).sum();
        if lost > 0 {
            metrics::counter!(DROPPED_TOTAL).increment(lost as u64);
            tracing::warn!(lost, "request samples not published before shutdown");
        }
    }

    async fn flush(&mut self) {
        self.gather();
        while let Some(next) = self.pending.front() {
            match self.bus.publish(std::slice::from_ref(&next.message)).await {
                Ok(()) => {
                    self.pending.pop_front();
                }
                Err(error) => {
                    self.failed(&error);
                    break;
                }
            }
        }
    }

    /// Seals what the buffer holds now into events. Only what is there now: under steady
    /// traffic the buffer is never empty, and the flusher must get on to publishing.
    fn gather(&mut self) {
        let mut batch = Vec::new();
        for _ in 0..self.samples.len() {
            let Ok(sample) = self.samples.try_recv() else { break };
            batch.push(sample);
            if batch.len() == self.max_batch {
                self.seal(std::mem::take(&mut batch));
            }
        }
        if !batch.is_empty() {
            self.seal(batch);
        }
    }

    fn seal(&mut self, requests: Vec<RequestSample>) {
        let samples = requests.len();
        let event = ApiRequest { instance: self.instance.clone(), requests };
        let message = Envelope::new(&event, Utc::now()).to_message();
        self.pending.push_back(Pending { message, samples });
        while self.pending.len() > MAX_PENDING {
            if let Some(oldest) = self.pending.pop_front() {
                metrics::counter!(DROPPED_TOTAL).increment(oldest.samples as u64);
            }
        }
    }

    fn failed(&mut self, error: &BusError) {
        self.failures += 1;
        if self.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                %error,
                failures = self.failures,
                pending = self.pending.len(),
                "cannot publish request samples yet",
            );
            self.warned_at = Some(Instant::now());
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    };

    use async_trait::async_trait;
    use bus::{Position, Subscription, TopicInfo};

    use super::*;

    /// Keeps what is published, or refuses it while `down`.
    #[derive(Default)]
    struct FakeBus {
        down: AtomicBool,
        published: Mutex<Vec<Message>>,
    }

    impl FakeBus {
        fn events(&self) -> Vec<Envelope> {
            let published = self.published.lock().unwrap();
            published.iter().map(|message| Envelope::from_bytes(&message.value).unwrap()).collect()
        }

        fn samples(&self) -> Vec<Vec<RequestSample>> {
            self.events()
                .iter()
                .map(|envelope| envelope.decode::<ApiRequest>().unwrap().requests)
                .collect()
        }
    }

    #[async_trait]
    impl EventBus for FakeBus {
        async fn publish(&self, batch: &[Message]) -> Result<(), BusError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(BusError::Unavailable("down for the test".into()));
            }
            self.published.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
        async fn subscribe(&self, _: &str, _: &str) -> Result<Box<dyn Subscription>, BusError> {
            Err(BusError::Invalid("not in this test".into()))
        }
        async fn read(&self, _: &str, _: Position) -> Result<Box<dyn Subscription>, BusError> {
            Err(BusError::Invalid("not in this test".into()))
        }
        async fn reset_group(&self, _: &str, _: &str, _: Position) -> Result<(), BusError> {
            Ok(())
        }
        async fn topics(&self) -> Result<Vec<TopicInfo>, BusError> {
            Ok(Vec::new())
        }
        async fn ensure_topic(&self, _: &str) -> Result<(), BusError> {
            Ok(())
        }
        async fn ping(&self) -> Result<(), BusError> {
            Ok(())
        }
        fn engine(&self) -> &'static str {
            "fake"
        }
    }

    fn sample(status: u16) -> RequestSample {
        RequestSample {
            route: "/v1/tracks/{id}".into(),
            method: "GET".into(),
            status,
            duration_us: 12,
            at: Utc::now(),
        }
    }

    fn config(max_batch: usize) -> GatewayConfig {
        GatewayConfig {
            // Long enough that a test decides when events go out, by stopping the flusher.
            request_events_flush_ms: 3_600_000,
            request_events_max_batch: max_batch,
            ..GatewayConfig::default()
        }
    }

    #[tokio::test]
    async fn a_busy_interval_goes_out_as_several_events_in_order_when_stopped() {
        let bus = Arc::new(FakeBus::default());
        let (recorder, flusher) = start(bus.clone(), &config(2));
        // The first tick fires at once; let it pass before anything is recorded.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for status in [200, 201, 404, 500, 503] {
            recorder.push(sample(status));
        }
        flusher.stop().await;

        let batches = bus.samples();
        let statuses: Vec<Vec<u16>> =
            batches.iter().map(|batch| batch.iter().map(|s| s.status).collect()).collect();
        assert_eq!(statuses, [vec![200, 201], vec![404, 500], vec![503]]);
        let events = bus.events();
        assert!(events.iter().all(|event| event.event_type == "api.request"));
        let published = bus.published.lock().unwrap();
        assert!(published.iter().all(|message| message.topic == "api.request"));
        assert!(published.iter().all(|message| message.key == instance_id()));
    }

    #[tokio::test]
    async fn a_failed_publish_is_retried_with_the_same_event_id() {
        let bus = Arc::new(FakeBus::default());
        let (recorder, mut flusher) = Flusher::new(bus.clone(), 100);
        bus.down.store(true, Ordering::SeqCst);
        recorder.push(sample(200));
        flusher.flush().await;
        assert!(bus.events().is_empty());
        let kept = flusher.pending.front().unwrap().message.id;

        bus.down.store(false, Ordering::SeqCst);
        recorder.push(sample(404));
        flusher.flush().await;
        let events = bus.events();
        assert_eq!(events.len(), 2, "the kept event, then the new one");
        assert_eq!(Some(events[0].id), kept);
        assert_eq!(bus.samples()[0][0].status, 200);
        assert_eq!(bus.samples()[1][0].status, 404);
        assert!(flusher.pending.is_empty());
    }

    #[tokio::test]
    async fn a_long_outage_keeps_only_the_newest_events() {
        let bus = Arc::new(FakeBus::default());
        let (recorder, mut flusher) = Flusher::new(bus.clone(), 100);
        bus.down.store(true, Ordering::SeqCst);
        for status in 0..(MAX_PENDING as u16 + 3) {
            recorder.push(sample(status));
            flusher.flush().await;
        }
        assert_eq!(flusher.pending.len(), MAX_PENDING);

        bus.down.store(false, Ordering::SeqCst);
        flusher.flush().await;
        let statuses: Vec<u16> = bus.samples().iter().map(|batch| batch[0].status).collect();
        assert_eq!(statuses, (3..MAX_PENDING as u16 + 3).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_sample_instead_of_waiting() {
        let (sender, mut receiver) = mpsc::channel(1);
        let recorder = RequestRecorder { samples: sender };
        recorder.push(sample(200));
        recorder.push(sample(201));
        assert_eq!(receiver.recv().await.unwrap().status, 200);
        assert!(receiver.try_recv().is_err(), "the second sample was dropped");
    }
}
