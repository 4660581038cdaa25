//! The handle other tasks hold to a session: its bounded outbound queue and a way to close
//! it. The fan-out never waits on a session: it offers a frame, and a full queue closes the
//! session as a slow consumer (1013) instead of stalling the room.
//!
//! The queue is a `VecDeque` that is freed whenever the writer empties it, so an idle
//! session holds no queue memory (a tokio mpsc channel keeps a 32-slot block, ~2.3 KiB,
//! per session from its creation on).
//!
//! Frames are counted, and the session's own replies and replays by their bytes too: a
//! reply waits while [`REPLY_BYTES`] are queued (a backlog at half of it), so a client that
//! asks for big history pages and reads slowly holds a few MiB of the gateway, not its
//! whole queue of half-MiB pages. The sessions of one client address also share a bound
//! on their queued replies ([`crate::reply_share`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::reply_share::Held;

/// Bytes queued beyond which a session's replies wait (its replays at half of it): eight
/// history pages at their 512 KiB cap.
pub const REPLY_BYTES: usize = 4 << 20;

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
    /// The replay of a room (or, for a join without `since`, the access re-check after it)
    /// is complete: release held live frames.
    ReplayDone { room: Arc<str>, gen: u64 },
    /// Answer a ping frame (never queued: see [`SessionLink::pong`]).
    Pong(Bytes),
}

/// A cloneable handle to one session.
#[derive(Debug)]
pub struct SessionLink {
    pub id: u64,
    pub user: OnceLock<Arc<str>>,
    queue: Mutex<Queue>,
    capacity: usize,
    /// A frame was queued (wakes the writer).
    queued: Notify,
    /// A full queue has room again (wakes waiting senders).
    room: Notify,
    kill: CancellationToken,
    close: OnceLock<(u16, &'static str)>,
    /// Everything to say before the close frame is queued (see [`SessionLink::settle`]).
    settled: AtomicBool,
    /// Token expiry, seconds since the Unix epoch (0: not authenticated yet).
    expires_at: AtomicU64,
    /// The reply bytes shared with the client address's other sessions (`None`: a trusted
    /// proxy that named no client, or a test).
    address: Option<Held>,
}

impl Out {
    /// The bytes this item holds.
    pub(crate) fn size(&self) -> usize {
        match self {
            Out::Frame(b) | Out::Pong(b) => b.len(),
            Out::Live { frame, .. } | Out::Replay { frame, .. } => frame.len(),
            Out::Track { .. } | Out::Untrack { .. } | Out::ReplayDone { .. } => 0,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    /// Each frame, and whether its bytes count towards the address's share (replies do,
    /// live frames do not).
    items: VecDeque<(Out, bool)>,
    /// The bytes of `items`.
    bytes: usize,
    /// The bytes counted towards the address's share: of `items`, and of what the writer took
    /// and has not written yet (`writing`).
    charged: usize,
    /// The charged bytes the writer took and has not written yet: a writer blocked on a
    /// socket holds a batch (up to a few hundred KiB), which stays the address's until it
    /// is written ([`SessionLink::written`]).
    writing: usize,
    /// The payload of the latest ping not answered yet: one slot, outside the queue's
    /// capacity, so a burst of pings is answered by one pong instead of filling the queue.
    pong: Option<Bytes>,
    /// The writer is gone: nothing is queued any more.
    closed: bool,
}

/// Why a frame was not queued.
enum Refused {
    Full,
    Closed,
}

impl SessionLink {
    /// A session whose queue holds at most `capacity` frames.
    pub fn new(id: u64, capacity: usize, kill: CancellationToken) -> Self {
        Self {
            id,
            user: OnceLock::new(),
            queue: Mutex::new(Queue::default()),
            capacity: capacity.max(1),
            queued: Notify::new(),
            room: Notify::new(),
            kill,
            close: OnceLock::new(),
            settled: AtomicBool::new(false),
            expires_at: AtomicU64::new(0),
            address: None,
        }
    }

    /// This session's replies also count towards its client address's share.
    pub fn with_address(mut self, held: Option<Held>) -> Self {
        self.address = held;
        self
    }

    /// The session's address was closed for holding the most unread replies
    /// ([`Held::evicted`]).
    pub fn address_evicted(&self) -> bool {
        self.address.as_ref().is_some_and(Held::evicted)
    }

    /// Sets when the session's token expires (a new `hello` extends it).
    pub fn set_expiry(&self, expires_at: u64) {
        self.expires_at.store(expires_at, Ordering::Release);
        // The writer watches the expiry; it re-reads it whenever it wakes.
        self.queued.notify_one();
    }

    /// When the token expires (0: not authenticated yet).
    pub fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many frames the queue may hold before bulk senders wait ([`SessionLink::send_bulk`]).
    fn bulk_limit(&self) -> usize {
        (self.capacity / 2).max(1)
    }

    /// Queues `out` unless the queue holds `limit` frames or more, or (with `bytes`) unless
    /// `out` would take it past that many bytes (an empty queue takes any one frame), or
    /// (`shared`: a reply) unless the address's share has no room for it.
    fn try_push(
        &self,
        out: Out,
        limit: usize,
        bytes: Option<usize>,
        shared: bool,
    ) -> Result<(), (Refused, Out)> {
        let mut q = self.lock();
        if q.closed {
            return Err((Refused::Closed, out));
        }
        let size = out.size();
        let too_big = bytes.is_some_and(|max| q.bytes > 0 && q.bytes + size > max);
        if q.items.len() >= limit || too_big {
            return Err((Refused::Full, out));
        }
        // Frames of no bytes (a replay's bookkeeping) take nothing of the share.
        let share = self.address.as_ref().filter(|_| shared && size > 0);
        if share.is_some_and(|a| !a.try_charge(size)) {
            return Err((Refused::Full, out));
        }
        q.bytes += size;
        if share.is_some() {
            q.charged += size;
        }
        q.items.push_back((out, share.is_some()));
        drop(q);
        self.queued.notify_one();
        if let Some(a) = share {
            a.rebalance();
        }
        Ok(())
    }

    /// Queues `out` without waiting. A full queue closes the session with 1013.
    pub fn offer(&self, out: Out) -> bool {
        match self.try_push(out, self.capacity, None, false) {
            Ok(()) => true,
            Err((Refused::Full, _)) => {
                metrics::counter!("chatmesh_slow_consumer_closes_total").increment(1);
                self.close(1013, "slow consumer: reconnect and resume");
                false
            }
            Err((Refused::Closed, _)) => false,
        }
    }

    /// Queues `out` when there is room (else it is dropped: the close says why) and closes
    /// the session with `code`. [`offer`](Self::offer) then `close` turned a full queue's
    /// close into 1013, "reconnect and resume", for a session that must not come back as it
    /// was (a revoked token's 4001).
    pub fn close_with(&self, out: Out, code: u16, reason: &'static str) {
        let _ = self.try_push(out, self.capacity, None, false);
        self.close(code, reason);
    }

    /// Queues `out`, waiting for room in the queue (replies to the session's own requests,
    /// so a client that stops reading stops being read). A closing session still takes
    /// frames until its writer is gone: the acks of sends in flight go out before the close.
    pub async fn send(&self, out: Out) -> bool {
        self.send_within(out, self.capacity, REPLY_BYTES, true)
            .await
    }

    /// Like [`SessionLink::send`] for bulk frames (a replayed backlog): waits while the
    /// queue is half full, so a backlog never takes the room that replies and live frames
    /// need (a live frame finding the queue full closes the session as a slow consumer).
    pub async fn send_bulk(&self, out: Out) -> bool {
        self.send_within(out, self.bulk_limit(), REPLY_BYTES / 2, false)
            .await
    }

    async fn send_within(&self, mut out: Out, limit: usize, bytes: usize, shared: bool) -> bool {
        // The kill wakes a frame waiting here when its address is closed for holding too
        // much (any other kill leaves it waiting as before: it is watched until it fires).
        let mut watch_kill = self.address.is_some();
        loop {
            let room = self.room.notified();
            let freed = self.address.as_ref().filter(|_| shared).map(Held::freed);
            tokio::pin!(room, freed);
            // Registered before the checks, so room made after them is not missed.
            room.as_mut().enable();
            if let Some(freed) = freed.as_mut().as_pin_mut() {
                freed.enable();
            }
            // A session whose address was closed waits for nothing: it is closing, and what
            // it queued is dropped.
            if self.address_evicted() {
                return false;
            }
            match self.try_push(out, limit, Some(bytes), shared) {
                Ok(()) => return true,
                Err((Refused::Closed, _)) => return false,
                Err((Refused::Full, back)) => out = back,
            }
            let freed = async {
                match freed.as_pin_mut() {
                    Some(freed) => freed.await,
                    None => std::future::pending().await,
                }
            };
            let killed = async {
                if watch_kill {
                    self.kill.cancelled().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = room => {}
                () = freed => {}
                () = killed => watch_kill = false,
            }
        }
    }

    /// Answers a ping: replaces the payload of any pong not written yet (RFC 6455 5.5.3
    /// allows answering only the most recent ping), so pings never fill the queue.
    pub fn pong(&self, payload: Bytes) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        q.pong = Some(payload);
        drop(q);
        self.queued.notify_one();
    }

    /// Takes the pending pong, else the oldest queued frame, if any (the writer's side).
    pub fn try_recv(&self) -> Option<Out> {
        let mut q = self.lock();
        if let Some(payload) = q.pong.take() {
            return Some(Out::Pong(payload));
        }
        let (before, before_bytes) = (q.items.len(), q.bytes);
        let (out, charged) = match q.items.pop_front() {
            Some((o, charged)) => (Some(o), charged),
            None => (None, false),
        };
        let size = out.as_ref().map_or(0, Out::size);
        q.bytes -= size;
        if charged {
            q.writing += size;
        }
        if q.items.is_empty() && q.items.capacity() > 0 {
            q.items = VecDeque::new();
        }
        drop(q);
        // Wake senders waiting for room: at the capacity, at the bulk limit, or while the
        // queued bytes may hold back a reply or a replay.
        if before >= self.capacity || before == self.bulk_limit() || before_bytes > REPLY_BYTES / 4
        {
            self.room.notify_waiters();
        }
        out
    }

    /// The writer wrote everything it took: its replies' bytes leave the address's share
    /// (the address reads: progress).
    pub fn written(&self) {
        let written = {
            let mut q = self.lock();
            let written = std::mem::take(&mut q.writing);
            q.charged -= written;
            written
        };
        if let Some(a) = &self.address {
            a.discharge(written, true);
        }
    }

    /// Waits for the next queued frame. Cancel-safe: a frame is taken only when returned.
    pub async fn recv(&self) -> Out {
        loop {
            if let Some(out) = self.try_recv() {
                return out;
            }
            self.queued.notified().await;
        }
    }

    /// Resolves when a frame was queued, the session was closed or its expiry set since the
    /// last call (a wake-up that came before the call is kept, so none is lost between a
    /// `try_recv` that found nothing and this wait).
    pub async fn wake(&self) {
        self.queued.notified().await
    }

    /// The writer is gone: drops what is queued and refuses what comes.
    pub fn close_queue(&self) {
        let (items, charged) = {
            let mut q = self.lock();
            q.closed = true;
            q.pong = None;
            q.bytes = 0;
            q.writing = 0;
            (std::mem::take(&mut q.items), std::mem::take(&mut q.charged))
        };
        drop(items);
        if let Some(a) = &self.address {
            a.discharge(charged, false);
        }
        self.room.notify_waiters();
    }

    /// Closes the session with `code` (the first reason given wins).
    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.close.set((code, reason));
        self.kill.cancel();
        // The writer waits only on the queue's wake-up.
        self.queued.notify_one();
    }

    /// The close code and reason asked for, if any.
    pub fn close_reason(&self) -> Option<(u16, &'static str)> {
        self.close.get().copied()
    }

    /// Everything the session had to say before its close frame is queued (the acks of its
    /// sends in flight): the writer may write the close frame once the queue is empty.
    pub fn settle(&self) {
        self.settled.store(true, Ordering::Release);
        self.queued.notify_one();
    }

    /// Whether the writer should write the close frame now: the session is closing and
    /// settled — or is a slow consumer, which gets its close at once.
    pub fn close_due(&self) -> bool {
        match self.close.get() {
            None => false,
            Some((1013, _)) => true,
            Some(_) => self.settled.load(Ordering::Acquire),
        }
    }

    pub fn killed(&self) -> &CancellationToken {
        &self.kill
    }
}

impl Drop for SessionLink {
    fn drop(&mut self) {
        // What is still queued leaves the address's share with the session.
        if let Some(a) = &self.address {
            a.discharge(self.lock().charged, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Out {
        Out::Frame(Bytes::from(vec![n]))
    }

    fn byte(out: Option<Out>) -> Option<u8> {
        match out {
            Some(Out::Frame(b)) => Some(b[0]),
            _ => None,
        }
    }

    /// A session closed for a reason of its own keeps that reason when its queue is full:
    /// its last frame is dropped instead of the close turning into 1013.
    #[test]
    fn a_close_with_a_frame_keeps_its_code_when_the_queue_is_full() {
        let link = SessionLink::new(1, 2, CancellationToken::new());
        assert!(link.offer(frame(1)));
        assert!(link.offer(frame(2)));
        link.close_with(frame(3), 4001, "token revoked");
        assert_eq!(link.close_reason().map(|r| r.0), Some(4001));
        let room = SessionLink::new(2, 2, CancellationToken::new());
        room.close_with(frame(9), 4001, "token revoked");
        assert_eq!(byte(room.try_recv()), Some(9), "queued when there is room");
    }

    /// A full queue closes the session as a slow consumer; order is kept; an emptied queue
    /// keeps no memory.
    #[test]
    fn a_full_queue_closes_with_1013_and_an_empty_one_is_freed() {
        let link = SessionLink::new(1, 2, CancellationToken::new());
        assert!(link.offer(frame(1)));
        assert!(link.offer(frame(2)));
        assert!(!link.offer(frame(3)));
        assert_eq!(link.close_reason().map(|r| r.0), Some(1013));
        assert!(link.killed().is_cancelled());
        assert_eq!(byte(link.try_recv()), Some(1));
        assert_eq!(byte(link.try_recv()), Some(2));
        assert_eq!(byte(link.try_recv()), None);
        assert_eq!(link.lock().items.capacity(), 0);
    }

    /// `send` waits for room instead of closing, and resumes when the writer takes a frame.
    #[tokio::test]
    async fn send_waits_for_room() {
        let link = Arc::new(SessionLink::new(1, 1, CancellationToken::new()));
        assert!(link.send(frame(1)).await);
        let waiting = tokio::spawn({
            let link = link.clone();
            async move { link.send(frame(2)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(byte(link.try_recv()), Some(1));
        assert!(waiting.await.unwrap_or(false));
        assert_eq!(byte(Some(link.recv().await)), Some(2));
        assert!(link.close_reason().is_none());
    }

    /// Replies wait while the queue holds `REPLY_BYTES` (a slow reader of big history pages
    /// holds a few MiB, not a queue of them); live frames are not held back by bytes; an
    /// empty queue takes a reply of any size.
    #[tokio::test]
    async fn replies_wait_on_queued_bytes() {
        let page = || Out::Frame(Bytes::from(vec![7u8; 512 * 1024]));
        let link = Arc::new(SessionLink::new(1, 1024, CancellationToken::new()));
        for _ in 0..REPLY_BYTES / (512 * 1024) {
            assert!(link.send(page()).await);
        }
        let waiting = tokio::spawn({
            let link = link.clone();
            async move { link.send(page()).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a reply past the bytes waits");
        assert!(
            link.offer(frame(1)),
            "a live frame is not held back by bytes"
        );
        // One page out still leaves no room for a page beside the live frame; two do.
        assert!(link.try_recv().is_some());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(link.try_recv().is_some());
        assert!(waiting.await.unwrap_or(false));
        while link.try_recv().is_some() {}
        assert_eq!(link.lock().bytes, 0);
        let huge = Out::Frame(Bytes::from(vec![0u8; REPLY_BYTES * 2]));
        assert!(link.send(huge).await, "an empty queue takes any one reply");
    }

    /// A reply the writer took stays charged to its address until it is written: a writer
    /// blocked on a socket holds its batch, and the address's share counts it. Closing the
    /// queue gives back what the writer held as well.
    #[tokio::test]
    async fn a_reply_stays_charged_to_its_address_until_written() {
        let shares = crate::reply_share::ReplyShares::new(4 << 20, 64 << 20);
        let ip = "10.0.0.1".parse().unwrap();
        let held = shares.hold(ip, 1, CancellationToken::new());
        let link = SessionLink::new(1, 64, CancellationToken::new()).with_address(Some(held));
        let reply = |n: usize| Out::Frame(Bytes::from(vec![7u8; n]));
        assert!(link.send(reply(1024)).await);
        assert_eq!(shares.queued(), 1024);
        assert!(link.try_recv().is_some());
        assert_eq!(shares.queued(), 1024, "taken by the writer, not written");
        link.written();
        assert_eq!(shares.queued(), 0);
        assert!(link.send(reply(10)).await);
        assert!(link.send(reply(20)).await);
        assert!(link.try_recv().is_some());
        assert_eq!(shares.queued(), 30);
        link.close_queue();
        assert_eq!(shares.queued(), 0, "queued and held both given back");
    }

    /// Pings are answered by one pong slot outside the queue: the latest payload wins and
    /// goes out before queued frames; a burst never fills the queue.
    #[test]
    fn pongs_are_coalesced_outside_the_queue() {
        let link = SessionLink::new(1, 2, CancellationToken::new());
        assert!(link.offer(frame(1)));
        for i in 0..2000u32 {
            link.pong(Bytes::from(i.to_be_bytes().to_vec()));
        }
        assert!(link.close_reason().is_none());
        match link.try_recv() {
            Some(Out::Pong(p)) => assert_eq!(&p[..], &1999u32.to_be_bytes()),
            other => panic!("{other:?}"),
        }
        assert_eq!(byte(link.try_recv()), Some(1));
        assert!(link.try_recv().is_none());
    }

    /// A closing session still takes frames (the acks of its sends in flight) while its
    /// writer runs, and waits for room instead of dropping them.
    #[tokio::test]
    async fn a_closing_session_still_takes_frames() {
        let link = Arc::new(SessionLink::new(1, 1, CancellationToken::new()));
        assert!(link.offer(frame(1)));
        link.close(4008, "rate limit exceeded repeatedly");
        assert!(!link.close_due(), "not before it settled");
        let waiting = tokio::spawn({
            let link = link.clone();
            async move { link.send(frame(2)).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(byte(link.try_recv()), Some(1));
        assert!(waiting.await.unwrap_or(false));
        assert_eq!(byte(link.try_recv()), Some(2));
        link.settle();
        assert!(link.close_due());
    }

    /// Once the writer is gone nothing is queued, and waiting senders give up.
    #[tokio::test]
    async fn a_closed_queue_refuses() {
        let link = Arc::new(SessionLink::new(1, 1, CancellationToken::new()));
        assert!(link.offer(frame(1)));
        let waiting = tokio::spawn({
            let link = link.clone();
            async move { link.send(frame(2)).await }
        });
        tokio::task::yield_now().await;
        link.close_queue();
        assert!(!waiting.await.unwrap_or(true));
        assert!(!link.offer(frame(3)));
        assert!(link.try_recv().is_none());
        assert!(
            link.close_reason().is_none(),
            "a closed queue is not a slow consumer"
        );
    }

    /// Bulk sends stop at half the queue and resume once the writer takes it below that;
    /// other frames still find room.
    #[tokio::test]
    async fn bulk_sends_leave_half_the_queue_free() {
        let link = Arc::new(SessionLink::new(1, 4, CancellationToken::new()));
        assert!(link.send_bulk(frame(1)).await);
        assert!(link.send_bulk(frame(2)).await);
        let waiting = tokio::spawn({
            let link = link.clone();
            async move { link.send_bulk(frame(3)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert!(link.offer(frame(9)));
        assert_eq!(byte(link.try_recv()), Some(1));
        assert_eq!(byte(link.try_recv()), Some(2));
        assert!(waiting.await.unwrap_or(false));
        assert_eq!(byte(link.try_recv()), Some(9));
        assert_eq!(byte(link.try_recv()), Some(3));
    }
}
