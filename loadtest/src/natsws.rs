//! The comparison target: plain NATS (core, no JetStream) over a nats-server websocket
//! listener, in the same shapes as chatmesh's fan-out. Each member subscribes to its room's
//! subject `lt.<room>`; publishers `PUB` on the same open-model schedule with the same body
//! (`k`, scheduled time). Core NATS has no ack: a send counts as acked once written, so loss
//! is a written message some subscriber never got.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use futures::stream::SplitStream;
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::body::{make_body, parse_body};
use crate::clock::now_us;
use crate::engine::{Engine, SampleTx};
use crate::stats::{Counters, Kind, Sample};
use crate::tracker::MemberTracker;
use crate::ws::{self, Ws, STEP_TIMEOUT};

const CONNECT: &str = "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"echo\":true,\"headers\":false,\"name\":\"chatmesh-loadtest\"}\r\nPING\r\n";

/// Sends `text` and reads until `PONG` (skipping INFO and +OK).
async fn round_trip(socket: &mut Ws, text: String) -> anyhow::Result<()> {
    socket.send(Message::binary(text.into_bytes())).await?;
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, socket.next())
            .await
            .context("no PONG in time")?
            .context("closed")??;
        let data = msg.into_data();
        if data.windows(4).any(|w| w == b"PONG") {
            return Ok(());
        }
        if data.starts_with(b"-ERR") {
            bail!("{}", String::from_utf8_lossy(&data).trim());
        }
    }
}

/// Connects (CONNECT + PING/PONG) and subscribes to the room's subject.
pub async fn open(engine: &Engine, c: usize) -> anyhow::Result<(Ws, u64, [Sample; 2])> {
    let conn = &engine.plan.conns[c];
    let source = engine.common.source_ip(c, engine.plan.conns.len());
    let started = Instant::now();
    let mut socket = ws::open(&engine.ws_url, source, "").await?;
    round_trip(&mut socket, CONNECT.to_owned()).await?;
    let connect = started.elapsed();
    let subscribed = Instant::now();
    let subject = format!("lt.{}", engine.plan.rooms[conn.room].name);
    round_trip(&mut socket, format!("SUB {subject} 1\r\nPING\r\n")).await?;
    let us = |d: std::time::Duration| d.as_micros() as u64;
    let samples = [
        Sample {
            kind: Kind::Connect,
            us: us(connect),
        },
        Sample {
            kind: Kind::Join,
            us: us(subscribed.elapsed()),
        },
    ];
    Ok((socket, 0, samples))
}

/// Runs connection `c` until the stop signal.
pub async fn run(engine: Arc<Engine>, c: usize, socket: Ws, _last: u64, tx: SampleTx) {
    let (mut sink, stream) = socket.split();
    let conn = &engine.plan.conns[c];
    let room = &engine.plan.rooms[conn.room];
    let subject = format!("lt.{}", room.name);
    let (pongs_tx, mut pongs_rx) = tokio::sync::mpsc::channel::<()>(16);
    let e = engine.clone();
    let writer = tokio::spawn(async move {
        let t0 = e.started().await;
        let p = e.plan.conns[c].publisher;
        let room = &e.plan.rooms[e.plan.conns[c].room];
        let mut i = 0;
        let count = p.map_or(0, |p| p.count);
        let mut stop = e.stop.subscribe();
        while let Some(p) = p.filter(|_| i < count) {
            let due = p.due(t0, i);
            if due > now_us() {
                tokio::select! {
                    _ = tokio::time::sleep_until(e.instant_of(due)) => {}
                    Some(()) = pongs_rx.recv() => {
                        let _ = sink.send(Message::binary(b"PONG\r\n".to_vec())).await;
                        continue;
                    }
                }
            }
            let now = now_us();
            let before = i;
            let mut out = Vec::new();
            while i < count && p.due(t0, i) <= now {
                let body = make_body(p.k(i), p.due(t0, i), e.plan.body_bytes);
                out.extend_from_slice(
                    format!("PUB {subject} {}\r\n{body}\r\n", body.len()).as_bytes(),
                );
                room.acked.insert(p.k(i));
                i += 1;
            }
            if sink.send(Message::binary(out)).await.is_err() {
                e.counters.error("send_failed");
                return;
            }
            Counters::add(&e.counters.sent, i - before);
            Counters::add(&e.counters.acked, i - before);
        }
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                changed = stop.changed() => if changed.is_err() { return },
                Some(()) = pongs_rx.recv() => {
                    let _ = sink.send(Message::binary(b"PONG\r\n".to_vec())).await;
                }
            }
        }
    });
    read(&engine, c, stream, tx, pongs_tx).await;
    writer.abort();
}

async fn read(
    engine: &Engine,
    c: usize,
    mut stream: SplitStream<Ws>,
    tx: SampleTx,
    pongs: tokio::sync::mpsc::Sender<()>,
) {
    let room = &engine.plan.rooms[engine.plan.conns[c].room];
    let counters = &engine.counters;
    let mut tracker = MemberTracker::new(room.messages, 0);
    let mut n = 0u64;
    let mut stop = engine.stop.subscribe();
    let mut buf: Vec<u8> = Vec::new();
    let mut batch = Vec::new();
    loop {
        let next = match stream.next().now_or_never() {
            Some(next) if batch.len() < 256 => next,
            ready => {
                if !batch.is_empty() && tx.send(std::mem::take(&mut batch)).await.is_err() {
                    break;
                }
                match ready {
                    Some(next) => next,
                    None => tokio::select! {
                        next = stream.next() => next,
                        _ = stop.changed() => break,
                    },
                }
            }
        };
        match next {
            Some(Ok(Message::Binary(b))) => buf.extend_from_slice(&b),
            Some(Ok(Message::Text(t))) => buf.extend_from_slice(t.as_bytes()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                counters.error("connection_lost");
                Counters::add(&counters.dropped_connections, 1);
                break;
            }
            Some(Ok(_)) => continue,
        }
        let warm = engine
            .start
            .borrow()
            .map_or(u64::MAX, |t0| t0 + engine.common.warmup.as_micros() as u64);
        let mut at = 0;
        while let Some(eol) = find_crlf(&buf[at..]) {
            let line = &buf[at..at + eol];
            if let Some(rest) = line.strip_prefix(b"MSG ") {
                let len = std::str::from_utf8(rest)
                    .ok()
                    .and_then(|r| r.rsplit(' ').next())
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(0);
                let start = at + eol + 2;
                if buf.len() < start + len + 2 {
                    break;
                }
                let payload = std::str::from_utf8(&buf[start..start + len]).unwrap_or("");
                if let Some((k, due)) = parse_body(payload) {
                    tracker.deliver(k, n + 1, n, due, warm, counters, &mut batch);
                    n += 1;
                }
                at = start + len + 2;
                continue;
            }
            if line.starts_with(b"PING") {
                let _ = pongs.try_send(());
            } else if line.starts_with(b"-ERR") {
                counters.error("nats_err");
            }
            at += eol + 2;
        }
        buf.drain(..at);
    }
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
    let (lost, unacked) = tracker.settle(&room.acked);
    Counters::add(&counters.lost, lost);
    Counters::add(&counters.delivered_unacked, unacked);
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}
