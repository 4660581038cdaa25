//! Room → partition hashing (FNV-1a 32) and subject building: done on every send by the
//! gateway and on every service request.

use chatmesh_benches::rooms;
use chatmesh_protocol::subjects::{in_subject, partition};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn partitions(c: &mut Criterion) {
    let rooms = rooms(1024);
    let mut g = c.benchmark_group("partition");
    g.throughput(Throughput::Elements(rooms.len() as u64));
    g.bench_function("partition_1024_rooms", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for r in &rooms {
                acc = acc.wrapping_add(partition(black_box(r), 16));
            }
            acc
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("in_subject", |b| {
        b.iter(|| in_subject(16, black_box(&rooms[7])))
    });
    g.finish();
}

criterion_group!(benches, partitions);
criterion_main!(benches);
