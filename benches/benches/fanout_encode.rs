//! Fan-out of one message to a room's local members: splice the frame once and share the
//! `Bytes` (what the gateway does) versus serialising a frame per member with serde.
//! Throughput is members served per second.

use bytes::Bytes;
use chatmesh_benches::{payload, payload_json, ROOM};
use chatmesh_protocol::message::{encode_message_frame, Message};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::Serialize;
use std::hint::black_box;

#[derive(Serialize)]
struct Tagged<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    msg: &'a Message,
}

fn fanout(c: &mut Criterion) {
    let json = payload_json(64);
    let msg = Message::from_payload(ROOM, 1001, 1000, payload(64));
    let mut g = c.benchmark_group("fanout_encode");
    for members in [10usize, 100, 1000] {
        g.throughput(Throughput::Elements(members as u64));
        let mut queues: Vec<Vec<Bytes>> = vec![Vec::with_capacity(1); members];
        g.bench_with_input(
            BenchmarkId::new("encode_once", members),
            &members,
            |b, _| {
                b.iter(|| {
                    let frame = encode_message_frame(ROOM, 1001, 1000, black_box(&json));
                    let frame = frame.unwrap_or_default();
                    for q in queues.iter_mut() {
                        q.clear();
                        q.push(frame.clone());
                    }
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("serde_per_member", members),
            &members,
            |b, _| {
                b.iter(|| {
                    for q in queues.iter_mut() {
                        let tagged = Tagged {
                            kind: "message",
                            msg: black_box(&msg),
                        };
                        let bytes = serde_json::to_vec(&tagged).unwrap_or_default();
                        q.clear();
                        q.push(Bytes::from(bytes));
                    }
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
