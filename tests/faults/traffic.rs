//! Steady traffic that checks every message while parts of the mesh die. Senders send at a
//! fixed rate with unique ids, and after any reconnect resend every unacked id unchanged (the
//! dedupe key). Receivers follow the room's `prev` chain and resume with `join {since}`.
//! Everything lands in one [`Ledger`] that `verify` judges.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::common::{frame, ServerFrame};
use crate::ws;

/// What every client saw.
#[derive(Default)]
pub struct Ledger {
    /// (user, id) → seq of its ack.
    pub acked: HashMap<(String, String), u64>,
    /// Acks of one id with two different seqs (a dedupe failure).
    pub ack_conflicts: u64,
    /// When each ack arrived.
    pub ack_times: Vec<Instant>,
    /// Sends written (first attempts) and resends.
    pub sent: u64,
    pub resent: u64,
    /// Error frames by code.
    pub errors: BTreeMap<String, u64>,
    /// Time from losing a connection to having joined again, per reconnect.
    pub reconnects: Vec<Duration>,
    /// Per receiver.
    pub receivers: Vec<Received>,
}

/// What one receiver got.
#[derive(Default, Clone)]
pub struct Received {
    /// seq → (from, id).
    pub messages: BTreeMap<u64, (String, String)>,
    /// Frames with a seq at or below the last one held.
    pub duplicates: u64,
    /// Frames whose `prev` was not the last seq held.
    pub chain_breaks: Vec<(u64, u64, u64)>,
    /// `gap` frames.
    pub gaps: u64,
    pub last: u64,
}

pub type Shared = Arc<Mutex<Ledger>>;

/// Where and as whom clients connect.
#[derive(Clone)]
pub struct Target {
    pub entry: String,
    pub room: String,
    /// Another entry point tried in turn when `entry` does not answer (another region's
    /// gateway: the failover a client or a global load balancer does).
    pub fallback: Option<String>,
}

pub fn lock(l: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connects (retrying every 100 ms until `give_up`) and returns the session.
async fn reconnect(
    t: &Target,
    user: &str,
    token: &str,
    since: u64,
    give_up: Instant,
) -> Option<ws::Ws> {
    let entries: Vec<&str> = std::iter::once(t.entry.as_str())
        .chain(t.fallback.as_deref())
        .collect();
    for entry in entries.iter().cycle() {
        if Instant::now() >= give_up {
            break;
        }
        match ws::session(entry, user, token, &t.room, since).await {
            Ok(s) => return Some(s),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

/// Sends one message every `period` until `produce` is cancelled, then waits for the acks of
/// what is still pending; stops at `stop` whatever is left.
pub async fn sender(
    t: Target,
    user: String,
    token: String,
    period: Duration,
    ledger: Shared,
    produce: CancellationToken,
    stop: CancellationToken,
) {
    let mut pending: BTreeMap<u64, String> = BTreeMap::new();
    let mut n = 0u64;
    let mut lost_at: Option<Instant> = None;
    let give_up = Instant::now() + Duration::from_secs(600);
    'outer: while !stop.is_cancelled() {
        let Some(mut s) = reconnect(&t, &user, &token, 0, give_up).await else {
            return;
        };
        if let Some(at) = lost_at.take() {
            lock(&ledger).reconnects.push(at.elapsed());
        }
        for id in pending.values() {
            if ws::send(&mut s, frame::send(&t.room, id, id), id.as_str())
                .await
                .is_err()
            {
                lost_at = Some(Instant::now());
                continue 'outer;
            }
            lock(&ledger).resent += 1;
        }
        let mut tick = tokio::time::interval(period);
        loop {
            if produce.is_cancelled() && pending.is_empty() {
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick(), if !produce.is_cancelled() && pending.len() < 1000 => {
                    n += 1;
                    let id = format!("{user}-{n}");
                    pending.insert(n, id.clone());
                    lock(&ledger).sent += 1;
                    if ws::send(&mut s, frame::send(&t.room, &id, &id), id.as_str())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                frame = ws::next_frame(&mut s) => {
                    let Ok(frame) = frame else { break };
                    if !on_sender_frame(&frame, &user, &mut pending, &ledger) {
                        // `unavailable` after the gateway's publish deadline: resend the id.
                        let id = frame.reply_to().and_then(|r| r.as_str()).unwrap_or_default();
                        lock(&ledger).resent += 1;
                        if ws::send(&mut s, frame::send(&t.room, id, id), id).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        lost_at = Some(Instant::now());
    }
}

/// Books an ack or an error; false when the frame asks for a resend.
fn on_sender_frame(
    frame: &ServerFrame,
    user: &str,
    pending: &mut BTreeMap<u64, String>,
    ledger: &Shared,
) -> bool {
    // An ack names its id; an error answers the send's `ref`, which is the id.
    let id = match frame {
        ServerFrame::Ack { id, .. } => &**id,
        _ => frame.reply_to().and_then(|r| r.as_str()).unwrap_or(""),
    };
    let num = id
        .rsplit('-')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    match frame {
        ServerFrame::Ack { seq, .. } => {
            let seq = *seq;
            pending.remove(&num);
            let mut l = lock(ledger);
            l.ack_times.push(Instant::now());
            let key = (user.to_owned(), id.to_owned());
            if let Some(old) = l.acked.insert(key, seq) {
                if old != seq {
                    l.ack_conflicts += 1;
                }
            }
            true
        }
        ServerFrame::Error { code, .. } => {
            let code = code.as_str().to_owned();
            let retry = matches!(code.as_str(), "unavailable" | "rate_limited");
            *lock(ledger).errors.entry(code).or_default() += 1;
            if !retry {
                pending.remove(&num);
            }
            !(retry && pending.contains_key(&num))
        }
        _ => true,
    }
}

/// Follows the room until `stop`, resuming with `since` after every disconnect.
pub async fn receiver(
    t: Target,
    user: String,
    token: String,
    index: usize,
    ledger: Shared,
    stop: CancellationToken,
) {
    let mut lost_at: Option<Instant> = None;
    let give_up = Instant::now() + Duration::from_secs(600);
    while !stop.is_cancelled() {
        let since = lock(&ledger).receivers[index].last;
        let Some(mut s) = reconnect(&t, &user, &token, since, give_up).await else {
            return;
        };
        if let Some(at) = lost_at.take() {
            lock(&ledger).reconnects.push(at.elapsed());
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                frame = ws::next_frame(&mut s) => {
                    let Ok(frame) = frame else { break };
                    on_receiver_frame(&frame, &mut lock(&ledger).receivers[index]);
                }
            }
        }
        lost_at = Some(Instant::now());
    }
}

fn on_receiver_frame(frame: &ServerFrame, r: &mut Received) {
    match frame {
        ServerFrame::Message(m) => {
            let (seq, prev) = (m.seq, m.prev);
            if seq <= r.last {
                r.duplicates += 1;
                return;
            }
            if prev != r.last {
                r.chain_breaks.push((r.last, prev, seq));
            }
            r.last = seq;
            r.messages.insert(seq, (m.from.clone(), m.id.clone()));
        }
        ServerFrame::Gap { .. } => r.gaps += 1,
        _ => {}
    }
}

/// An empty ledger with `receivers` receiver slots.
pub fn ledger(receivers: usize) -> Shared {
    Arc::new(Mutex::new(Ledger {
        receivers: vec![Received::default(); receivers],
        ..Ledger::default()
    }))
}
