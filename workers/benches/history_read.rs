//! History reads on fjall straight from the model (no moka page cache): the latest page (a
//! forward scan, the hot path), a page back from the middle, and a page forward from an old
//! cursor (a reverse scan: what a resume reads), in a room of 100,000 messages interleaved
//! with seven other rooms. Run: `cargo bench -p chatmesh-workers --bench history_read`.

use std::time::Duration;

use chatmesh_protocol::message::Payload;
use chatmesh_workers::cache::Caches;
use chatmesh_workers::model::{HistoryQuery, Model};
use chatmesh_workers::store::{FjallMemory, FjallStore, FsyncPolicy, Store};
use chatmesh_workers::writer::{store_batch, Delivery};
use chatmesh_workers::WorkerConfig;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const ROOMS: u64 = 8;
const PER_ROOM: u64 = 100_000;
const PAGE: usize = 50;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        FjallStore::open(dir.path(), FsyncPolicy::Buffered, FjallMemory::default()).expect("open");
    let model = Model::new(Store::Fjall(store));
    rt.block_on(async {
        let caches = Caches::new(WorkerConfig::default().cache_sizes());
        let mut cp = 0;
        let all: Vec<u64> = (1..=ROOMS * PER_ROOM).collect();
        for chunk in all.chunks(5_000) {
            let batch = chunk
                .iter()
                .map(|&seq| Delivery {
                    seq,
                    message: Some((
                        format!("r{}", seq % ROOMS),
                        Payload {
                            id: format!("m{seq}"),
                            from: "ann".into(),
                            ts: seq,
                            body: "a chat message of a typical length, some sixty bytes.".into(),
                            attachments: Vec::new(),
                            mentions: Default::default(),
                            ..Default::default()
                        },
                    )),
                })
                .collect();
            store_batch(&model, &caches, 0, &mut cp, batch)
                .await
                .expect("fill");
        }
    });
    let total = ROOMS * PER_ROOM;
    let queries = [
        ("latest", None, None),
        ("before_middle", Some(total / 2), None),
        ("after_old_cursor", None, Some(total / 10)),
    ];
    let mut group = c.benchmark_group("history_read");
    group.throughput(Throughput::Elements(PAGE as u64));
    group.measurement_time(Duration::from_secs(3));
    for (name, before, after) in queries {
        let q = HistoryQuery {
            before,
            after,
            limit: PAGE,
        };
        group.bench_function(BenchmarkId::new(name, PAGE), |b| {
            b.to_async(&rt).iter(|| async {
                let (page, _) = model.history("r3", q).await.expect("history");
                assert_eq!(page.len(), PAGE);
                page
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
