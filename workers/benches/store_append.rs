//! Store append on fjall through the real store-writer path (`store_batch`: chain, stats,
//! checkpoint, one commit), per fsync policy and batch size. Shows what one `fdatasync` per
//! batch costs and how batching amortises it. Run: `cargo bench -p chatmesh-workers --bench
//! store_append`.

use std::time::{Duration, Instant};

use chatmesh_protocol::message::Payload;
use chatmesh_workers::cache::Caches;
use chatmesh_workers::model::Model;
use chatmesh_workers::store::{FjallMemory, FjallStore, FsyncPolicy, Store};
use chatmesh_workers::writer::{store_batch, Delivery};
use chatmesh_workers::WorkerConfig;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const ROOMS: [&str; 8] = ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"];

fn delivery(seq: u64) -> Delivery {
    let room = ROOMS[(seq % ROOMS.len() as u64) as usize];
    let p = Payload {
        id: format!("m{seq}"),
        from: "ann".into(),
        ts: 1_700_000_000_000 + seq,
        body: "a chat message of a typical length, some sixty bytes long.".into(),
        attachments: Vec::new(),
        mentions: Default::default(),
        ..Default::default()
    };
    Delivery {
        seq,
        message: Some((room.to_owned(), p)),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("store_append");
    group.measurement_time(Duration::from_secs(4));
    group.sample_size(20);
    for fsync in [FsyncPolicy::SyncData, FsyncPolicy::Buffered] {
        for batch in [1usize, 64, 512] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = FjallStore::open(dir.path(), fsync, FjallMemory::default()).expect("open");
            let model = Model::new(Store::Fjall(store));
            let caches = Caches::new(WorkerConfig::default().cache_sizes());
            let mut checkpoint = 0u64;
            group.throughput(Throughput::Elements(batch as u64));
            let id = BenchmarkId::new(format!("{fsync:?}"), batch);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let from = checkpoint + 1;
                            let msgs = (from..from + batch as u64).map(delivery).collect();
                            store_batch(&model, &caches, 0, &mut checkpoint, msgs)
                                .await
                                .expect("store_batch");
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
