//! Client frame parse (with validation) and server frame encode: the per-frame cost of every
//! session on a gateway. And the client side: a delivered `message` frame read with the full
//! decode ([`ServerFrame::decode`]), with the one-pass [`FrameView`] (what the load harness
//! reads every delivery with), and with the harness's own parser before it moved to the
//! protocol's frames (`OldInbound`, kept here only as the baseline of that change).

use chatmesh_benches::send_frame;
use std::borrow::Cow;

use chatmesh_protocol::frames::{error_frame, parse_client_frame, FrameView, ServerFrame};
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

/// The load harness's parser of every server frame until it read them with [`FrameView`].
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct OldInbound<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    prev: Option<u64>,
    #[serde(default)]
    last_seq: Option<u64>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(default, rename = "ref")]
    r#ref: Option<serde_json::Value>,
    #[serde(default)]
    limits: Option<serde_json::Value>,
    #[serde(default)]
    messages: Option<Vec<serde_json::Value>>,
}

fn decode(c: &mut Criterion) {
    let text = concat!(
        r#"{"type":"message","room":"lt-run-3","seq":123456,"prev":123401,"#,
        r#""id":"run-17-k4242","from":"lt-run-u17","ts":1712345678901,"#,
        r#""body":"4242 1712345678901234 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#
    );
    let mut g = c.benchmark_group("decode_message");
    g.throughput(Throughput::Elements(1));
    g.bench_function("server_frame", |b| {
        b.iter(|| ServerFrame::decode(black_box(text)).map(|f| f.frame_type()))
    });
    g.bench_function("frame_view", |b| {
        b.iter(|| FrameView::peek(black_box(text)).map(|v| v.seq))
    });
    g.bench_function("old_harness_inbound", |b| {
        b.iter(|| serde_json::from_str::<OldInbound<'_>>(black_box(text)).map(|v| v.seq))
    });
    g.finish();
}

criterion_group!(benches, frames, decode);
criterion_main!(benches);
