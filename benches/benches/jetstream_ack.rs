//! One JetStream publish with a `Nats-Msg-Id` and the wait for its PubAck, against a real
//! nats-server 2.15 child on loopback (file storage): the floor of send → ack latency.
//! Also 64 publishes in flight before awaiting their acks, as a busy gateway does.

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};
use chatmesh_benches::payload_json;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use natsd::NatsServer;

async fn setup() -> Option<(NatsServer, jetstream::Context)> {
    let server = NatsServer::start_temp().await.ok()?;
    let client = server.connect().await.ok()?;
    let js = jetstream::new(client);
    js.get_or_create_stream(stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .ok()?;
    Some((server, js))
}

async fn publish(js: &jetstream::Context, id: u64, body: &[u8]) -> Result<(), PublishErrorKind> {
    let msg = PublishMessage::build()
        .payload(body.to_vec().into())
        .message_id(id.to_string());
    let ack = js
        .send_publish("bench.room", msg)
        .await
        .map_err(|e| e.kind())?;
    ack.await.map(|_| ()).map_err(|e| e.kind())
}

fn jetstream_ack(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return;
    };
    let Some((_server, js)) = rt.block_on(setup()) else {
        eprintln!("jetstream_ack: no nats-server available (ops/test installs one); skipped");
        return;
    };
    let body = payload_json(64);
    let mut id = 0u64;
    let mut g = c.benchmark_group("jetstream_ack");
    for inflight in [1u64, 64] {
        g.throughput(Throughput::Elements(inflight));
        g.bench_with_input(
            BenchmarkId::new("publish_ack", inflight),
            &inflight,
            |b, &n| {
                b.to_async(&rt).iter(|| {
                    let start = id;
                    id += n;
                    let (js, body) = (&js, &body);
                    async move {
                        let acks = (start..start + n).map(|i| publish(js, i, body));
                        futures_join(acks).await
                    }
                })
            },
        );
    }
    g.finish();
}

/// Awaits every future concurrently; the first error wins.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Result<(), PublishErrorKind>
where
    F: std::future::Future<Output = Result<(), PublishErrorKind>>,
{
    let all: Vec<F> = futs.collect();
    for r in futures::future::join_all(all).await {
        r?;
    }
    Ok(())
}

criterion_group!(benches, jetstream_ack);
criterion_main!(benches);
