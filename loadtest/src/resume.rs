//! `--reconnect`: a fan-out connection that outlives its gateway, as a real client does.
//!
//! One task owns the socket (no split): it reads frames, sends on the open-model schedule,
//! and when the connection is lost (a close, an error, the end of the stream) it connects
//! again to the same target (a load balancer sends it to a live gateway), says `hello`,
//! re-joins with `since` = the last seq it holds (protocol v1: every later message exactly
//! once, in order), and — for a publisher — resends every send not yet acked with its id
//! unchanged, which the gateway's dedupe answers with the original seq. A send answered
//! `error unavailable` (not stored: an election, an overloaded mesh) is resent the same way
//! after [`RETRY_AFTER`], as protocol v1 asks of a client. Loss, duplicates and
//! the `prev` chain are checked across the seam exactly as without faults, each reconnect is
//! timed (`reconnect`: loss → joined again) and counted under its cause (`closed_1001`,
//! `connection_lost`, …) in `errors`. A connection counts as dropped only when it cannot get
//! back within [`RECONNECT_DEADLINE`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmesh_protocol::backoff::Backoff;
use chatmesh_protocol::frames::{FrameType, FrameView};
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::body::parse_body;
use crate::clock::now_us;
use crate::conn;
use crate::engine::{Engine, SampleTx};
use crate::plan::PubPlan;
use crate::stats::{Counters, Kind, Sample};
use crate::tracker::MemberTracker;
use crate::ws::{self, Ws};

/// How long a connection keeps trying to come back before it counts as dropped.
pub const RECONNECT_DEADLINE: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Largest batch of samples sent to the recorder at once.
const BATCH: usize = 256;
/// How long a send answered `unavailable` waits before it is resent.
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// Why a connection's session ended.
enum End {
    /// The run is over.
    Stopped,
    /// The connection broke; the code to count it under.
    Lost(String),
}

/// A publisher's books: the next schedule index and the sends not acked yet (`k`s; a
/// resend rebuilds its frame with [`conn::send_frame`]).
struct Outbox {
    plan: PubPlan,
    next: u64,
    pending: BTreeSet<u64>,
    /// Sends answered `unavailable`, resent at `retry_at`.
    retry: BTreeSet<u64>,
    retry_at: Option<tokio::time::Instant>,
}

/// Runs connection `c` until the stop signal, reconnecting as often as it must.
pub async fn run(engine: Arc<Engine>, c: usize, socket: Ws, last_seq: u64, tx: SampleTx) {
    let conn = &engine.plan.conns[c];
    let room = &engine.plan.rooms[conn.room];
    let mut tracker = MemberTracker::new(room.messages, last_seq);
    let mut outbox = conn.publisher.map(|plan| Outbox {
        plan,
        next: 0,
        pending: BTreeSet::new(),
        retry: BTreeSet::new(),
        retry_at: None,
    });
    let mut batch = Vec::with_capacity(BATCH);
    let mut socket = socket;
    loop {
        let end = session(
            &engine,
            c,
            &mut socket,
            &mut tracker,
            &mut outbox,
            &mut batch,
            &tx,
        )
        .await;
        if !batch.is_empty() && tx.send(std::mem::take(&mut batch)).await.is_err() {
            break;
        }
        let End::Lost(code) = end else { break };
        engine.counters.error(&code);
        let lost_at = Instant::now();
        match reconnect(&engine, c, tracker.last_seq()).await {
            Some(s) => {
                socket = s;
                let us = lost_at.elapsed().as_micros() as u64;
                batch.push(Sample {
                    kind: Kind::Reconnect,
                    us,
                });
                // Every send the old connection did not see acked goes out again, same id.
                let t0 = *engine.start.borrow();
                if let Some(o) = outbox.as_mut() {
                    o.retry.clear();
                    o.retry_at = None;
                }
                if let (Some(o), Some(t0)) = (&outbox, t0) {
                    let all = o.pending.iter().copied();
                    if resend(&engine, c, &mut socket, o, all, t0).await.is_err() {
                        continue;
                    }
                }
            }
            None => {
                Counters::add(&engine.counters.dropped_connections, 1);
                break;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
    let (lost, unacked) = tracker.settle(&room.acked);
    Counters::add(&engine.counters.lost, lost);
    Counters::add(&engine.counters.delivered_unacked, unacked);
    Counters::add(&engine.counters.prev_breaks, tracker.prev_breaks);
}

/// Connects again (with backoff) until joined with `since`, the run stops, or the deadline.
async fn reconnect(engine: &Engine, c: usize, since: u64) -> Option<Ws> {
    let conn = &engine.plan.conns[c];
    let (_, token) = &engine.accounts[conn.account];
    let room = &engine.plan.rooms[conn.room].name;
    let source = engine.common.source_ip(c, engine.plan.conns.len());
    let deadline = tokio::time::Instant::now() + RECONNECT_DEADLINE;
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    let stop = engine.stop.subscribe();
    while tokio::time::Instant::now() < deadline && !*stop.borrow() {
        let attempt = async {
            let mut s = ws::open(&engine.ws_url, source, "chatmesh.v1").await?;
            ws::hello(&mut s, token).await?;
            ws::join_since(&mut s, room, Some(since)).await?;
            anyhow::Ok(s)
        };
        match attempt.await {
            Ok(s) => return Some(s),
            Err(e) => tracing_free_debug(c, &e),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    None
}

/// `LT_TRACE` set: print why a reconnect attempt failed (diagnosis only).
fn tracing_free_debug(c: usize, e: &anyhow::Error) {
    if std::env::var_os("LT_TRACE").is_some() {
        eprintln!("[trace] conn {c}: reconnect attempt failed: {e:#}");
    }
}

/// One connection's life: read, send on schedule, until the run stops or the socket breaks.
async fn session(
    engine: &Engine,
    c: usize,
    socket: &mut Ws,
    tracker: &mut MemberTracker,
    outbox: &mut Option<Outbox>,
    batch: &mut Vec<Sample>,
    tx: &SampleTx,
) -> End {
    let conn = &engine.plan.conns[c];
    let room = &engine.plan.rooms[conn.room];
    let counters = &engine.counters;
    let mut stop = engine.stop.subscribe();
    let mut start = engine.start.subscribe();
    let mut t0 = None;
    loop {
        // Set once per run: read until known, then kept.
        if t0.is_none() {
            t0 = *start.borrow_and_update();
        }
        let warm_until = t0.map_or(u64::MAX, |t0| t0 + engine.common.warmup.as_micros() as u64);
        // The next scheduled send, once the run has started.
        let due = match (t0, outbox.as_ref()) {
            (Some(t0), Some(o)) if o.next < o.plan.count => Some(o.plan.due(t0, o.next)),
            _ => None,
        };
        let timer = async {
            match due {
                Some(due) => tokio::time::sleep_until(engine.instant_of(due)).await,
                None => std::future::pending().await,
            }
        };
        let retry_at = outbox.as_ref().and_then(|o| o.retry_at);
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = async { let _ = stop.wait_for(|s| *s).await; } => return End::Stopped,
            changed = start.changed(), if t0.is_none() => {
                if changed.is_err() {
                    return End::Stopped;
                }
            }
            () = timer => {
                if let (Some(t0), Some(o)) = (t0, outbox.as_mut()) {
                    if let Err(code) = send_due(engine, c, socket, o, t0).await {
                        return End::Lost(code);
                    }
                }
            }
            () = retry => {
                if let (Some(t0), Some(o)) = (t0, outbox.as_mut()) {
                    if let Err(code) = resend_refused(engine, c, socket, o, t0).await {
                        return End::Lost(code);
                    }
                }
            }
            next = socket.next() => {
                let text = match next {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map_or(1005, |f| u16::from(f.code));
                        return End::Lost(format!("closed_{code}"));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return End::Lost("connection_lost".into()),
                };
                let Ok(frame) = FrameView::peek(text.as_str()) else {
                    counters.error("unparsable_frame");
                    continue;
                };
                match frame.kind {
                    FrameType::Message => {
                        let (Some(seq), Some(prev)) = (frame.seq, frame.prev) else {
                            continue;
                        };
                        match frame.body.as_deref().and_then(parse_body) {
                            Some((k, due)) => {
                                tracker.deliver(k, seq, prev, due, warm_until, counters, batch);
                            }
                            None => {
                                tracker.on_message(u64::MAX, seq, prev);
                            }
                        }
                    }
                    FrameType::Ack => {
                        let (Some(k), Some(o)) = (conn::acked_k(&frame), outbox.as_mut()) else {
                            continue;
                        };
                        // A resend's ack repeats the original's: count each k once.
                        if !o.pending.remove(&k) {
                            continue;
                        }
                        room.acked.insert(k);
                        Counters::add(&counters.acked, 1);
                        if let (Some(i), Some(t0)) = (o.plan.index_of(k), t0) {
                            let due = o.plan.due(t0, i);
                            if due >= warm_until {
                                batch.push(Sample {
                                    kind: Kind::Ack,
                                    us: now_us().saturating_sub(due),
                                });
                            }
                        }
                    }
                    FrameType::Error => {
                        let code = frame.code.as_deref().unwrap_or("unknown");
                        counters.error(code);
                        let refused = frame.r#ref.as_ref().and_then(serde_json::Value::as_u64);
                        if let (true, Some(k), Some(o)) = (code == "unavailable", refused, outbox.as_mut()) {
                            if o.pending.contains(&k) {
                                o.retry.insert(k);
                                o.retry_at.get_or_insert_with(|| {
                                    tokio::time::Instant::now() + RETRY_AFTER
                                });
                            }
                        }
                    }
                    _ => {}
                }
                if batch.len() >= BATCH && tx.send(std::mem::take(batch)).await.is_err() {
                    return End::Stopped;
                }
            }
        }
    }
}

/// Resends, same ids, the sends answered `unavailable` that are still not acked.
async fn resend_refused(
    engine: &Engine,
    c: usize,
    socket: &mut Ws,
    o: &mut Outbox,
    t0: u64,
) -> Result<(), String> {
    o.retry_at = None;
    let refused = std::mem::take(&mut o.retry);
    resend(engine, c, socket, o, refused.into_iter(), t0).await
}

/// Writes sends `ks` again with their ids (those still pending), in one flush.
async fn resend(
    engine: &Engine,
    c: usize,
    socket: &mut Ws,
    o: &Outbox,
    ks: impl Iterator<Item = u64>,
    t0: u64,
) -> Result<(), String> {
    for i in ks
        .filter(|k| o.pending.contains(k))
        .filter_map(|k| o.plan.index_of(k))
    {
        let frame = conn::send_frame(engine, c, &o.plan, t0, i);
        if socket.feed(frame).await.is_err() {
            return Err("send_failed".into());
        }
        Counters::add(&engine.counters.resent, 1);
    }
    socket.flush().await.map_err(|_| "send_failed".to_owned())
}

/// Sends every send whose time has come, in one flush; each stays pending until acked.
async fn send_due(
    engine: &Engine,
    c: usize,
    socket: &mut Ws,
    o: &mut Outbox,
    t0: u64,
) -> Result<(), String> {
    let now = now_us();
    while o.next < o.plan.count && o.plan.due(t0, o.next) <= now {
        let frame = conn::send_frame(engine, c, &o.plan, t0, o.next);
        o.pending.insert(o.plan.k(o.next));
        o.next += 1;
        Counters::add(&engine.counters.sent, 1);
        if socket.feed(frame).await.is_err() {
            return Err("send_failed".into());
        }
    }
    socket.flush().await.map_err(|_| "send_failed".to_owned())
}
