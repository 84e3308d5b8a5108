//! One partition of one topic: a directory of segment files, each a log of records
//! (`<base offset>.log`) with a sparse offset index (`<base offset>.idx`: pairs of
//! relative offset and byte position, one per `index_interval` bytes of log).
//!
//! One writer appends (and fsyncs) per batch; any number of readers, in this process or
//! another, read with positional reads and never see past the last intact record.

use std::{
    collections::{HashSet, VecDeque},
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use uuid::Uuid;

use super::{
    LogOptions,
    record::{self, Decoded, StoredRecord},
};
use crate::port::Message;

const READ_CHUNK: usize = 256 * 1024;

fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.idx"))
}

/// Base offsets of the segments in `dir`, oldest first.
pub fn segment_bases(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases: Vec<u64> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    bases.sort_unstable();
    Ok(bases)
}

/// `(relative offset, byte position)` pairs; a torn trailing entry is ignored.
fn read_index(path: &Path) -> io::Result<Vec<(u32, u32)>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    Ok(bytes
        .chunks_exact(8)
        .map(|entry| {
            let relative = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let position = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
            (relative, position)
        })
        .collect())
}

/// The byte position to start scanning from to find `offset` in a segment.
fn seek_position(index: &[(u32, u32)], base: u64, offset: u64) -> u64 {
    let relative = offset.saturating_sub(base);
    let found = index.partition_point(|(rel, _)| u64::from(*rel) <= relative);
    if found == 0 { 0 } else { u64::from(index[found - 1].1) }
}

/// Reads records sequentially from one segment file through a buffer.
struct SegmentCursor {
    file: File,
    position: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
}

/// What the cursor found at its position.
enum Step {
    Record(StoredRecord),
    /// Nothing more yet: the end of the file, or a record still being written.
    End,
    /// Bytes that will never become a record.
    Corrupt,
}

impl SegmentCursor {
    fn open(path: &Path, position: u64) -> io::Result<Self> {
        Ok(Self { file: File::open(path)?, position, buffer: Vec::new(), buffer_start: position })
    }

    fn next(&mut self) -> io::Result<Step> {
        loop {
            let skip = usize::try_from(self.position.saturating_sub(self.buffer_start))
                .unwrap_or(usize::MAX);
            let available = self.buffer.get(skip..).unwrap_or_default();
            let wanted = match record::decode(available) {
                Decoded::Record(record, used) => {
                    self.position += used as u64;
                    return Ok(Step::Record(record));
                }
                Decoded::Corrupt => return Ok(Step::Corrupt),
                Decoded::Incomplete(needed) => needed,
            };
            if !self.fill(wanted.max(READ_CHUNK))? || self.buffer.len() < wanted {
                return Ok(Step::End);
            }
        }
    }

    /// Refills the buffer from the current position; false when nothing new was read.
    fn fill(&mut self, want: usize) -> io::Result<bool> {
        let mut buffer = vec![0; want];
        let mut filled = 0;
        while filled < want {
            let read = self.file.read_at(&mut buffer[filled..], self.position + filled as u64)?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        buffer.truncate(filled);
        let grew = filled
            > self.buffer.len().saturating_sub(
                usize::try_from(self.position.saturating_sub(self.buffer_start)).unwrap_or(0),
            );
        self.buffer = buffer;
        self.buffer_start = self.position;
        Ok(grew)
    }
}

/// Calls `visit` with every intact record of a segment from `position`; returns the byte
/// position where intact records end.
fn scan(path: &Path, position: u64, mut visit: impl FnMut(&StoredRecord)) -> io::Result<u64> {
    let mut cursor = SegmentCursor::open(path, position)?;
    while let Step::Record(record) = cursor.next()? {
        visit(&record);
    }
    Ok(cursor.position)
}

struct SegmentInfo {
    base: u64,
    bytes: u64,
    newest_ms: i64,
}

/// Ids of the most recent appends, to refuse an event already in the log.
struct RecentIds {
    members: HashSet<Uuid>,
    order: VecDeque<Uuid>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self { members: HashSet::new(), order: VecDeque::new(), capacity }
    }

    fn contains(&self, id: &Uuid) -> bool {
        self.members.contains(id)
    }

    fn insert(&mut self, id: Uuid) {
        if self.capacity == 0 || !self.members.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.members.remove(&oldest);
        }
    }
}

pub struct PartitionWriter {
    dir: PathBuf,
    options: LogOptions,
    segments: Vec<SegmentInfo>,
    log: File,
    index: File,
    bytes_since_index: u64,
    next_offset: u64,
    recent: RecentIds,
}

impl PartitionWriter {
    /// Opens a partition for appending, recovering from a crash: a torn record at the end
    /// of the active segment and the index entries past it are cut off.
    pub fn open(dir: &Path, options: &LogOptions) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut bases = segment_bases(dir)?;
        if bases.is_empty() {
            File::create(log_path(dir, 0))?;
            sync_dir(dir)?;
            bases.push(0);
        }
        let mut segments = Vec::with_capacity(bases.len());
        let mut next_offset = 0;
        let mut active_end = 0;
        for (position, &base) in bases.iter().enumerate() {
            let is_active = position + 1 == bases.len();
            let path = log_path(dir, base);
            let mut index = read_index(&index_path(dir, base))?;
            let file_len = fs::metadata(&path)?.len();
            index.retain(|(_, pos)| u64::from(*pos) < file_len);
            let mut newest_ms = i64::MIN;
            let mut last_offset = None;
            let end = scan(&path, index.last().map_or(0, |(_, pos)| u64::from(*pos)), |record| {
                newest_ms = newest_ms.max(record.timestamp_ms);
                last_offset = Some(record.offset);
            })?;
            next_offset = last_offset.map_or(base.max(next_offset), |offset| offset + 1);
            if is_active {
                if end < file_len {
                    tracing::warn!(partition = %dir.display(), dropped_bytes = file_len - end, "recovered a torn tail");
                    OpenOptions::new().write(true).open(&path)?.set_len(end)?;
                }
                index.retain(|(_, pos)| u64::from(*pos) < end);
                rewrite_index(&index_path(dir, base), &index)?;
                active_end = end;
            }
            segments.push(SegmentInfo { base, bytes: end.min(file_len), newest_ms });
        }
        let active_base = segments.last().map_or(0, |s| s.base);
        let log = OpenOptions::new().append(true).open(log_path(dir, active_base))?;
        log.sync_all()?;
        let index =
            OpenOptions::new().create(true).append(true).open(index_path(dir, active_base))?;
        let last_indexed =
            read_index(&index_path(dir, active_base))?.last().map_or(0, |(_, pos)| u64::from(*pos));
        let mut writer = Self {
            dir: dir.to_owned(),
            options: options.clone(),
            segments,
            log,
            index,
            bytes_since_index: active_end.saturating_sub(last_indexed),
            next_offset,
            recent: RecentIds::new(options.recent_ids),
        };
        writer.remember_recent_ids()?;
        Ok(writer)
    }

    /// Rebuilds the set of recent ids from the newest segments.
    fn remember_recent_ids(&mut self) -> io::Result<()> {
        let mut ids = Vec::new();
        for segment in self.segments.iter().rev().take(2).collect::<Vec<_>>().into_iter().rev() {
            scan(&log_path(&self.dir, segment.base), 0, |record| ids.extend(record.id))?;
        }
        for id in
            ids.into_iter().rev().take(self.recent.capacity).collect::<Vec<_>>().into_iter().rev()
        {
            self.recent.insert(id);
        }
        Ok(())
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Appends the messages whose ids are not in the log yet and fsyncs them; returns how
    /// many were appended.
    pub fn append(&mut self, messages: &[&Message], timestamp_ms: i64) -> io::Result<usize> {
        let mut log_bytes = Vec::new();
        let mut index_bytes = Vec::new();
        let mut appended = 0;
        for message in messages {
            if message.id.is_some_and(|id| self.recent.contains(&id)) {
                continue;
            }
            let size = record::encoded_len(&message.key, &message.value) as u64;
            let active_bytes = self.active().bytes + log_bytes.len() as u64;
            if active_bytes > 0 && active_bytes + size > self.options.segment_bytes {
                self.flush(&mut log_bytes, &mut index_bytes)?;
                self.roll()?;
            }
            if self.bytes_since_index >= self.options.index_interval_bytes {
                let active = self.active();
                let relative = u32::try_from(self.next_offset - active.base).unwrap_or(u32::MAX);
                let position =
                    u32::try_from(active.bytes + log_bytes.len() as u64).unwrap_or(u32::MAX);
                index_bytes.extend_from_slice(&relative.to_le_bytes());
                index_bytes.extend_from_slice(&position.to_le_bytes());
                self.bytes_since_index = 0;
            }
            record::encode(
                &mut log_bytes,
                self.next_offset,
                timestamp_ms,
                message.id,
                &message.key,
                &message.value,
            );
            self.bytes_since_index += size;
            self.next_offset += 1;
            if let Some(id) = message.id {
                self.recent.insert(id);
            }
            let active = self.active_mut();
            active.newest_ms = active.newest_ms.max(timestamp_ms);
            appended += 1;
        }
        self.flush(&mut log_bytes, &mut index_bytes)?;
        Ok(appended)
    }

    fn active(&self) -> &SegmentInfo {
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut SegmentInfo {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Writes and fsyncs pending bytes: the log first, so an index entry never points at
    /// bytes that are not durable.
    fn flush(&mut self, log_bytes: &mut Vec<u8>, index_bytes: &mut Vec<u8>) -> io::Result<()> {
        if log_bytes.is_empty() {
            return Ok(());
        }
        self.log.write_all(log_bytes)?;
        self.log.sync_data()?;
        self.active_mut().bytes += log_bytes.len() as u64;
        if !index_bytes.is_empty() {
            self.index.write_all(index_bytes)?;
            self.index.sync_data()?;
        }
        log_bytes.clear();
        index_bytes.clear();
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        let base = self.next_offset;
        self.log = OpenOptions::new().create(true).append(true).open(log_path(&self.dir, base))?;
        self.index =
            OpenOptions::new().create(true).append(true).open(index_path(&self.dir, base))?;
        sync_dir(&self.dir)?;
        self.segments.push(SegmentInfo { base, bytes: 0, newest_ms: i64::MIN });
        self.bytes_since_index = 0;
        self.enforce_retention(chrono::Utc::now().timestamp_millis())?;
        Ok(())
    }

    /// Drops whole segments, oldest first, that are past the retention age or beyond the
    /// size budget. The active segment always stays.
    pub fn enforce_retention(&mut self, now_ms: i64) -> io::Result<usize> {
        let oldest_kept_ms = now_ms
            .saturating_sub(i64::try_from(self.options.retention.as_millis()).unwrap_or(i64::MAX));
        let mut removed = 0;
        while self.segments.len() > 1 {
            let total: u64 = self.segments.iter().map(|s| s.bytes).sum();
            let oldest = &self.segments[0];
            if oldest.newest_ms >= oldest_kept_ms && total <= self.options.retention_bytes {
                break;
            }
            fs::remove_file(log_path(&self.dir, oldest.base))?;
            let _ = fs::remove_file(index_path(&self.dir, oldest.base));
            self.segments.remove(0);
            removed += 1;
        }
        Ok(removed)
    }
}

fn rewrite_index(path: &Path, entries: &[(u32, u32)]) -> io::Result<()> {
    let bytes: Vec<u8> = entries
        .iter()
        .flat_map(|(rel, pos)| rel.to_le_bytes().into_iter().chain(pos.to_le_bytes()))
        .collect();
    let current = fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    if current != bytes.len() as u64 {
        let mut file = File::create(path)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads one partition from an offset on. `limit`, when known, is the first offset not
/// yet durable; without it (another process writes) the reader stops at the last intact
/// record.
pub struct PartitionReader {
    dir: PathBuf,
    next_offset: u64,
    cursor: Option<(u64, SegmentCursor)>,
}

impl PartitionReader {
    pub fn new(dir: &Path, next_offset: u64) -> Self {
        Self { dir: dir.to_owned(), next_offset, cursor: None }
    }

    pub fn seek(&mut self, offset: u64) {
        self.next_offset = offset;
        self.cursor = None;
    }

    /// The offset the next read starts at.
    pub fn position(&self) -> u64 {
        self.next_offset
    }

    /// Appends up to `max` records to `out`, stopping before `limit`.
    pub fn read(
        &mut self,
        max: usize,
        limit: Option<u64>,
        out: &mut Vec<StoredRecord>,
    ) -> io::Result<()> {
        let mut taken = 0;
        while taken < max && limit.is_none_or(|limit| self.next_offset < limit) {
            if self.cursor.is_none() && !self.open_segment()? {
                return Ok(());
            }
            let Some((_, cursor)) = self.cursor.as_mut() else { return Ok(()) };
            match cursor.next()? {
                Step::Record(record) if record.offset < self.next_offset => {}
                Step::Record(record) => {
                    self.next_offset = record.offset + 1;
                    out.push(record);
                    taken += 1;
                }
                Step::End | Step::Corrupt => {
                    // Move on only if the writer has started a later segment.
                    if !self.later_segment_exists()? {
                        return Ok(());
                    }
                    self.cursor = None;
                }
            }
        }
        Ok(())
    }

    fn later_segment_exists(&self) -> io::Result<bool> {
        let current = self.cursor.as_ref().map_or(0, |(base, _)| *base);
        Ok(segment_bases(&self.dir)?
            .into_iter()
            .any(|base| base > current && base <= self.next_offset))
    }

    /// Opens the segment holding `next_offset`; false when the partition has none.
    fn open_segment(&mut self) -> io::Result<bool> {
        let bases = segment_bases(&self.dir)?;
        let Some(&first) = bases.first() else { return Ok(false) };
        if self.next_offset < first {
            // Retention dropped what this reader had not read yet.
            self.next_offset = first;
        }
        let base = bases.iter().copied().filter(|&b| b <= self.next_offset).max().unwrap_or(first);
        let index = read_index(&index_path(&self.dir, base))?;
        let position = seek_position(&index, base, self.next_offset);
        match SegmentCursor::open(&log_path(&self.dir, base), position) {
            Ok(cursor) => {
                self.cursor = Some((base, cursor));
                Ok(true)
            }
            // Removed by retention between listing and opening: list again next time.
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// The offset of the first record at or after `time_ms`, or the end of the partition.
pub fn offset_at_time(dir: &Path, time_ms: i64) -> io::Result<u64> {
    let mut next = 0;
    for base in segment_bases(dir)? {
        let mut found = None;
        scan(&log_path(dir, base), 0, |record| {
            next = record.offset + 1;
            if found.is_none() && record.timestamp_ms >= time_ms {
                found = Some(record.offset);
            }
        })?;
        if let Some(offset) = found {
            return Ok(offset);
        }
        next = next.max(base);
    }
    Ok(next)
}

/// The offset after the last intact record.
pub fn end_offset(dir: &Path) -> io::Result<u64> {
    let bases = segment_bases(dir)?;
    let Some(&last) = bases.last() else { return Ok(0) };
    let index = read_index(&index_path(dir, last))?;
    let mut end = last;
    scan(&log_path(dir, last), index.last().map_or(0, |(_, pos)| u64::from(*pos)), |record| {
        end = record.offset + 1;
    })?;
    Ok(end)
}
