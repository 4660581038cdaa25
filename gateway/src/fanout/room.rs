//! One room on one gateway: its live subscription task and its local members.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use chatmesh_protocol::message::encode_message_frame;
use chatmesh_protocol::subjects::{in_subject, live_subject};
use chatmesh_protocol::ApiError;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::jsread::JsReader;
use crate::session::link::{Out, SessionLink};

/// Messages read from JetStream per request while filling a gap.
const FILL_BATCH: usize = 256;

#[derive(Debug)]
struct Member {
    link: Arc<SessionLink>,
    gen: u64,
}

#[derive(Debug, Default)]
struct State {
    members: Vec<Member>,
    closed: bool,
}

type Readiness = Option<Result<(), ApiError>>;

/// A room with local members.
#[derive(Debug)]
pub struct Room {
    pub name: Arc<str>,
    state: RwLock<State>,
    /// Last seq dispatched; written only by the room task, under the state's read lock.
    last: AtomicU64,
    ready: watch::Receiver<Readiness>,
    stop: CancellationToken,
}

impl Room {
    pub(super) fn start(
        name: Arc<str>,
        nats: async_nats::Client,
        reader: JsReader,
        partitions: u32,
    ) -> Arc<Self> {
        let (ready_tx, ready) = watch::channel(None);
        let room = Arc::new(Self {
            name,
            state: RwLock::new(State::default()),
            last: AtomicU64::new(0),
            ready,
            stop: CancellationToken::new(),
        });
        let task = room.clone();
        tokio::spawn(async move {
            task.run(nats, reader, partitions, ready_tx).await;
        });
        room
    }

    /// Waits until the subscription is live and the starting seq is known.
    pub async fn ready(&self) -> Result<(), ApiError> {
        let mut rx = self.ready.clone();
        let outcome = match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone().unwrap_or_else(|| Err(ApiError::internal())),
            Err(_) => Err(ApiError::unavailable("room subscription ended")),
        };
        outcome
    }

    pub fn is_closed(&self) -> bool {
        self.read().closed
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a member; `None` if the room closed meanwhile (the caller starts a new one).
    pub(super) fn add(
        &self,
        link: &Arc<SessionLink>,
        gen: u64,
        floor: u64,
        since: Option<u64>,
        joined: &(dyn Fn(u64) -> Bytes + Sync),
    ) -> Option<u64> {
        let mut state = self.write();
        if state.closed {
            return None;
        }
        let last = self.last.load(Ordering::Acquire).max(floor);
        state.members.retain(|m| m.link.id != link.id);
        link.offer(Out::Track {
            room: self.name.clone(),
            gen,
            last: since.unwrap_or(last),
            replay: since.is_some(),
        });
        link.offer(Out::Frame(joined(last)));
        state.members.push(Member {
            link: link.clone(),
            gen,
        });
        Some(last)
    }

    pub(super) fn remove(&self, session: u64) {
        self.write().members.retain(|m| m.link.id != session);
    }

    pub(super) fn remove_user(&self, user: &str) -> Vec<(Arc<SessionLink>, u64)> {
        let mut state = self.write();
        let mut out = Vec::new();
        state.members.retain(|m| {
            let hit = m.link.user.get().is_some_and(|u| &**u == user);
            if hit {
                out.push((m.link.clone(), m.gen));
            }
            !hit
        });
        out
    }

    /// Marks the room closed if it has no members; true if it is closed now.
    pub(super) fn close_if_empty(&self) -> bool {
        let mut state = self.write();
        if state.members.is_empty() && !state.closed {
            state.closed = true;
            self.stop.cancel();
        }
        state.closed
    }

    pub(super) fn stop(&self) {
        self.write().closed = true;
        self.stop.cancel();
    }

    async fn run(
        self: Arc<Self>,
        nats: async_nats::Client,
        reader: JsReader,
        partitions: u32,
        ready: watch::Sender<Readiness>,
    ) {
        let stored = in_subject(partitions, &self.name);
        let mut sub = match self.subscribe(&nats, &reader, partitions, &stored).await {
            Ok(sub) => sub,
            Err(e) => {
                self.write().closed = true;
                let _ = ready.send(Some(Err(e)));
                return;
            }
        };
        let _ = ready.send(Some(Ok(())));
        loop {
            let msg = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                msg = sub.next() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
            };
            self.on_message(&reader, &stored, msg).await;
        }
        let _ = sub.unsubscribe().await;
        self.write().closed = true;
    }

    async fn subscribe(
        &self,
        nats: &async_nats::Client,
        reader: &JsReader,
        partitions: u32,
        stored: &str,
    ) -> Result<async_nats::Subscriber, ApiError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!(room = %self.name, error = %e, "{what}");
            ApiError::unavailable("live delivery is unavailable, try again")
        };
        let sub = nats
            .subscribe(live_subject(partitions, &self.name))
            .await
            .map_err(|e| unavailable("room subscribe failed", &e))?;
        // The server must know the subscription before we read the starting seq, or a
        // message stored in between would be neither live nor "before the join".
        nats.flush()
            .await
            .map_err(|e| unavailable("flush failed", &e))?;
        let last = reader
            .last_seq(stored)
            .await
            .map_err(|e| unavailable("reading the room's last seq failed", &e))?;
        self.last.store(last, Ordering::Release);
        Ok(sub)
    }

    async fn on_message(&self, reader: &JsReader, stored: &str, msg: async_nats::Message) {
        let header =
            |name: &str| -> Option<u64> { msg.headers.as_ref()?.get(name)?.as_str().parse().ok() };
        let (Some(seq), Some(prev)) = (header("Nats-Sequence"), header("Nats-Last-Sequence"))
        else {
            tracing::warn!(room = %self.name, "live message without sequence headers");
            return;
        };
        let last = self.last.load(Ordering::Acquire);
        if seq <= last {
            return;
        }
        if prev > last {
            self.fill_gap(reader, stored, last, seq).await;
        }
        self.dispatch(seq, prev, &msg.payload);
    }

    /// Delivers the messages in (last, until) from JetStream: what core NATS dropped.
    async fn fill_gap(&self, reader: &JsReader, stored: &str, mut last: u64, until: u64) {
        metrics::counter!("chatmesh_live_gaps_total").increment(1);
        loop {
            let batch = match reader.batch(stored, last + 1, FILL_BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(room = %self.name, error = %e, "gap fill failed; clients will see the gap in prev");
                    return;
                }
            };
            let full = batch.len() == FILL_BATCH;
            for r in batch {
                if r.seq >= until {
                    return;
                }
                self.dispatch(r.seq, last, &r.payload);
                last = r.seq;
            }
            if !full {
                return;
            }
        }
    }

    fn dispatch(&self, seq: u64, prev: u64, payload: &[u8]) {
        let state = self.read();
        let Some(frame) = encode_message_frame(&self.name, seq, prev, payload) else {
            tracing::warn!(room = %self.name, seq, "stored payload is not a JSON object; skipped");
            self.last.store(seq, Ordering::Release);
            return;
        };
        for m in &state.members {
            m.link.offer(Out::Live {
                room: self.name.clone(),
                gen: m.gen,
                seq,
                frame: frame.clone(),
            });
        }
        self.last.store(seq, Ordering::Release);
        metrics::counter!("chatmesh_deliveries_total").increment(state.members.len() as u64);
        metrics::counter!("chatmesh_messages_out_total").increment(1);
    }
}
