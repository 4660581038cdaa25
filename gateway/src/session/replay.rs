//! The backlog of a `join` with `since`: every message with seq in (since, last_seq], in
//! order, read from the worker's store (which knows each message's `prev`, so it can tell a
//! retention gap) and, above what the store has yet, from JetStream. Frames are queued as
//! bulk ([`SessionLink::send_bulk`]): a backlog never fills the queue replies need. How many
//! replays run, and which stop early, is `replays.rs`'s business.

use std::sync::Arc;
use std::time::Duration;

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
        let sent = self.replay(&state, &link).await;
        if sent.is_none() {
            link.close(1013, "resume failed: reconnect and resume");
            return;
        }
        let done = Out::ReplayDone {
            room: self.room.clone(),
            gen: self.gen,
        };
        let _ = tokio::time::timeout(STALL, link.send(done)).await;
    }

    /// Returns the last seq replayed, `None` if the session went away or a source failed.
    async fn replay(&self, state: &AppState, link: &SessionLink) -> Option<u64> {
        let mut cursor = self.since;
        if cursor >= self.until {
            return Some(cursor);
        }
        // 1. The store: everything it has persisted above `since`.
        loop {
            let req = HistoryRequest {
                room: self.room.to_string(),
                before: None,
                after: Some(cursor),
                limit: PAGE,
            };
            let page = match state.services.ask::<History>(&self.room, &req).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::debug!(room = %self.room, error = %crate::error::Chain(&e), "store unavailable for resume; using JetStream");
                    break;
                }
            };
            let more = page.more;
            let n = page.messages.len();
            for m in page.messages {
                if m.seq > self.until {
                    return Some(cursor);
                }
                if m.prev > cursor {
                    // The store no longer has (cursor, m.prev]: JetStream may still.
                    cursor = self.fill_from_stream(state, link, cursor, m.seq).await?;
                    if m.prev > cursor {
                        let gap = ServerFrame::Gap {
                            room: (&*self.room).into(),
                            from: cursor + 1,
                            to: m.prev,
                        };
                        self.push(link, Out::Frame(gap.encode().into())).await?;
                    }
                }
                let seq = m.seq;
                self.push(link, self.frame(&m)?).await?;
                cursor = seq;
            }
            if !more || n == 0 || cursor >= self.until {
                break;
            }
        }
        // 2. JetStream: what the store has not persisted yet.
        if cursor < self.until {
            cursor = self
                .fill_from_stream(state, link, cursor, self.until + 1)
                .await?;
        }
        Some(cursor)
    }

    /// Replays the room's retained messages with seq in (cursor, below) from JetStream;
    /// returns the new cursor.
    async fn fill_from_stream(
        &self,
        state: &AppState,
        link: &SessionLink,
        mut cursor: u64,
        below: u64,
    ) -> Option<u64> {
        let subject = in_subject(state.mesh.partitions, &self.room);
        while cursor + 1 < below {
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
            for r in batch {
                if r.seq >= below {
                    return Some(cursor);
                }
                let frame = encode_message_frame(&self.room, r.seq, cursor, &r.payload)?;
                self.push(link, self.out(r.seq, frame)).await?;
                cursor = r.seq;
            }
        }
        Some(cursor)
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
        Some(self.out(m.seq, frame))
    }

    async fn push(&self, link: &SessionLink, out: Out) -> Option<()> {
        if matches!(out, Out::Replay { .. }) {
            metrics::counter!("chatmesh_replay_messages_total").increment(1);
        }
        match tokio::time::timeout(STALL, link.send_bulk(out)).await {
            Ok(true) => Some(()),
            _ => None,
        }
    }
}
