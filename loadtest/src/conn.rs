//! One chatmesh client connection of a run: opened and joined inside its shard's goose
//! "connect" transaction, then one task reads it (acks, messages, errors) and, for a
//! publisher, a second task sends on the open-model schedule. Both stop on the run's stop
//! signal; the reader then settles loss for its member.

use std::sync::Arc;
use std::time::Instant;

use chatmesh_protocol::frames::{ClientFrame, FrameType, FrameView};
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::body::{make_body, parse_body};
use crate::changes::{SendKind, Targets};
use crate::clock::now_us;
use crate::engine::{Engine, SampleTx};
use crate::plan::PubPlan;
use crate::stats::{Counters, Kind, Sample};
use crate::tracker::MemberTracker;
use crate::ws::{self, Ws};

/// Largest batch of samples sent to the recorder at once.
const BATCH: usize = 256;

/// Opens connection `c` (connect + hello, then join). Returns the socket, the room's
/// `last_seq`, and the two timings.
pub async fn open(engine: &Engine, c: usize) -> anyhow::Result<(Ws, u64, [Sample; 2])> {
    let conn = &engine.plan.conns[c];
    let (_, token) = &engine.accounts[conn.account];
    let source = engine.common.source_ip(c, engine.plan.conns.len());
    let started = Instant::now();
    let mut socket = ws::open(&engine.ws_url, source, "chatmesh.v1").await?;
    ws::hello(&mut socket, token).await?;
    let connect = started.elapsed();
    let room = &engine.plan.rooms[conn.room].name;
    let joined = Instant::now();
    let last_seq = ws::join(&mut socket, room).await?;
    let samples = [
        Sample {
            kind: Kind::Connect,
            us: connect.as_micros() as u64,
        },
        Sample {
            kind: Kind::Join,
            us: joined.elapsed().as_micros() as u64,
        },
    ];
    Ok((socket, last_seq, samples))
}

/// Runs connection `c` until the stop signal.
pub async fn run(engine: Arc<Engine>, c: usize, socket: Ws, last_seq: u64, tx: SampleTx) {
    let (sink, stream) = socket.split();
    let conn = &engine.plan.conns[c];
    let mut answers = None;
    let targets = Arc::new(Targets::default());
    let writer = match (conn.publisher, conn.reader) {
        (Some(p), _) => Some(tokio::spawn(publish(
            engine.clone(),
            c,
            p,
            sink,
            targets.clone(),
        ))),
        (None, Some(r)) => {
            let (page_tx, page_rx) = tokio::sync::mpsc::channel(16);
            answers = Some(page_tx);
            let scroll = crate::history::scroll(engine.clone(), c, r, sink, page_rx, tx.clone());
            Some(tokio::spawn(scroll))
        }
        (None, None) => None,
    };
    read(&engine, c, stream, last_seq, tx, answers, &targets).await;
    if let Some(w) = writer {
        w.abort();
    }
}

async fn read(
    engine: &Engine,
    c: usize,
    mut stream: SplitStream<Ws>,
    last: u64,
    tx: SampleTx,
    answers: Option<crate::history::PageTx>,
    targets: &Targets,
) {
    let conn = &engine.plan.conns[c];
    let room = &engine.plan.rooms[conn.room];
    let counters = &engine.counters;
    let mut tracker = MemberTracker::new(room.messages, last);
    let mut stop = engine.stop.subscribe();
    let warm_until = engine
        .started()
        .now_or_never()
        .map(|t0| t0 + warmup_us(engine));
    let mut warm_until = warm_until.unwrap_or(u64::MAX);
    let mut batch = Vec::with_capacity(BATCH);
    // `LT_TRACE=N` prints the first N frames of every connection (diagnosis only).
    let mut trace: u32 = std::env::var("LT_TRACE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    loop {
        let next = match stream.next().now_or_never() {
            Some(next) if batch.len() < BATCH => next,
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
        let text = match next {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                counters.error(&format!("closed_{code}"));
                Counters::add(&counters.dropped_connections, 1);
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => {
                counters.error("connection_lost");
                Counters::add(&counters.dropped_connections, 1);
                break;
            }
        };
        if warm_until == u64::MAX {
            if let Some(t0) = *engine.start.borrow() {
                warm_until = t0 + warmup_us(engine);
            }
        }
        if trace > 0 {
            trace -= 1;
            eprintln!("[trace] conn {c}: {}", text.as_str());
        }
        let Ok(frame) = FrameView::peek(text.as_str()) else {
            counters.error("unparsable_frame");
            continue;
        };
        if let Some(a) = &answers {
            if crate::history::is_answer(frame.kind, frame.r#ref.as_ref()) {
                // The scroller waits for it; a full queue only holds answers it gave up on.
                let _ = a.try_send((now_us(), text.as_str().to_owned()));
            }
        }
        match frame.kind {
            FrameType::Message => {
                let (Some(seq), Some(prev)) = (frame.seq, frame.prev) else {
                    continue;
                };
                let Some((k, due)) = frame.body.as_deref().and_then(parse_body) else {
                    tracker.on_message(u64::MAX, seq, prev);
                    continue;
                };
                if frame.id.as_deref().map(SendKind::of_id) == Some(SendKind::Message) {
                    targets.received(seq);
                }
                tracker.deliver(k, seq, prev, due, warm_until, counters, &mut batch);
            }
            FrameType::Ack => {
                let (Some(k), Some(p)) = (acked_k(&frame), conn.publisher) else {
                    continue;
                };
                let kind = frame
                    .id
                    .as_deref()
                    .map_or(SendKind::Message, SendKind::of_id);
                let timing = match kind {
                    SendKind::Message => {
                        targets.own_acked(frame.seq.unwrap_or(0));
                        Kind::Ack
                    }
                    SendKind::Edit => {
                        Counters::add(&counters.edits, 1);
                        Kind::EditAck
                    }
                    SendKind::Reaction => {
                        Counters::add(&counters.reactions, 1);
                        Kind::ReactionAck
                    }
                };
                // A reaction's body is its key: members cannot tell its `k`, so it is
                // never expected as a delivery.
                if kind != SendKind::Reaction {
                    room.acked.insert(k);
                }
                Counters::add(&counters.acked, 1);
                if let (Some(i), Some(t0)) = (p.index_of(k), *engine.start.borrow()) {
                    let due = p.due(t0, i);
                    if due >= warm_until {
                        let us = now_us().saturating_sub(due);
                        batch.push(Sample { kind: timing, us });
                    }
                }
            }
            FrameType::Error => counters.error(frame.code.as_deref().unwrap_or("unknown")),
            _ => {}
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
    let (lost, unacked) = tracker.settle(&room.acked);
    Counters::add(&counters.lost, lost);
    Counters::add(&counters.delivered_unacked, unacked);
    Counters::add(&counters.prev_breaks, tracker.prev_breaks);
}

fn warmup_us(engine: &Engine) -> u64 {
    engine.common.warmup.as_micros() as u64
}

/// Sends on the schedule: every send whose time has come goes out in one flush.
async fn publish(
    engine: Arc<Engine>,
    c: usize,
    p: PubPlan,
    mut sink: SplitSink<Ws, Message>,
    targets: Arc<Targets>,
) {
    let t0 = engine.started().await;
    let mut i = 0;
    while i < p.count {
        let due = p.due(t0, i);
        if due > now_us() {
            tokio::time::sleep_until(engine.instant_of(due)).await;
        }
        let now = now_us();
        while i < p.count && p.due(t0, i) <= now {
            let frame = if engine.plan.mix.is_plain() {
                send_frame(&engine, c, &p, t0, i)
            } else {
                mixed_frame(&engine, c, &p, t0, i, &targets)
            };
            if sink.feed(frame).await.is_err() {
                engine.counters.error("send_failed");
                return;
            }
            Counters::add(&engine.counters.sent, 1);
            i += 1;
        }
        if sink.flush().await.is_err() {
            engine.counters.error("send_failed");
            return;
        }
    }
    // Keep the write half (and so the connection) open until the run stops.
    let mut stop = engine.stop.subscribe();
    let _ = stop.wait_for(|s| *s).await;
}

/// Send `i` of publisher connection `c`: id `<run>-<conn>-k<k>`, unique per sender across
/// runs and rooms (protocol v1), so the gateway's dedupe never answers with another send's
/// seq; the body carries `k` and the scheduled time. The same `i` always gives the same
/// frame, so a resend after a reconnect is byte for byte the first send.
pub fn send_frame(engine: &Engine, c: usize, p: &PubPlan, t0: u64, i: u64) -> Message {
    let room = &engine.plan.rooms[engine.plan.conns[c].room].name;
    let run = &engine.run_id;
    let k = p.k(i);
    let send = ClientFrame::send(
        room.as_str(),
        format!("{run}-{c}-k{k}"),
        make_body(k, p.due(t0, i), engine.plan.body_bytes),
    );
    Message::text(send.encode(&Some(k.into())))
}

/// Send `i` of publisher connection `c` when edits and reactions are mixed in: a message,
/// or an edit or a reaction where `targets` has something to change ([`crate::changes`]).
/// Not for `--reconnect` runs: the same `i` may give another frame after a reconnect.
fn mixed_frame(
    engine: &Engine,
    c: usize,
    p: &PubPlan,
    t0: u64,
    i: u64,
    targets: &Targets,
) -> Message {
    let room = &engine.plan.rooms[engine.plan.conns[c].room].name;
    let k = p.k(i);
    let body = make_body(k, p.due(t0, i), engine.plan.body_bytes);
    let head = format!("{}-{c}", engine.run_id);
    let (send, _) = crate::changes::frame(&engine.plan.mix, targets, room, &head, k, body);
    Message::text(send.encode(&Some(k.into())))
}

/// The `k` of an `ack` for one of [`send_frame`]'s ids.
pub fn acked_k(frame: &FrameView<'_>) -> Option<u64> {
    let (_, k) = frame.id.as_deref()?.rsplit_once("-k")?;
    k.parse().ok()
}
