//! Client frame parse (with validation) and server frame encode: the per-frame cost of every
//! session on a gateway.

use chatmesh_benches::send_frame;
use chatmesh_protocol::frames::{error_frame, parse_client_frame, ServerFrame};
use chatmesh_protocol::{ApiError, Limits};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn frames(c: &mut Criterion) {
    let limits = Limits::default();
    let send = send_frame();
    let ping = br#"{"type":"ping","ref":"p1"}"#.to_vec();
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Bytes(send.len() as u64));
    g.bench_function("parse_send", |b| {
        b.iter(|| parse_client_frame(black_box(&send), &limits))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_ping", |b| {
        b.iter(|| parse_client_frame(black_box(&ping), &limits))
    });
    let r = Some(serde_json::json!(17));
    g.bench_function("encode_ack", |b| {
        b.iter(|| {
            ServerFrame::Ack {
                r#ref: std::borrow::Cow::Borrowed(black_box(&r)),
                room: "team-platform-general".into(),
                id: "m-1712345678-0042".into(),
                seq: 123_456,
                ts: 1_712_345_678_901,
            }
            .encode()
        })
    });
    let err = ApiError::forbidden("not a member of this room");
    g.bench_function("encode_error", |b| {
        b.iter(|| error_frame(black_box(&r), &err))
    });
    g.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
