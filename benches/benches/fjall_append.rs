//! The store writer's unit of work: one fjall write batch of N message records committed
//! with `fdatasync` (group commit). Throughput is messages persisted per second; the fsync
//! dominates, so larger batches amortise it.

use chatmesh_benches::{body, ROOM};
use chatmesh_workers::model::keys;
use chatmesh_workers::store::{FjallMemory, FjallStore, WriteBatch};
use chatmesh_workers::{FsyncPolicy, KvStore as _};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn fjall_append(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let Ok(store) = FjallStore::open(dir.path(), FsyncPolicy::SyncData, FjallMemory::default())
    else {
        return;
    };
    let value = serde_json::to_vec(&serde_json::json!({
        "prev": 1, "n": 1, "id": "m-1712345678-0042", "from": "alice_01",
        "ts": 1_712_345_678_901u64, "body": body(64)
    }))
    .unwrap_or_default();
    let mut seq = 0u64;
    let mut g = c.benchmark_group("fjall_append");
    g.sample_size(20);
    for n in [1u64, 16, 128, 512] {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("sync_batch", n), &n, |b, &n| {
            b.to_async(&rt).iter(|| {
                let mut batch = WriteBatch::new();
                for _ in 0..n {
                    seq += 1;
                    batch.put(keys::message(ROOM, seq), value.clone());
                }
                let store = &store;
                async move { store.write(batch).await }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fjall_append);
criterion_main!(benches);
