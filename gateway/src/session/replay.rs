//! The backlog of a `join` with `since`: every message with seq in (since, last_seq], in
//! order, read from the worker's store (which knows each message's `prev`, so it can tell a
//! retention gap) and, above what the store has yet, from JetStream. Frames are queued as
//! bulk ([`SessionLink::send_bulk`]): a backlog never fills the queue replies need. How many
//! replays run, and which stop early, is `replays.rs`'s business.
//!
//! A replay holds one of the gateway's few replay slots, so its client must take it at
//! `replay_min_bytes_per_sec` while the replay waits for it ([`Pace`]): a client that reads
//! slower (or not at all) is closed with 1013 and resumes after reconnecting, and the slot
//! goes to someone else. Time the replay spends reading from the store or JetStream does
//! not count against the client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatmesh_protocol::frames::ServerFrame;
use chatmesh_protocol::message::{encode_message_frame, Message};
use chatmesh_protocol::service::{History, HistoryRequest};
use chatmesh_protocol::subjects::in_subject;

use crate::link::{Out, SessionLink};
use crate::state::AppState;

const PAGE: u32 = 100;
const JS_BATCH: usize = 256;
/// A replay that cannot queue a frame for this long gives up (the session is stuck).
const STALL: Duration = Duration::from_secs(30);
/// Each time a replay has waited this long in all for its client to take frames, the client
/// must have taken `replay_min_bytes_per_sec` times as many seconds of bytes meanwhile.
const PACE_WINDOW: Duration = Duration::from_secs(10);
/// How many times a replay goes back to the store after the stream let go of where it read
/// from, before the client is told to resume later (each time, the store has moved on).
const STORE_ROUNDS: usize = 8;

/// Why a replay reads the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The store no longer has what lies between the cursor and its next message.
    InStoreGap,
    /// The store has nothing after the cursor yet (or does not answer).
    PastStore,
}

/// Where a read of the stream stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Everything retained up to here was sent, each with its true `prev`.
    To(u64),
    /// The stream no longer holds the message at the cursor, and the store has messages
    /// after it: what the stream has next may not follow the cursor (the store writer
    /// trimmed what it stored between them), so nothing of it was sent.
    Unsure(u64),
}

/// How fast the client takes its replay while the replay waits for it.
#[derive(Debug)]
struct Pace {
    min_per_window: u64,
    /// Time spent queueing frames and bytes queued, since the window began.
    window: Mutex<(Duration, u64)>,
    too_slow: AtomicBool,
}

impl Pace {
    fn new(min_bytes_per_sec: u64) -> Self {
        Self {
            min_per_window: min_bytes_per_sec.saturating_mul(PACE_WINDOW.as_secs()),
            window: Mutex::new((Duration::ZERO, 0)),
            too_slow: AtomicBool::new(false),
        }
    }

    /// Queueing `bytes` took `waited`; `None` once the client is too slow.
    fn took(&self, waited: Duration, bytes: u64) -> Option<()> {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.0 += waited;
        window.1 += bytes;
        if window.0 < PACE_WINDOW {
            return Some(());
        }
        if window.1 < self.min_per_window {
            self.too_slow.store(true, Ordering::Relaxed);
            metrics::counter!("chatmesh_replays_too_slow_total").increment(1);
            return None;
        }
        *window = (Duration::ZERO, 0);
        Some(())
    }
}

/// What to replay.
#[derive(Debug)]
pub struct Replay {
    pub room: Arc<str>,
    pub gen: u64,
    pub since: u64,
    pub until: u64,
}

impl Replay {
    /// Replays, then releases the room's held live frames.
    pub async fn run(self, state: Arc<AppState>, link: Arc<SessionLink>) {
        let pace = Pace::new(state.cfg.replay_min_bytes_per_sec);
        let sent = self.replay(&state, &link, &pace).await;
        if sent.is_none() {
            let reason = match pace.too_slow.load(Ordering::Relaxed) {
                true => "resume read too slowly: reconnect and resume",
                false => "resume failed: reconnect and resume",
            };
            link.close(1013, reason);
            return;
        }
        let done = Out::ReplayDone {
            room: self.room.clone(),
            gen: self.gen,
        };
        release(&link, done).await;
    }

    /// Returns the last seq replayed, `None` if the session went away or a source failed.
    async fn replay(&self, state: &AppState, link: &SessionLink, pace: &Pace) -> Option<u64> {
        let mut cursor = self.since;
        for _ in 0..STORE_ROUNDS {
            if cursor >= self.until {
                return Some(cursor);
            }
            match self.round(state, link, pace, cursor).await? {
                Read::To(to) => return Some(to),
                Read::Unsure(at) => cursor = at,
            }
        }
        tracing::warn!(room = %self.room, cursor, "the stream kept letting go of where the resume read from");
        None
    }

    /// Replays from the store, then what it lacks yet from JetStream; `Unsure` when the
    /// stream let go of the cursor meanwhile and the store has to be asked again.
    async fn round(
        &self,
        state: &AppState,
        link: &SessionLink,
        pace: &Pace,
        mut cursor: u64,
    ) -> Option<Read> {
        // 1. The store: everything it has persisted above `since`.
        loop {
            if self.evicted(state, link) {
                return Some(Read::To(cursor));
            }
            let req = HistoryRequest {
                room: self.room.to_string(),
                before: None,
                after: Some(cursor),
                limit: PAGE,
            };
            let page = match state.services.ask::<History>(&self.room, &req).await {
                Ok(page) => page,
                Err(e) => {
                    // The stream lets a room's messages go oldest first (what its store
                    // writer stored, what aged out): holding the room's message at the
                    // cursor, it holds every later one. Otherwise what lies between is
                    // neither here nor known to be gone: the client resumes later (1013).
                    if !self.stream_holds(state, cursor).await {
                        tracing::warn!(room = %self.room, cursor, error = %crate::error::Chain(&e), "store unavailable for resume, and the stream no longer holds where it starts");
                        return None;
                    }
                    tracing::debug!(room = %self.room, error = %crate::error::Chain(&e), "store unavailable for resume; using JetStream");
                    break;
                }
            };
            let more = page.more;
            let n = page.messages.len();
            for m in page.messages {
                if m.seq > self.until {
                    return Some(Read::To(cursor));
                }
                if m.prev > cursor {
                    // The store no longer has (cursor, m.prev]: JetStream may still (when
                    // it too let go of the cursor, what it has cannot be told to follow
                    // it, and the gap says so).
                    cursor = match self
                        .fill_from_stream(state, link, pace, cursor, m.seq, Reading::InStoreGap)
                        .await?
                    {
                        Read::To(to) | Read::Unsure(to) => to,
                    };
                    if m.prev > cursor {
                        let gap = ServerFrame::Gap {
                            room: (&*self.room).into(),
                            from: cursor + 1,
                            to: m.prev,
                        };
                        // Queued as part of this join (dropped once it is over, as after
                        // an eviction), at the gap's end.
                        self.push(link, pace, self.out(m.prev, gap.encode().into()))
                            .await?;
                    }
                }
                let seq = m.seq;
                self.push(link, pace, self.frame(&m)?).await?;
                cursor = seq;
            }
            if !more || n == 0 || cursor >= self.until {
                break;
            }
        }
        // 2. JetStream: what the store has not persisted yet.
        if cursor >= self.until {
            return Some(Read::To(cursor));
        }
        self.fill_from_stream(
            state,
            link,
            pace,
            cursor,
            self.until + 1,
            Reading::PastStore,
        )
        .await
    }

    /// Whether the stream still holds the room's message at `seq` (never for 0: whether it
    /// holds the room's first message cannot be told from the stream).
    async fn stream_holds(&self, state: &AppState, seq: u64) -> bool {
        let subject = in_subject(state.mesh.partitions, &self.room);
        state.reader.holds(&subject, seq).await
    }

    /// Whether the store has no message after `seq` (`false` when it cannot say).
    async fn store_has_none_after(&self, state: &AppState, seq: u64) -> bool {
        let req = HistoryRequest {
            room: self.room.to_string(),
            before: None,
            after: Some(seq),
            limit: 1,
        };
        match state.services.ask::<History>(&self.room, &req).await {
            Ok(page) => page.messages.is_empty(),
            Err(_) => false,
        }
    }

    /// Whether what a read of the stream from `cursor + 1` answered follows `cursor`: the
    /// stream let a room's messages go oldest first and only once they are stored (or aged
    /// out), so if it still holds the message at the cursor, or the store has nothing after
    /// the cursor, nothing between them was let go before the read.
    async fn follows(&self, state: &AppState, cursor: u64, from: Reading) -> bool {
        match from {
            // The store's retention gap starts at the room's beginning: what the stream
            // holds of it is the room's oldest messages, as far as can be told.
            Reading::InStoreGap if cursor == 0 => true,
            Reading::InStoreGap => self.stream_holds(state, cursor).await,
            Reading::PastStore => {
                self.stream_holds(state, cursor).await
                    || self.store_has_none_after(state, cursor).await
            }
        }
    }

    /// Replays the room's retained messages with seq in (cursor, below) from JetStream;
    /// where it stopped.
    async fn fill_from_stream(
        &self,
        state: &AppState,
        link: &SessionLink,
        pace: &Pace,
        mut cursor: u64,
        below: u64,
        from: Reading,
    ) -> Option<Read> {
        let subject = in_subject(state.mesh.partitions, &self.room);
        while cursor + 1 < below {
            if self.evicted(state, link) {
                return Some(Read::To(cursor));
            }
            let batch = match state.reader.batch(&subject, cursor + 1, JS_BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(room = %self.room, error = %crate::error::Chain(&e), "resume from JetStream failed");
                    return None;
                }
            };
            if batch.is_empty() {
                break;
            }
            // Checked after the read: a trim after it cannot have taken what it answered.
            if !self.follows(state, cursor, from).await {
                metrics::counter!("chatmesh_replay_stream_let_go_total").increment(1);
                return Some(Read::Unsure(cursor));
            }
            for r in batch {
                if r.seq >= below {
                    return Some(Read::To(cursor));
                }
                let frame = encode_message_frame(&self.room, r.seq, cursor, &r.payload)?;
                metrics::counter!("chatmesh_replay_messages_total").increment(1);
                self.push(link, pace, self.out(r.seq, frame)).await?;
                cursor = r.seq;
            }
        }
        Some(Read::To(cursor))
    }

    /// Whether the session is no longer in the room (removed or banned): what is left of the
    /// backlog is no longer its to read, and the replay's slot goes back at once.
    fn evicted(&self, state: &AppState, link: &SessionLink) -> bool {
        !state.fanout.holds(&self.room, link.id)
    }

    fn out(&self, seq: u64, frame: Bytes) -> Out {
        Out::Replay {
            room: self.room.clone(),
            gen: self.gen,
            seq,
            frame,
        }
    }

    fn frame(&self, m: &Message) -> Option<Out> {
        // Everything the stored message says (an edited or deleted one's markers too), but
        // room, seq and prev, which the frame's prefix carries.
        let mut value = serde_json::to_value(m).ok()?;
        let fields = value.as_object_mut()?;
        for key in ["room", "seq", "prev"] {
            fields.remove(key);
        }
        let payload = serde_json::to_vec(&value).ok()?;
        let frame = encode_message_frame(&self.room, m.seq, m.prev, &payload)?;
        metrics::counter!("chatmesh_replay_messages_total").increment(1);
        Some(self.out(m.seq, frame))
    }

    async fn push(&self, link: &SessionLink, pace: &Pace, out: Out) -> Option<()> {
        let bytes = out.size() as u64;
        let started = Instant::now();
        match tokio::time::timeout(STALL, link.send_bulk(out)).await {
            Ok(true) => pace.took(started.elapsed(), bytes),
            _ => None,
        }
    }
}

/// Queues `done`, which releases the room's live frames held during the replay; a session
/// that does not take it within [`STALL`] is closed (1013), as for a replay that failed:
/// otherwise the room's live frames stayed held until a thousand of them closed the session,
/// hours in a quiet room, while the user counted as present (no push either).
async fn release(link: &SessionLink, done: Out) {
    if !matches!(tokio::time::timeout(STALL, link.send(done)).await, Ok(true)) {
        metrics::counter!("chatmesh_replays_unreleased_total").increment(1);
        link.close(1013, "resume failed: reconnect and resume");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session whose queue stays full when its replay ends is closed 1013 rather than
    /// left with the room's live frames held (before: the `ReplayDone` was dropped and the
    /// session went on).
    #[tokio::test(start_paused = true)]
    async fn a_replay_whose_end_cannot_be_queued_closes_the_session() {
        let link = SessionLink::new(1, 1, tokio_util::sync::CancellationToken::new());
        assert!(link.offer(Out::Frame(bytes::Bytes::from_static(b"x"))));
        let done = Out::ReplayDone {
            room: Arc::from("r"),
            gen: 1,
        };
        release(&link, done).await;
        assert_eq!(link.close_reason().map(|r| r.0), Some(1013));

        let room = SessionLink::new(2, 4, tokio_util::sync::CancellationToken::new());
        let done = Out::ReplayDone {
            room: Arc::from("r"),
            gen: 1,
        };
        release(&room, done).await;
        assert_eq!(room.close_reason(), None, "queued: the session goes on");
    }

    /// The client must take its bytes a second over each window of waiting; quick queueing
    /// counts little toward a window, and a window met starts a new one.
    #[test]
    fn a_client_slower_than_the_pace_is_too_slow() {
        let pace = Pace::new(1000);
        let second = Duration::from_secs(1);
        for _ in 0..9 {
            assert_eq!(pace.took(second, 1000), Some(()));
        }
        assert_eq!(
            pace.took(second, 1000),
            Some(()),
            "10,000 bytes in 10 s: met"
        );
        for _ in 0..1000 {
            assert_eq!(pace.took(Duration::from_micros(5), 100_000), Some(()));
        }
        let pace = Pace::new(1000);
        for _ in 0..9 {
            assert_eq!(pace.took(second, 1000), Some(()));
        }
        assert_eq!(pace.took(second, 999), None, "9,999 bytes in 10 s");
        assert!(pace.too_slow.load(Ordering::Relaxed));
    }
}
