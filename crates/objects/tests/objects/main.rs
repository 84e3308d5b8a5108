//! Object storage against real stores: the local filesystem and an S3-compatible server
//! that checks request signatures.

// Tests may unwrap (see clippy.toml); shared case functions are not recognised as tests.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use kernel::engine::{EngineError, EngineUrl};
use objects::{ObjectKey, Objects, ObjectsError, StorageConfig};
use tempfile::TempDir;

struct TestStore {
    objects: Objects,
    prefix: ObjectKey,
    _dir: Option<TempDir>,
}

async fn local() -> TestStore {
    let dir = TempDir::new().unwrap();
    let objects = Objects::connect(&StorageConfig::default(), dir.path()).await.unwrap();
    TestStore {
        objects,
        prefix: ObjectKey::parse(&testkit::unique("test")).unwrap(),
        _dir: Some(dir),
    }
}

fn s3_config() -> StorageConfig {
    let server = testkit::s3_server();
    StorageConfig {
        url: Some(EngineUrl::new(format!("s3://{}", server.bucket))),
        endpoint: Some(server.endpoint),
        region: None,
        access_key_id: Some(server.access_key_id),
        secret_access_key: Some(server.secret_access_key.into()),
    }
}

async fn s3() -> TestStore {
    let objects = Objects::connect(&s3_config(), std::path::Path::new("/unused"))
        .await
        .expect("the test S3 server answers (scripts/test starts one)");
    TestStore { objects, prefix: ObjectKey::parse(&testkit::unique("test")).unwrap(), _dir: None }
}

macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            #[tokio::test]
            async fn objects_round_trip() {
                super::objects_round_trip($make).await;
            }

            #[tokio::test]
            async fn large_streams_are_written_in_parts() {
                super::large_streams_are_written_in_parts($make).await;
            }

            #[tokio::test]
            async fn a_failed_stream_leaves_nothing_behind() {
                super::a_failed_stream_leaves_nothing_behind($make).await;
            }

            #[tokio::test]
            async fn deleting_a_prefix_deletes_only_below_it() {
                super::deleting_a_prefix_deletes_only_below_it($make).await;
            }

            #[tokio::test]
            async fn objects_read_for_serving_are_the_stored_bytes() {
                super::objects_read_for_serving_are_the_stored_bytes($make).await;
            }
        }
    };
}

contract!(local, super::local().await);
contract!(s3, super::s3().await);

async fn objects_round_trip(test: TestStore) {
    let key = test.prefix.join("hello.txt").unwrap();
    assert_eq!(test.objects.head(&key).await.unwrap(), None);
    assert!(matches!(test.objects.get(&key).await, Err(ObjectsError::NotFound(_))));

    test.objects.put(&key, Bytes::from_static(b"hello, listener")).await.unwrap();
    assert_eq!(test.objects.get(&key).await.unwrap(), Bytes::from_static(b"hello, listener"));
    assert_eq!(test.objects.get_range(&key, 7..15).await.unwrap(), Bytes::from_static(b"listener"));
    let info = test.objects.head(&key).await.unwrap().unwrap();
    assert_eq!(info.size, 15);

    test.objects.delete(&key).await.unwrap();
    assert_eq!(test.objects.head(&key).await.unwrap(), None);
    test.objects.delete(&key).await.unwrap();
}

async fn large_streams_are_written_in_parts(test: TestStore) {
    let key = test.prefix.join("big.bin").unwrap();
    let chunk = Bytes::from(vec![7_u8; 1 << 20]);
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..12).map(|_| Ok(chunk.clone())).collect();
    let size = test.objects.put_stream(&key, futures::stream::iter(chunks)).await.unwrap();
    assert_eq!(size, 12 << 20);
    assert_eq!(test.objects.head(&key).await.unwrap().unwrap().size, 12 << 20);
    let tail = test.objects.get_range(&key, (12 << 20) - 4..12 << 20).await.unwrap();
    assert_eq!(tail, Bytes::from_static(&[7, 7, 7, 7]));
    test.objects.delete_prefix(&test.prefix).await.unwrap();
}

async fn a_failed_stream_leaves_nothing_behind(test: TestStore) {
    let key = test.prefix.join("broken.bin").unwrap();
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from(vec![1_u8; 1 << 20])), Err(std::io::Error::other("client went away"))];
    let result = test.objects.put_stream(&key, futures::stream::iter(chunks)).await;
    assert!(result.is_err());
    assert_eq!(test.objects.head(&key).await.unwrap(), None, "no half-written object");
}

async fn deleting_a_prefix_deletes_only_below_it(test: TestStore) {
    let track = test.prefix.join("track-1").unwrap();
    let other = test.prefix.join("track-10").unwrap();
    for name in ["original.mp3", "hls/128k/seg-0.m4s", "hls/128k/seg-1.m4s"] {
        test.objects.put(&track.join(name).unwrap(), Bytes::from_static(b"x")).await.unwrap();
    }
    test.objects.put(&other.join("original.mp3").unwrap(), Bytes::from_static(b"y")).await.unwrap();
    let mut listed = test.objects.list(&track).await.unwrap();
    listed.sort();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(test.objects.delete_prefix(&track).await.unwrap(), 3);
    assert!(test.objects.list(&track).await.unwrap().is_empty());
    assert_eq!(
        test.objects.list(&other).await.unwrap().len(),
        1,
        "a sibling sharing the name's start stays"
    );
    test.objects.delete_prefix(&test.prefix).await.unwrap();
}

#[tokio::test]
async fn s3_refuses_a_wrong_secret_at_startup() {
    let mut config = s3_config();
    config.secret_access_key = Some("not-the-secret".to_owned().into());
    let error = Objects::connect(&config, std::path::Path::new("/unused")).await.unwrap_err();
    let EngineError::Unreachable { reason, .. } = error else { panic!("{error}") };
    // Refused for the signature, by a server that is there.
    assert!(reason.contains("403") || reason.contains("Signature"), "{reason}");
}

#[tokio::test]
async fn unknown_schemes_are_refused() {
    let config =
        StorageConfig { url: Some(EngineUrl::new("ftp://media")), ..StorageConfig::default() };
    let error = Objects::connect(&config, std::path::Path::new("/tmp")).await.unwrap_err();
    assert!(matches!(error, EngineError::UnsupportedScheme { .. }));
}

#[tokio::test]
async fn local_objects_live_under_the_data_dir() {
    let dir = TempDir::new().unwrap();
    let objects = Objects::connect(&StorageConfig::default(), dir.path()).await.unwrap();
    let key = ObjectKey::parse("tracks/abc/original.flac").unwrap();
    objects.put(&key, Bytes::from_static(b"fLaC")).await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("media/tracks/abc/original.flac")).unwrap(), b"fLaC");
}

async fn objects_read_for_serving_are_the_stored_bytes(test: TestStore) {
    let missing = test.prefix.join("missing.m4s").unwrap();
    assert!(matches!(test.objects.get_for_serving(&missing).await, Err(ObjectsError::NotFound(_))));
    assert!(matches!(
        test.objects.get_for_serving(&test.prefix).await,
        Err(ObjectsError::NotFound(_))
    ));
    // Large enough to be sent from its file, and small enough to be copied.
    let large: Bytes = (0..200_000_u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
    for (name, contents) in [("seg-1.m4s", large), ("init.mp4", Bytes::from_static(b"ftyp"))] {
        let key = test.prefix.join(name).unwrap();
        test.objects.put(&key, contents.clone()).await.unwrap();
        assert_eq!(test.objects.get_for_serving(&key).await.unwrap(), contents, "{name}");
    }
    test.objects.delete_prefix(&test.prefix).await.unwrap();
}
