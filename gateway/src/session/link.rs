//! The handle other tasks hold to a session: its bounded outbound queue and a way to close
//! it. The fan-out never waits on a session: it offers a frame, and a full queue closes the
//! session as a slow consumer (1013) instead of stalling the room.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

/// What the writer task of a session is asked to do, in order.
#[derive(Debug)]
pub enum Out {
    /// A reply or event frame, written as it is.
    Frame(Bytes),
    /// Start tracking a room joined with generation `gen`; with `replay`, hold live frames
    /// until [`Out::ReplayDone`].
    Track {
        room: Arc<str>,
        gen: u64,
        last: u64,
        replay: bool,
    },
    /// Stop tracking a room (left or evicted).
    Untrack { room: Arc<str>, gen: u64 },
    /// A live message of a room.
    Live {
        room: Arc<str>,
        gen: u64,
        seq: u64,
        frame: Bytes,
    },
    /// A replayed message of a room (join with `since`).
    Replay {
        room: Arc<str>,
        gen: u64,
        seq: u64,
        frame: Bytes,
    },
    /// The replay of a room is complete: release held live frames.
    ReplayDone { room: Arc<str>, gen: u64 },
    /// Answer a ping frame.
    Pong(Bytes),
}

/// A cloneable handle to one session.
#[derive(Debug)]
pub struct SessionLink {
    pub id: u64,
    pub user: OnceLock<Arc<str>>,
    tx: mpsc::Sender<Out>,
    kill: CancellationToken,
    close: OnceLock<(u16, &'static str)>,
    /// Token expiry, seconds since the Unix epoch (0: not authenticated yet).
    expires_at: AtomicU64,
    expiry_changed: Notify,
}

impl SessionLink {
    pub fn new(id: u64, tx: mpsc::Sender<Out>, kill: CancellationToken) -> Self {
        Self {
            id,
            user: OnceLock::new(),
            tx,
            kill,
            close: OnceLock::new(),
            expires_at: AtomicU64::new(0),
            expiry_changed: Notify::new(),
        }
    }

    /// Sets when the session's token expires (a new `hello` extends it).
    pub fn set_expiry(&self, expires_at: u64) {
        self.expires_at.store(expires_at, Ordering::Release);
        self.expiry_changed.notify_one();
    }

    /// When the token expires (0: not authenticated yet).
    pub fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::Acquire)
    }

    /// Resolves when [`SessionLink::set_expiry`] is called.
    pub async fn expiry_changed(&self) {
        self.expiry_changed.notified().await
    }

    /// Queues `out` without waiting. A full queue closes the session with 1013.
    pub fn offer(&self, out: Out) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("chatmesh_slow_consumer_closes_total").increment(1);
                self.close(1013, "slow consumer: reconnect and resume");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues `out`, waiting for room in the queue (replies to the session's own requests,
    /// so a client that stops reading stops being read).
    pub async fn send(&self, out: Out) -> bool {
        tokio::select! {
            r = self.tx.send(out) => r.is_ok(),
            _ = self.kill.cancelled() => false,
        }
    }

    /// Closes the session with `code` (the first reason given wins).
    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.close.set((code, reason));
        self.kill.cancel();
    }

    /// The close code and reason asked for, if any.
    pub fn close_reason(&self) -> Option<(u16, &'static str)> {
        self.close.get().copied()
    }

    pub fn killed(&self) -> &CancellationToken {
        &self.kill
    }
}
