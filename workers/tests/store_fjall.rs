//! The storage conformance suite on the fjall backend, plus what only an embedded store can
//! show: data survives closing and reopening the database under both fsync policies, the
//! memtable is flushed at its configured size, and a group commit keeps every write.

#[macro_use]
mod conformance;

use chatmesh_workers::store::{
    Direction, FjallMemory, FjallStore, FsyncPolicy, GroupCommit, KvStore, Store, WriteBatch,
};

fn open(dir: &std::path::Path, fsync: FsyncPolicy) -> FjallStore {
    FjallStore::open(
        dir,
        fsync,
        FjallMemory {
            cache_bytes: 8 << 20,
            memtable_bytes: 1 << 20,
        },
    )
    .unwrap()
}

fn fresh() -> (tempfile::TempDir, FjallStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), FsyncPolicy::SyncData);
    (dir, s)
}

async fn fresh_store() -> Option<conformance::suite::Harness> {
    let (dir, s) = fresh();
    Some(conformance::suite::Harness {
        store: Store::Fjall(s),
        _guard: Box::new(dir),
    })
}

conformance_suite!(fresh_store);

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

/// The memtable is flushed at its configured size: writing 3 MiB through a 1 MiB memtable leaves
/// table files on disk (fjall's 64 MiB default would hold all of it in memory), and every key is
/// still readable.
#[tokio::test]
async fn memtable_is_flushed_at_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), FsyncPolicy::Buffered);
    assert_eq!(s.table_count(), 0);
    let value = vec![7u8; 1_024];
    for chunk in 0..24u32 {
        let mut b = WriteBatch::new();
        for i in 0..128u32 {
            b.put(format!("m{chunk:02}{i:03}").into_bytes(), value.clone());
        }
        s.write(b).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.table_count() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(s.table_count() >= 1, "no memtable was flushed in 20 s");
    let all = s
        .scan(b"m".to_vec()..b"n".to_vec(), Direction::Forward, 10_000)
        .await
        .unwrap();
    assert_eq!(all.len(), 24 * 128);
}

/// Many writers through one group commit: every write returns Ok only once it is readable, and
/// none is lost or merged into another's keys, also when the groups are cut by `max_ops`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_keeps_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Fjall(open(dir.path(), FsyncPolicy::SyncData));
    let group = GroupCommit::start(store.clone(), std::time::Duration::from_millis(20), 16);
    let mut tasks = Vec::new();
    for w in 0..64u32 {
        let (group, store) = (group.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            let mut b = WriteBatch::new();
            for i in 0..3u32 {
                b.put(
                    format!("g{w:02}-{i}").into_bytes(),
                    w.to_be_bytes().to_vec(),
                );
            }
            b.barrier();
            b.put(format!("h{w:02}").into_bytes(), vec![1]);
            group.write(b).await.unwrap();
            // Durable and visible when the write returns.
            assert_eq!(
                store.get(format!("h{w:02}").as_bytes()).await.unwrap(),
                Some(vec![1])
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(group.write(WriteBatch::new()).await.is_ok());
    let all = store
        .scan(b"g".to_vec()..b"i".to_vec(), Direction::Forward, 10_000)
        .await
        .unwrap();
    assert_eq!(all.len(), 64 * 4);
}

/// Two batches in one group window that touch one key: the later one's write lands last,
/// whatever stage of the earlier batch wrote it (a room deletion's `stats` delete submitted
/// after a store writer's batch that puts them in its second stage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_batch_in_one_group_writes_its_keys_last() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Fjall(open(dir.path(), FsyncPolicy::SyncData));
    let group = GroupCommit::start(store.clone(), std::time::Duration::from_millis(200), 1_000);
    let mut writer = WriteBatch::new();
    writer.put(b"m1".to_vec(), vec![1]);
    writer.barrier();
    writer.put(b"stats".to_vec(), vec![1]);
    let mut deletion = WriteBatch::new();
    deletion.delete(b"stats".to_vec());
    let first = {
        let group = group.clone();
        tokio::spawn(async move { group.write(writer).await })
    };
    // Submitted second, within the first one's window.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    group.write(deletion).await.unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(store.get(b"m1").await.unwrap(), Some(vec![1]));
    assert_eq!(
        store.get(b"stats").await.unwrap(),
        None,
        "the later delete was undone"
    );
}
