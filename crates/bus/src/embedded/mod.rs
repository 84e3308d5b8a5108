//! The embedded event log (`embedded://`, the default under `tonearm up`): Kafka's model on
//! one machine. Topics have partitions; a message's key picks its partition; each partition
//! is an append-only series of checksummed segment files with an offset index, fsynced per
//! batch and recovered from a torn tail on open. Consumer groups keep their positions on
//! disk. Old segments go by age and size. Another process (the `tonearm events` tools) can
//! read the log while the server appends to it; only one process may append.

mod groups;
mod partition;
mod record;

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use self::{
    groups::{Groups, Offsets},
    partition::{PartitionReader, PartitionWriter},
    record::StoredRecord,
};
use crate::{
    BusConfig,
    port::{BusError, EventBus, Message, Position, Record, Subscription, TopicInfo},
};

#[derive(Debug, Clone)]
pub struct LogOptions {
    pub partitions: u32,
    pub segment_bytes: u64,
    pub retention: Duration,
    pub retention_bytes: u64,
    pub index_interval_bytes: u64,
    /// How many recent event ids each partition remembers to refuse duplicates.
    pub recent_ids: usize,
}

impl From<&BusConfig> for LogOptions {
    fn from(config: &BusConfig) -> Self {
        Self {
            partitions: config.partitions.max(1),
            segment_bytes: config.segment_bytes.max(4096),
            retention: Duration::from_secs(config.retention_hours.saturating_mul(3600)),
            retention_bytes: config.retention_bytes,
            index_interval_bytes: 4096,
            recent_ids: 100_000,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    partitions: u32,
}

struct Topic {
    name: String,
    dir: PathBuf,
    partitions: u32,
    /// Writers exist only in the process that holds the log's lock.
    writers: Vec<Mutex<Option<PartitionWriter>>>,
    /// Per partition, the first offset not yet durable: readers in this process stop there.
    ends: Vec<AtomicU64>,
    appended: Notify,
}

impl Topic {
    fn partition_dir(&self, partition: u32) -> PathBuf {
        self.dir.join(partition.to_string())
    }

    /// Appends to one partition and lets this process's readers see the new records.
    fn append(&self, partition: usize, messages: &[Message], now_ms: i64) -> Result<(), BusError> {
        let mut guard = self.writers[partition].lock().map_err(io_error)?;
        let writer = guard.as_mut().ok_or_else(|| BusError::Unavailable("read-only log".into()))?;
        let messages: Vec<&Message> = messages.iter().collect();
        writer.append(&messages, now_ms)?;
        self.ends[partition].store(writer.next_offset(), Ordering::Release);
        Ok(())
    }
}

struct Inner {
    root: PathBuf,
    options: LogOptions,
    /// Held for the life of the log when this process is the writer.
    writer_lock: Option<File>,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    /// Held while a topic is opened for the first time: consumers of one topic start
    /// together, and two of them creating its files at once would trip over each other
    /// (and open two writers of one partition).
    opening: Mutex<()>,
    groups: Groups,
}

#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

fn io_error(error: impl std::fmt::Display) -> BusError {
    BusError::Io(std::io::Error::other(error.to_string()))
}

/// Names become file names, so they are kept to a safe alphabet.
fn checked_name(kind: &str, name: &str) -> Result<(), BusError> {
    let safe = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if safe { Ok(()) } else { Err(BusError::Invalid(format!("invalid {kind} name `{name}`"))) }
}

/// FNV-1a: stable across versions and platforms, so a key keeps its partition.
fn partition_for(key: &str, partitions: u32) -> u32 {
    let hash = key
        .bytes()
        .fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    hash % partitions.max(1)
}

impl EmbeddedLog {
    /// Opens (or creates) the log under `root`. The first process to open it appends;
    /// others open it read-only.
    pub fn open(root: &Path, options: LogOptions) -> std::io::Result<Self> {
        fs::create_dir_all(root.join("topics"))?;
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(root.join("LOCK"))?;
        let writer_lock = match lock.try_lock() {
            Ok(()) => Some(lock),
            Err(fs::TryLockError::WouldBlock) => None,
            Err(fs::TryLockError::Error(error)) => return Err(error),
        };
        let log = Self {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                options,
                groups: Groups::new(root),
                writer_lock,
                topics: Mutex::new(HashMap::new()),
                opening: Mutex::new(()),
            }),
        };
        if log.is_writer() {
            log.spawn_retention();
        }
        Ok(log)
    }

    /// Opens the log for reading only, as the command-line tools do.
    pub fn open_read_only(root: &Path) -> std::io::Result<Self> {
        if !root.join("topics").is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no event log at {}", root.display()),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                options: LogOptions::from(&BusConfig::default()),
                groups: Groups::new(root),
                writer_lock: None,
                topics: Mutex::new(HashMap::new()),
                opening: Mutex::new(()),
            }),
        })
    }

    pub fn is_writer(&self) -> bool {
        self.inner.writer_lock.is_some()
    }

    fn spawn_retention(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let topics: Vec<Arc<Topic>> =
                    inner.topics.lock().map(|t| t.values().cloned().collect()).unwrap_or_default();
                drop(inner);
                let _ = tokio::task::spawn_blocking(move || {
                    let now = Utc::now().timestamp_millis();
                    for topic in topics {
                        for writer in &topic.writers {
                            let Ok(mut guard) = writer.lock() else { continue };
                            if let Some(writer) = guard.as_mut()
                                && let Err(error) = writer.enforce_retention(now)
                            {
                                tracing::warn!(topic = %topic.name, %error, "retention failed");
                            }
                        }
                    }
                })
                .await;
            }
        });
    }

    /// The topic's handle, creating the topic when `create` and this process writes.
    fn topic(&self, name: &str, create: bool) -> Result<Arc<Topic>, BusError> {
        checked_name("topic", name)?;
        let _opening = self.inner.opening.lock().map_err(io_error)?;
        if let Some(topic) = self.inner.topics.lock().map_err(io_error)?.get(name) {
            return Ok(topic.clone());
        }
        let dir = self.inner.root.join("topics").join(name);
        let meta_path = dir.join("meta.json");
        let meta: TopicMeta = match fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io_error)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if !(create && self.is_writer()) {
                    return Err(BusError::UnknownTopic(name.to_owned()));
                }
                let meta = TopicMeta { partitions: self.inner.options.partitions };
                fs::create_dir_all(&dir)?;
                let temporary = dir.join("meta.json.tmp");
                fs::write(&temporary, serde_json::to_vec(&meta).map_err(io_error)?)?;
                File::open(&temporary)?.sync_all()?;
                fs::rename(&temporary, &meta_path)?;
                File::open(&dir)?.sync_all()?;
                meta
            }
            Err(error) => return Err(error.into()),
        };
        let mut writers = Vec::new();
        let mut ends = Vec::new();
        for partition in 0..meta.partitions {
            let partition_dir = dir.join(partition.to_string());
            let writer = if self.is_writer() {
                Some(PartitionWriter::open(&partition_dir, &self.inner.options)?)
            } else {
                None
            };
            ends.push(AtomicU64::new(
                writer.as_ref().map_or(u64::MAX, PartitionWriter::next_offset),
            ));
            writers.push(Mutex::new(writer));
        }
        let topic = Arc::new(Topic {
            name: name.to_owned(),
            dir,
            partitions: meta.partitions,
            writers,
            ends,
            appended: Notify::new(),
        });
        let mut topics = self.inner.topics.lock().map_err(io_error)?;
        Ok(topics.entry(name.to_owned()).or_insert(topic).clone())
    }

    /// [`Self::topic`] off the async workers: opening a partition may scan its segments.
    async fn open_topic(&self, name: &str, create: bool) -> Result<Arc<Topic>, BusError> {
        if let Some(topic) = self.inner.topics.lock().map_err(io_error)?.get(name) {
            return Ok(topic.clone());
        }
        let log = self.clone();
        let name = name.to_owned();
        blocking(move || log.topic(&name, create)).await
    }

    fn require_writer(&self) -> Result<(), BusError> {
        if self.is_writer() {
            Ok(())
        } else {
            Err(BusError::Unavailable(format!(
                "the event log at {} is open for writing by another process",
                self.inner.root.display()
            )))
        }
    }

    /// Offsets for `to` in every partition of a topic.
    async fn offsets_at(&self, topic: &Arc<Topic>, to: Position) -> Result<Offsets, BusError> {
        let topic = topic.clone();
        blocking(move || {
            (0..topic.partitions)
                .map(|partition| {
                    let dir = topic.partition_dir(partition);
                    let offset = match to {
                        Position::Beginning => 0,
                        Position::Offset(offset) => offset,
                        Position::End => {
                            match topic.ends[partition as usize].load(Ordering::Acquire) {
                                u64::MAX => partition::end_offset(&dir)?,
                                end => end,
                            }
                        }
                        Position::Time(time) => {
                            partition::offset_at_time(&dir, time.timestamp_millis())?
                        }
                    };
                    Ok((partition, offset))
                })
                .collect()
        })
        .await
    }

    fn subscription(
        &self,
        topic: Arc<Topic>,
        group: Option<String>,
        offsets: &Offsets,
    ) -> EmbeddedSubscription {
        let committed: Vec<u64> =
            (0..topic.partitions).map(|p| offsets.get(&p).copied().unwrap_or(0)).collect();
        let readers = (0..topic.partitions)
            .zip(&committed)
            .map(|(p, &offset)| PartitionReader::new(&topic.partition_dir(p), offset))
            .collect();
        EmbeddedSubscription {
            topic,
            group,
            groups: self.inner.groups.clone(),
            readers,
            committed,
            next_partition: 0,
        }
    }
}

/// Runs file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BusError> + Send + 'static,
) -> Result<T, BusError> {
    tokio::task::spawn_blocking(work).await.map_err(io_error)?
}

#[async_trait]
impl EventBus for EmbeddedLog {
    async fn publish(&self, batch: &[Message]) -> Result<(), BusError> {
        self.require_writer()?;
        let mut by_topic: HashMap<&str, Vec<&Message>> = HashMap::new();
        for message in batch {
            by_topic.entry(message.topic.as_str()).or_default().push(message);
        }
        for (name, messages) in by_topic {
            let topic = self.open_topic(name, true).await?;
            let mut by_partition: Vec<Vec<Message>> = vec![Vec::new(); topic.partitions as usize];
            for message in messages {
                let partition = partition_for(&message.key, topic.partitions) as usize;
                by_partition[partition].push(message.clone());
            }
            // Partitions are appended side by side, so their fsyncs overlap.
            let now = Utc::now().timestamp_millis();
            let appends = by_partition.into_iter().enumerate().filter(|(_, m)| !m.is_empty()).map(
                |(partition, messages)| {
                    let topic = topic.clone();
                    blocking(move || topic.append(partition, &messages, now))
                },
            );
            futures::future::try_join_all(appends).await?;
            topic.appended.notify_waiters();
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        checked_name("group", group)?;
        let handle = self.open_topic(topic, true).await?;
        let groups = self.inner.groups.clone();
        let (group_name, topic_name) = (group.to_owned(), topic.to_owned());
        let offsets = blocking(move || {
            let reset = groups.take_reset(&group_name, &topic_name)?;
            Ok(match reset {
                Some(offsets) => offsets,
                None => groups.load(&group_name, &topic_name)?,
            })
        })
        .await?;
        Ok(Box::new(self.subscription(handle, Some(group.to_owned()), &offsets)))
    }

    async fn read(&self, topic: &str, from: Position) -> Result<Box<dyn Subscription>, BusError> {
        let handle = self.open_topic(topic, false).await?;
        let offsets = self.offsets_at(&handle, from).await?;
        Ok(Box::new(self.subscription(handle, None, &offsets)))
    }

    async fn reset_group(&self, topic: &str, group: &str, to: Position) -> Result<(), BusError> {
        checked_name("group", group)?;
        let handle = self.open_topic(topic, false).await?;
        let offsets = self.offsets_at(&handle, to).await?;
        let groups = self.inner.groups.clone();
        let (group, topic) = (group.to_owned(), topic.to_owned());
        blocking(move || Ok(groups.request_reset(&group, &topic, &offsets)?)).await?;
        handle.appended.notify_waiters();
        Ok(())
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>, BusError> {
        let root = self.inner.root.join("topics");
        let mut names: Vec<String> = blocking(move || {
            Ok(fs::read_dir(root)?
                .filter_map(Result::ok)
                .filter(|entry| entry.path().join("meta.json").exists())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect())
        })
        .await?;
        names.sort();
        let mut topics = Vec::with_capacity(names.len());
        for name in names {
            let handle = self.open_topic(&name, false).await?;
            let counting = handle.clone();
            let records = blocking(move || {
                let mut total = 0;
                for partition in 0..counting.partitions {
                    let dir = counting.partition_dir(partition);
                    let first = partition::segment_bases(&dir)?.first().copied().unwrap_or(0);
                    total += partition::end_offset(&dir)?.saturating_sub(first);
                }
                Ok(total)
            })
            .await?;
            topics.push(TopicInfo { name, partitions: handle.partitions, records: Some(records) });
        }
        Ok(topics)
    }

    async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        self.require_writer()?;
        self.open_topic(topic, true).await.map(drop)
    }

    async fn ping(&self) -> Result<(), BusError> {
        if self.inner.root.join("topics").is_dir() {
            Ok(())
        } else {
            Err(BusError::Unavailable(format!("{} is gone", self.inner.root.display())))
        }
    }

    fn engine(&self) -> &'static str {
        "embedded"
    }
}

pub struct EmbeddedSubscription {
    topic: Arc<Topic>,
    group: Option<String>,
    groups: Groups,
    readers: Vec<PartitionReader>,
    /// What this subscription's group has committed per partition, as far as it knows
    /// (its own commits, and where it started or was reset to): the base of its lag.
    committed: Vec<u64>,
    next_partition: usize,
}

impl EmbeddedSubscription {
    /// Reads what is there now, partitions in turn so that none starves the others.
    async fn read_available(&mut self, max: usize) -> Result<Vec<Record>, BusError> {
        let mut readers = std::mem::take(&mut self.readers);
        let topic = self.topic.clone();
        let start = self.next_partition;
        let reset = match &self.group {
            Some(group) => Some((self.groups.clone(), group.clone())),
            None => None,
        };
        let (readers, stored, was_reset) = blocking(move || {
            let mut was_reset = false;
            if let Some((groups, group)) = reset
                && let Some(offsets) = groups.take_reset(&group, &topic.name)?
            {
                for (partition, reader) in readers.iter_mut().enumerate() {
                    let partition = u32::try_from(partition).unwrap_or(u32::MAX);
                    reader.seek(offsets.get(&partition).copied().unwrap_or(0));
                }
                was_reset = true;
            }
            let mut stored: Vec<(u32, StoredRecord)> = Vec::new();
            let count = readers.len();
            let per_partition = max.div_ceil(count.max(1)).max(1);
            for step in 0..count {
                if stored.len() >= max {
                    break;
                }
                let partition = (start + step) % count;
                let limit = match topic.ends[partition].load(Ordering::Acquire) {
                    u64::MAX => None,
                    end => Some(end),
                };
                let mut records = Vec::new();
                readers[partition].read(
                    per_partition.min(max - stored.len()),
                    limit,
                    &mut records,
                )?;
                let id = u32::try_from(partition).unwrap_or(u32::MAX);
                stored.extend(records.into_iter().map(|record| (id, record)));
            }
            Ok((readers, stored, was_reset))
        })
        .await?;
        if was_reset {
            self.committed = readers.iter().map(PartitionReader::position).collect();
        }
        self.readers = readers;
        self.next_partition = (start + 1) % self.readers.len().max(1);
        let topic = &self.topic.name;
        Ok(stored
            .into_iter()
            .map(|(partition, record)| Record {
                topic: topic.clone(),
                partition,
                offset: record.offset,
                timestamp: DateTime::from_timestamp_millis(record.timestamp_ms).unwrap_or_default(),
                key: record.key,
                value: record.value,
            })
            .collect())
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let topic = self.topic.clone();
            let appended = topic.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let records = self.read_available(max).await?;
            let now = tokio::time::Instant::now();
            if !records.is_empty() || now >= deadline {
                return Ok(records);
            }
            // Appends by this process wake us; appends by another process are polled for.
            let nap = (deadline - now).min(Duration::from_millis(200));
            let _ = tokio::time::timeout(nap, appended).await;
        }
    }

    async fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        let Some(group) = self.group.clone() else { return Ok(()) };
        if records.is_empty() {
            return Ok(());
        }
        let groups = self.groups.clone();
        let topic = self.topic.name.clone();
        let handled: Vec<(u32, u64)> =
            records.iter().map(|r| (r.partition, r.offset + 1)).collect();
        for &(partition, next) in &handled {
            if let Some(committed) = self.committed.get_mut(partition as usize) {
                *committed = (*committed).max(next);
            }
        }
        blocking(move || {
            let mut offsets = groups.load(&group, &topic)?;
            for (partition, next) in handled {
                let entry = offsets.entry(partition).or_insert(0);
                *entry = (*entry).max(next);
            }
            Ok(groups.save(&group, &topic, &offsets)?)
        })
        .await
    }

    /// Records appended past the group's commits; known to the process that appends.
    fn lag(&self) -> Option<u64> {
        let mut behind = 0;
        for (partition, committed) in self.committed.iter().enumerate() {
            let end = self.topic.ends.get(partition)?.load(Ordering::Acquire);
            if end == u64::MAX {
                return None;
            }
            behind += end.saturating_sub(*committed);
        }
        Some(behind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_lands_in_the_same_partition() {
        assert_eq!(partition_for("user-1", 10), partition_for("user-1", 10));
        let spread: std::collections::HashSet<u32> =
            (0..100).map(|i| partition_for(&format!("user-{i}"), 10)).collect();
        assert!(spread.len() > 5, "keys spread over partitions: {spread:?}");
    }

    #[test]
    fn names_that_could_escape_the_log_directory_are_refused() {
        for bad in ["", "..", "../etc", "a/b", ".hidden", "a b"] {
            assert!(checked_name("topic", bad).is_err(), "{bad:?}");
        }
        assert!(checked_name("topic", "user.registered.dlq").is_ok());
    }
}
