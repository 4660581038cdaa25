//! Store key encoding of the chat model: the message key every stored message and every
//! history scan builds, and the member key every access check reads.

use chatmesh_benches::ROOM;
use chatmesh_workers::model::keys;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn store_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_keys");
    g.throughput(Throughput::Elements(1));
    g.bench_function("message", |b| {
        b.iter(|| keys::message(black_box(ROOM), black_box(987_654_321)))
    });
    g.bench_function("member", |b| {
        b.iter(|| keys::member(black_box(ROOM), black_box("alice_01")))
    });
    g.bench_function("messages_of_range", |b| {
        b.iter(|| keys::messages_of(black_box(ROOM)))
    });
    let key = keys::message(ROOM, 987_654_321);
    g.bench_function("seq_of_message", |b| {
        b.iter(|| keys::seq_of_message(black_box(&key)))
    });
    g.finish();
}

criterion_group!(benches, store_keys);
criterion_main!(benches);
