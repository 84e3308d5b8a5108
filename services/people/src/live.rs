//! The live channel's fan-out. A message is published on a named channel (`user:<id>` for
//! what is addressed to one person, `presence:<id>` for what someone is playing) and
//! reaches every live stream subscribed to that channel, in this process and, through
//! Redis pub/sub, in every other replica.
//!
//! Each process keeps one registry of its streams by channel and, with Redis, one
//! subscription per channel that has a local stream; a message crosses the network once
//! per replica, however many of its streams want it. Live messages are best-effort:
//! what must not be lost (notifications) is stored first, and a stream that reconnects
//! reads it back.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use kernel::engine::{EngineError, EngineUrl};
use tokio::sync::mpsc;

/// One message as streams receive it: an SSE event name and its JSON data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMessage {
    pub event: String,
    pub data: String,
}

impl LiveMessage {
    pub fn new(event: &str, data: &impl serde::Serialize) -> Self {
        Self {
            event: event.to_owned(),
            data: serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned()),
        }
    }

    /// As it crosses Redis: the event name, a newline, the data.
    fn encode(&self) -> String {
        format!("{}\n{}", self.event, self.data)
    }

    fn decode(raw: &str) -> Option<Self> {
        let (event, data) = raw.split_once('\n')?;
        Some(Self { event: event.to_owned(), data: data.to_owned() })
    }
}

pub fn user_channel(user_id: uuid::Uuid) -> String {
    format!("user:{user_id}")
}

pub fn presence_channel(user_id: uuid::Uuid) -> String {
    format!("presence:{user_id}")
}

type Sender = mpsc::Sender<Arc<LiveMessage>>;

#[derive(Default)]
struct Registry {
    /// Streams by channel, each by its subscriber id.
    channels: HashMap<String, HashMap<u64, Sender>>,
}

/// What carries messages between processes.
enum Bridge {
    /// One process: publishing is delivering.
    Local,
    Redis(RedisBridge),
}

struct RedisBridge {
    publisher: redis::aio::ConnectionManager,
    /// Channel names to (un)subscribe, for the task that owns the subscription.
    changes: mpsc::UnboundedSender<Change>,
}

enum Change {
    Subscribe(String),
    Unsubscribe(String),
}

/// Prefixes Tonearm's channels in a Redis that others may share.
const REDIS_PREFIX: &str = "tonearm:live:";

pub struct LiveHub {
    registry: Arc<Mutex<Registry>>,
    bridge: Bridge,
    next_id: AtomicU64,
    buffer: usize,
    /// Set when the process stops: every stream ends, so that shutdown need not wait for
    /// players to hang up (they reconnect to another replica, or to this one restarted).
    closing: tokio::sync::watch::Sender<bool>,
}

impl LiveHub {
    /// A hub for one process.
    pub fn local(buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            registry: Arc::default(),
            bridge: Bridge::Local,
            next_id: AtomicU64::new(1),
            buffer: buffer.max(1),
            closing: tokio::sync::watch::Sender::new(false),
        })
    }

    /// A hub that shares messages with every replica connected to the same Redis.
    pub async fn redis(url: &EngineUrl, buffer: usize) -> Result<Arc<Self>, EngineError> {
        let unreachable = |reason: String| EngineError::Unreachable {
            engine: "redis",
            url: url.redacted(),
            reason,
        };
        let client = redis::Client::open(url.expose())
            .map_err(|e| EngineError::Invalid { url: url.redacted(), reason: e.to_string() })?;
        let publisher = tokio::time::timeout(
            Duration::from_secs(5),
            redis::aio::ConnectionManager::new(client.clone()),
        )
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let registry: Arc<Mutex<Registry>> = Arc::default();
        let (changes, requests) = mpsc::unbounded_channel();
        tokio::spawn(relay_from_redis(client, registry.clone(), requests));
        Ok(Arc::new(Self {
            registry,
            bridge: Bridge::Redis(RedisBridge { publisher, changes }),
            next_id: AtomicU64::new(1),
            buffer: buffer.max(1),
            closing: tokio::sync::watch::Sender::new(false),
        }))
    }

    /// Ends every stream, now and from now on.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub fn engine(&self) -> &'static str {
        match self.bridge {
            Bridge::Local => "memory",
            Bridge::Redis(_) => "redis",
        }
    }

    /// Sends `message` to every stream on `channel`, here and in other replicas.
    pub async fn publish(&self, channel: &str, message: LiveMessage) {
        match &self.bridge {
            Bridge::Local => deliver(&self.registry, channel, Arc::new(message)),
            Bridge::Redis(bridge) => {
                let mut connection = bridge.publisher.clone();
                let published: Result<(), _> = tokio::time::timeout(
                    Duration::from_millis(500),
                    redis::cmd("PUBLISH")
                        .arg(format!("{REDIS_PREFIX}{channel}"))
                        .arg(message.encode())
                        .query_async(&mut connection),
                )
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|result| result.map_err(|e| e.to_string()));
                if let Err(error) = published {
                    // Live messages are best-effort; the state they announce is stored.
                    tracing::warn!(%error, channel, "cannot publish a live message");
                    metrics::counter!("people_live_publish_failures_total").increment(1);
                }
            }
        }
    }

    /// A new stream, subscribed to `channels`.
    pub fn subscribe(self: &Arc<Self>, channels: impl IntoIterator<Item = String>) -> Subscription {
        let (sender, receiver) = mpsc::channel(self.buffer);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subscription = Subscription {
            hub: self.clone(),
            id,
            sender,
            receiver,
            channels: HashSet::new(),
            closing: self.closing.subscribe(),
        };
        subscription.set_channels(channels.into_iter().collect());
        metrics::gauge!("people_live_streams").increment(1.0);
        subscription
    }

    fn join(&self, channel: &str, id: u64, sender: &Sender) {
        let first = {
            let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            let streams = registry.channels.entry(channel.to_owned()).or_default();
            streams.insert(id, sender.clone());
            streams.len() == 1
        };
        if first && let Bridge::Redis(bridge) = &self.bridge {
            let _ = bridge.changes.send(Change::Subscribe(channel.to_owned()));
        }
    }

    fn leave(&self, channel: &str, id: u64) {
        let last = {
            let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            match registry.channels.get_mut(channel) {
                Some(streams) => {
                    streams.remove(&id);
                    let empty = streams.is_empty();
                    if empty {
                        registry.channels.remove(channel);
                    }
                    empty
                }
                None => false,
            }
        };
        if last && let Bridge::Redis(bridge) = &self.bridge {
            let _ = bridge.changes.send(Change::Unsubscribe(channel.to_owned()));
        }
    }
}

/// Hands `message` to each local stream on `channel`. A stream whose buffer is full misses
/// it rather than holding up the others.
fn deliver(registry: &Mutex<Registry>, channel: &str, message: Arc<LiveMessage>) {
    let registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(streams) = registry.channels.get(channel) else {
        return;
    };
    for sender in streams.values() {
        if sender.try_send(message.clone()).is_err() {
            metrics::counter!("people_live_dropped_total").increment(1);
        }
    }
}

/// Owns the Redis subscription: follows the registry's channel changes and hands what
/// arrives to local streams. When the connection drops, it connects again and subscribes
/// to every channel that still has a stream.
async fn relay_from_redis(
    client: redis::Client,
    registry: Arc<Mutex<Registry>>,
    mut changes: mpsc::UnboundedReceiver<Change>,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(error) => {
                tracing::warn!(%error, "live channel cannot reach Redis; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        pause = Duration::from_millis(100);
        let (mut sink, mut stream) = pubsub.split();
        let current: Vec<String> = {
            let registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
            registry.channels.keys().map(|channel| format!("{REDIS_PREFIX}{channel}")).collect()
        };
        if !current.is_empty() && sink.subscribe(&current).await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                change = changes.recv() => {
                    let result = match change {
                        None => return,
                        Some(Change::Subscribe(channel)) => {
                            sink.subscribe(format!("{REDIS_PREFIX}{channel}")).await
                        }
                        Some(Change::Unsubscribe(channel)) => {
                            sink.unsubscribe(format!("{REDIS_PREFIX}{channel}")).await
                        }
                    };
                    if let Err(error) = result {
                        tracing::warn!(%error, "live channel lost Redis; reconnecting");
                        break;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else {
                        tracing::warn!("live channel lost Redis; reconnecting");
                        break;
                    };
                    let name = message.get_channel_name();
                    let Some(channel) = name.strip_prefix(REDIS_PREFIX) else { continue };
                    let Ok(payload) = message.get_payload::<String>() else { continue };
                    if let Some(live) = LiveMessage::decode(&payload) {
                        deliver(&registry, channel, Arc::new(live));
                    }
                }
            }
        }
    }
}

/// One live stream's place in the hub; leaving its channels when dropped.
pub struct Subscription {
    hub: Arc<LiveHub>,
    id: u64,
    sender: Sender,
    receiver: mpsc::Receiver<Arc<LiveMessage>>,
    channels: HashSet<String>,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Subscription {
    /// The next message on any of its channels; `None` once the hub closes.
    pub async fn next(&mut self) -> Option<Arc<LiveMessage>> {
        tokio::select! {
            message = self.receiver.recv() => message,
            _ = self.closing.wait_for(|closing| *closing) => None,
        }
    }

    /// Moves the stream to exactly `channels`, joining and leaving only what changed.
    pub fn set_channels(&mut self, channels: HashSet<String>) {
        for gone in self.channels.difference(&channels) {
            self.hub.leave(gone, self.id);
        }
        for new in channels.difference(&self.channels) {
            self.hub.join(new, self.id, &self.sender);
        }
        self.channels = channels;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for channel in &self.channels {
            self.hub.leave(channel, self.id);
        }
        metrics::gauge!("people_live_streams").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u32) -> LiveMessage {
        LiveMessage::new("tick", &n)
    }

    #[tokio::test]
    async fn a_message_reaches_the_streams_on_its_channel_only() {
        let hub = LiveHub::local(8);
        let mut a = hub.subscribe(["user:a".to_owned()]);
        let mut b = hub.subscribe(["user:b".to_owned(), "presence:a".to_owned()]);
        hub.publish("user:a", message(1)).await;
        hub.publish("presence:a", message(2)).await;
        assert_eq!(a.next().await.unwrap().data, "1");
        assert_eq!(b.next().await.unwrap().data, "2");
        assert!(a.receiver.try_recv().is_err());
    }

    #[tokio::test]
    async fn moving_and_dropping_streams_keeps_the_registry_exact() {
        let hub = LiveHub::local(8);
        let mut a = hub.subscribe(["x".to_owned(), "y".to_owned()]);
        a.set_channels(["y".to_owned(), "z".to_owned()].into());
        {
            let registry = hub.registry.lock().unwrap();
            let mut names: Vec<_> = registry.channels.keys().cloned().collect();
            names.sort();
            assert_eq!(names, ["y", "z"]);
        }
        hub.publish("x", message(1)).await;
        hub.publish("z", message(2)).await;
        assert_eq!(a.next().await.unwrap().data, "2");
        drop(a);
        assert!(hub.registry.lock().unwrap().channels.is_empty());
    }

    #[tokio::test]
    async fn a_full_stream_misses_messages_without_holding_up_others() {
        let hub = LiveHub::local(1);
        let mut slow = hub.subscribe(["c".to_owned()]);
        let mut quick = hub.subscribe(["c".to_owned()]);
        hub.publish("c", message(1)).await;
        assert_eq!(quick.next().await.unwrap().data, "1");
        hub.publish("c", message(2)).await;
        assert_eq!(quick.next().await.unwrap().data, "2");
        assert_eq!(slow.next().await.unwrap().data, "1");
        assert!(slow.receiver.try_recv().is_err(), "the second was dropped for the slow one");
    }

    #[tokio::test]
    async fn closing_the_hub_ends_every_stream() {
        let hub = LiveHub::local(8);
        let mut open = hub.subscribe(["c".to_owned()]);
        hub.close();
        assert!(open.next().await.is_none());
        assert!(hub.subscribe(["c".to_owned()]).next().await.is_none(), "and any new one");
    }

    #[test]
    fn messages_cross_redis_intact() {
        let original = LiveMessage::new("now_playing", &serde_json::json!({"a": "b\nc"}));
        assert_eq!(LiveMessage::decode(&original.encode()), Some(original));
    }
}
