//! What only the embedded log promises: durability across restarts, recovery from a torn
//! write, idempotent appends, retention, and readers in other processes.

use std::{fs, io::Write, path::Path, time::Duration};

use bus::{
    BusConfig, EventBus, Position,
    embedded::{EmbeddedLog, LogOptions},
};
use tempfile::TempDir;
use uuid::Uuid;

use crate::support::{collect, ids, message, unique_group};

const WAIT: Duration = Duration::from_secs(5);

fn options() -> LogOptions {
    LogOptions::from(&BusConfig { partitions: 1, ..BusConfig::default() })
}

fn open(dir: &Path, options: LogOptions) -> EmbeddedLog {
    EmbeddedLog::open(dir, options).unwrap()
}

fn segment_files(dir: &Path, topic: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir.join("topics").join(topic).join("0"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn events_survive_a_restart_and_offsets_continue() {
    let dir = TempDir::new().unwrap();
    let first: Vec<_> = (0..5).map(|_| message("plays", "k")).collect();
    {
        let log = open(dir.path(), options());
        log.publish(&first).await.unwrap();
    }
    let log = open(dir.path(), options());
    let second: Vec<_> = (0..5).map(|_| message("plays", "k")).collect();
    log.publish(&second).await.unwrap();
    let mut reader = log.read("plays", Position::Beginning).await.unwrap();
    let records = collect(reader.as_mut(), 10, WAIT).await;
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    let sent: Vec<Uuid> = first.iter().chain(&second).filter_map(|m| m.id).collect();
    assert_eq!(ids(&records), sent);
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_on_open_and_appends_go_on() {
    let dir = TempDir::new().unwrap();
    let intact: Vec<_> = (0..20).map(|_| message("plays", "k")).collect();
    {
        let log = open(dir.path(), options());
        log.publish(&intact).await.unwrap();
    }
    // A crash in the middle of writing the last record: half of it reached the disk.
    let segment = segment_files(dir.path(), "plays").pop().unwrap();
    let length = fs::metadata(&segment).unwrap().len();
    let mut torn = message("plays", "k");
    torn.value = vec![b'x'; 300];
    fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(length - 40).unwrap();
    let mut file = fs::OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[7; 13]).unwrap();
    drop(file);

    let log = open(dir.path(), options());
    let after = message("plays", "k");
    log.publish(std::slice::from_ref(&after)).await.unwrap();
    let mut reader = log.read("plays", Position::Beginning).await.unwrap();
    let records = collect(reader.as_mut(), 25, Duration::from_millis(800)).await;
    let mut expected: Vec<Uuid> = intact[..19].iter().filter_map(|m| m.id).collect();
    expected.push(after.id.unwrap());
    assert_eq!(ids(&records), expected, "the torn record is gone, nothing else is");
    assert_eq!(records.last().unwrap().offset, 19, "offsets stay contiguous");
}

#[tokio::test]
async fn an_event_already_in_the_log_is_not_appended_again_even_after_a_restart() {
    let dir = TempDir::new().unwrap();
    let batch: Vec<_> = (0..5).map(|i| message("registrations", &format!("u{i}"))).collect();
    {
        let log = open(dir.path(), options());
        log.publish(&batch).await.unwrap();
        log.publish(&batch[2..]).await.unwrap();
    }
    let log = open(dir.path(), options());
    log.publish(&batch).await.unwrap();
    let mut reader = log.read("registrations", Position::Beginning).await.unwrap();
    let records = collect(reader.as_mut(), 20, Duration::from_millis(800)).await;
    assert_eq!(ids(&records), batch.iter().filter_map(|m| m.id).collect::<Vec<_>>());
}

#[tokio::test]
async fn segments_roll_and_old_ones_go_by_size_and_readers_skip_ahead() {
    let dir = TempDir::new().unwrap();
    let mut options = options();
    options.segment_bytes = 8 * 1024;
    options.retention_bytes = 24 * 1024;
    let log = open(dir.path(), options);
    let mut group_reader = log.subscribe("big", &unique_group()).await.unwrap();
    for _ in 0..20 {
        let batch: Vec<_> = (0..10).map(|_| message("big", "k")).collect();
        log.publish(&batch).await.unwrap();
    }
    let files = segment_files(dir.path(), "big");
    assert!(files.len() >= 3, "rolled into several segments: {files:?}");
    let total: u64 = files.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
    assert!(total <= 24 * 1024 + 8 * 1024, "old segments were dropped: {total} bytes");

    let first_kept: u64 = files[0].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert!(first_kept > 0);
    let records = collect(group_reader.as_mut(), 1, WAIT).await;
    assert_eq!(records[0].offset, first_kept, "a reader behind retention skips to the oldest kept");

    let mut from_offset = log.read("big", Position::Offset(first_kept + 17)).await.unwrap();
    let records = collect(from_offset.as_mut(), 1, WAIT).await;
    assert_eq!(records[0].offset, first_kept + 17, "the index finds an offset mid-segment");
}

#[tokio::test]
async fn segments_older_than_the_retention_age_go() {
    let dir = TempDir::new().unwrap();
    let mut options = options();
    options.segment_bytes = 1024;
    options.retention = Duration::from_millis(300);
    let log = open(dir.path(), options);
    for _ in 0..10 {
        log.publish(&[message("old", "k")]).await.unwrap();
    }
    let before = segment_files(dir.path(), "old").len();
    assert!(before >= 2, "{before} segments");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The next roll enforces retention.
    for _ in 0..5 {
        log.publish(&[message("old", "k")]).await.unwrap();
    }
    let after = segment_files(dir.path(), "old");
    assert!(after.len() < before, "aged segments removed: {after:?}");
}

#[tokio::test]
async fn another_process_reads_while_the_writer_appends_but_cannot_append() {
    let dir = TempDir::new().unwrap();
    let writer = open(dir.path(), options());
    assert!(writer.is_writer());
    writer.publish(&[message("live", "k")]).await.unwrap();

    // A second open of the same directory is what `tonearm events tail` gets while
    // `tonearm up` runs: the lock is taken, so it reads only.
    let reader_log = open(dir.path(), options());
    assert!(!reader_log.is_writer());
    let refused = reader_log.publish(&[message("live", "k")]).await;
    assert!(refused.is_err(), "only one process appends");

    let mut tail = reader_log.read("live", Position::Beginning).await.unwrap();
    assert_eq!(collect(tail.as_mut(), 1, WAIT).await.len(), 1);
    let later = message("live", "k");
    writer.publish(std::slice::from_ref(&later)).await.unwrap();
    let records = collect(tail.as_mut(), 1, WAIT).await;
    assert_eq!(ids(&records), vec![later.id.unwrap()], "follows appends made by the writer");
}

#[tokio::test]
async fn a_reset_requested_from_outside_reaches_a_running_consumer() {
    let dir = TempDir::new().unwrap();
    let writer = open(dir.path(), options());
    let group = unique_group();
    let batch: Vec<_> = (0..4).map(|_| message("resets", "k")).collect();
    writer.publish(&batch).await.unwrap();
    let mut running = writer.subscribe("resets", &group).await.unwrap();
    let records = collect(running.as_mut(), 4, WAIT).await;
    running.commit(&records).await.unwrap();

    let tool = EmbeddedLog::open_read_only(dir.path()).unwrap();
    tool.reset_group("resets", &group, Position::Offset(2)).await.unwrap();
    let again = collect(running.as_mut(), 2, WAIT).await;
    assert_eq!(again.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![2, 3]);
}

#[tokio::test]
async fn unsafe_topic_and_group_names_are_refused() {
    let dir = TempDir::new().unwrap();
    let log = open(dir.path(), options());
    assert!(log.publish(&[message("../escape", "k")]).await.is_err());
    assert!(log.subscribe("fine", "../../etc").await.is_err());
    assert!(!dir.path().parent().unwrap().join("escape").exists());
}

/// Consumers of one topic start together on a fresh log: every one of them subscribes at
/// the first try, and what is published reaches each group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_first_subscribers_of_a_new_topic_all_get_in() {
    for _ in 0..10 {
        let dir = TempDir::new().unwrap();
        let log = open(dir.path(), LogOptions::from(&BusConfig::default()));
        let subscribing = (0..8).map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.subscribe("track.deleted", &format!("group-{n}")).await })
        });
        for subscribed in futures::future::join_all(subscribing).await {
            assert!(subscribed.unwrap().is_ok(), "a first subscription failed");
        }
        let partitions = fs::read_dir(dir.path().join("topics").join("track.deleted")).unwrap();
        assert_eq!(partitions.filter(|entry| entry.as_ref().unwrap().path().is_dir()).count(), 10);
    }
}
