//! The storage conformance suite on the fjall backend, plus what only an embedded store can
//! show: data survives closing and reopening the database, under both fsync policies.

mod conformance;

use std::sync::Arc;

use chatmesh_workers::store::{Direction, FjallStore, FsyncPolicy, KvStore, WriteBatch};

fn open(dir: &std::path::Path, fsync: FsyncPolicy) -> FjallStore {
    FjallStore::open(dir, fsync, 8 << 20).unwrap()
}

fn fresh() -> (tempfile::TempDir, FjallStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), FsyncPolicy::SyncData);
    (dir, s)
}

/// Point reads, overwrites, deletes and in-batch ordering behave as the trait says.
#[tokio::test]
async fn point_ops() {
    let (_d, s) = fresh();
    conformance::point_ops(&s).await;
}

/// Range scans honour half-open bounds, direction, limits and byte order.
#[tokio::test]
async fn scans() {
    let (_d, s) = fresh();
    conformance::scans(&s).await;
}

/// One 50k-key batch lands whole and large scans see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches() {
    let (_d, s) = fresh();
    conformance::large_batches(&s).await;
}

/// Range deletes remove exactly their range, over several chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ranges() {
    let (_d, s) = fresh();
    conformance::delete_ranges(&s).await;
}

/// Concurrent batch writers all land and readers never see half a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers() {
    let (_d, s) = fresh();
    conformance::concurrent_writers(Arc::new(s)).await;
}

/// Data written under either fsync policy is there after the database is dropped and opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data() {
    for fsync in [FsyncPolicy::SyncData, FsyncPolicy::Buffered] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path(), fsync);
            let mut b = WriteBatch::new();
            for i in 0..1_000u32 {
                b.put(format!("k{i:04}").into_bytes(), i.to_be_bytes().to_vec());
            }
            s.write(b).await.unwrap();
            let mut b = WriteBatch::new();
            b.delete(b"k0000".to_vec());
            s.write(b).await.unwrap();
        }
        let s = open(dir.path(), fsync);
        let all = s
            .scan(b"k".to_vec()..b"l".to_vec(), Direction::Forward, 10_000)
            .await
            .unwrap();
        assert_eq!(all.len(), 999, "{fsync:?}");
        assert_eq!(
            s.get(b"k0999").await.unwrap(),
            Some(999u32.to_be_bytes().to_vec())
        );
        assert_eq!(s.get(b"k0000").await.unwrap(), None);
    }
}
