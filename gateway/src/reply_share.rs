//! Reply bytes per client address, and in all. Each session's replies wait while 4 MiB of
//! them are queued ([`crate::link::REPLY_BYTES`]), but one address may hold hundreds of
//! sessions (`max_connections_per_ip`): the sessions of one address also share
//! `gateway.reply_bytes_per_address` of queued replies, so clients that ask for much and
//! read nothing hold a bounded part of the gateway per address, and their other sessions'
//! replies wait (their requests with them) until they read or are closed.
//!
//! Many addresses (IPv6 /64s are cheap) could still add up: when all of them together hold
//! more than `gateway.reply_bytes_total`, the sessions of the addresses that have gone the
//! longest without reading are closed (1013) until the rest fits. An address makes progress
//! whenever one of its replies leaves a queue for its socket (and when it starts holding
//! after holding nothing), so a busy address that reads (a NAT, a client paging history)
//! is never the one picked however much it holds; one that reads nothing, or a trickle
//! slower than a reply in a long while, is. Until what a closed address held has left (its
//! sessions drop their queues as they end) its new sessions are closed too, and for a
//! minute after, a new share of it starts with its old progress, so reconnecting does not
//! make it look new.
//!
//! Live frames and replays are not counted: live frames never wait, and replays have their
//! own bounds per address (`max_replays_per_ip`) and a pace they must keep, which a
//! neighbour that stops reading must not make them miss. Addresses with no session are not
//! kept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The gateway looks for addresses to close at most this often, milliseconds.
const SCAN_EVERY_MS: u64 = 20;

/// How long a closed address is remembered by its progress, milliseconds.
const REMEMBER_CLOSED_MS: u64 = 60_000;

/// Closed addresses remembered at most (more are forgotten).
const MAX_REMEMBERED: usize = 65_536;

/// Each address's share and the sessions that hold it (by session id, with the token that
/// ends each).
type Map = Arc<Mutex<HashMap<IpAddr, Entry>>>;

#[derive(Debug)]
struct Entry {
    share: Arc<Share>,
    sessions: HashMap<u64, CancellationToken>,
}

/// The shares of every address with a session.
#[derive(Debug)]
pub struct ReplyShares {
    map: Map,
    all: Arc<All>,
    max: usize,
}

/// What every address holds together.
#[derive(Debug)]
struct All {
    queued: AtomicUsize,
    max: usize,
    /// When the addresses were last looked at, milliseconds after `started`.
    scanned: AtomicU64,
    started: Instant,
    /// Addresses closed lately: when, and their progress then.
    closed: Mutex<HashMap<IpAddr, (u64, u64)>>,
}

/// One address's queued reply bytes.
#[derive(Debug)]
pub struct Share {
    queued: AtomicUsize,
    max: usize,
    /// When (milliseconds after `All::started`) one of its replies last left a queue for
    /// its socket, or it last started holding after holding nothing.
    progress: AtomicU64,
    /// Until then starting to hold is no progress (the address was closed lately).
    penalty_until: u64,
    /// Bytes were taken off a queue while the share was a quarter full or more.
    freed: Notify,
    /// Its sessions were closed because the gateway held too much.
    evicted: AtomicBool,
}

/// A session's hold on its address's share; the share is forgotten with its last session.
#[derive(Debug)]
pub struct Held {
    addr: IpAddr,
    session: u64,
    share: Arc<Share>,
    map: Map,
    all: Arc<All>,
}

impl ReplyShares {
    /// Shares of `max` bytes each, `total` for all of them.
    pub fn new(max: usize, total: usize) -> Self {
        Self {
            map: Arc::default(),
            all: Arc::new(All {
                queued: AtomicUsize::new(0),
                max: total,
                scanned: AtomicU64::new(0),
                started: Instant::now(),
                closed: Mutex::default(),
            }),
            max,
        }
    }

    /// The share of `addr`, held by one more session (`session`, ended by `kill` if its
    /// address is closed). While a closed address's share still holds bytes, its new
    /// sessions are closed at once.
    pub fn hold(&self, addr: IpAddr, session: u64, kill: CancellationToken) -> Held {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let drained = |e: &Entry| {
            e.share.evicted.load(Ordering::Acquire) && e.share.queued.load(Ordering::Acquire) == 0
        };
        if map.get(&addr).is_some_and(drained) {
            // Its old sessions still end with 1013; they hold nothing any more.
            map.remove(&addr);
        }
        let (progress, penalty_until) = self.all.progress_of(addr);
        let entry = map.entry(addr).or_insert_with(|| Entry {
            share: Arc::new(Share {
                queued: AtomicUsize::new(0),
                max: self.max,
                progress: AtomicU64::new(progress),
                penalty_until,
                freed: Notify::new(),
                evicted: AtomicBool::new(false),
            }),
            sessions: HashMap::new(),
        });
        if entry.share.evicted.load(Ordering::Acquire) {
            kill.cancel();
        }
        entry.sessions.insert(session, kill);
        Held {
            addr,
            session,
            share: entry.share.clone(),
            map: self.map.clone(),
            all: self.all.clone(),
        }
    }

    /// Addresses with a session (for tests and metrics).
    pub fn addresses(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Reply bytes queued over all addresses.
    pub fn queued(&self) -> usize {
        self.all.queued.load(Ordering::Acquire)
    }
}

impl All {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The progress a new share of `addr` starts with, and until when starting to hold is
    /// no progress for it: now and never, or, if it was closed less than
    /// [`REMEMBER_CLOSED_MS`] ago, its progress then and that time's end.
    fn progress_of(&self, addr: IpAddr) -> (u64, u64) {
        let now = self.now_ms();
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        match closed.get(&addr) {
            Some(&(at, progress)) if now < at.saturating_add(REMEMBER_CLOSED_MS) => {
                (progress, at.saturating_add(REMEMBER_CLOSED_MS))
            }
            _ => (now, 0),
        }
    }

    /// Remembers that `addr` was closed with this `progress`.
    fn remember_closed(&self, addr: IpAddr, progress: u64) {
        let now = self.now_ms();
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if closed.len() >= MAX_REMEMBERED {
            closed.retain(|_, &mut (at, _)| now < at.saturating_add(REMEMBER_CLOSED_MS));
        }
        if closed.len() < MAX_REMEMBERED {
            closed.insert(addr, (now, progress));
        }
    }

    /// Closes the sessions of the addresses that have gone the longest without progress
    /// until what the others hold fits in `max` (what closed addresses still hold counts as
    /// gone). At most once per [`SCAN_EVERY_MS`]; the map is locked to copy what it needs and
    /// to mark the chosen addresses, not while they are chosen.
    fn rebalance(&self, map: &Map) {
        let now = self.now_ms();
        let last = self.scanned.load(Ordering::Acquire);
        if now < last.saturating_add(SCAN_EVERY_MS)
            || self
                .scanned
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        // (progress, queued, address, share) of every address that holds something.
        let mut leaving = 0;
        let mut held: Vec<(u64, usize, IpAddr, Arc<Share>)> = Vec::new();
        for (addr, e) in map.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let queued = e.share.queued.load(Ordering::Acquire);
            if e.share.evicted.load(Ordering::Acquire) {
                leaving += queued;
            } else if queued > 0 {
                let progress = e.share.progress.load(Ordering::Acquire);
                held.push((progress, queued, *addr, e.share.clone()));
            }
        }
        let mut excess = self
            .queued
            .load(Ordering::Acquire)
            .saturating_sub(leaving)
            .saturating_sub(self.max);
        if excess == 0 {
            return;
        }
        // The longest without progress first; of those, the largest.
        held.sort_unstable_by_key(|&(progress, queued, ..)| (progress, std::cmp::Reverse(queued)));
        let mut chosen = Vec::new();
        for (progress, queued, addr, share) in held {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(queued);
            chosen.push((addr, share, queued, progress));
        }
        let mut kills = Vec::new();
        {
            let map = map.lock().unwrap_or_else(PoisonError::into_inner);
            for (addr, share, queued, progress) in chosen {
                // Only if it is still that address's share (its sessions may all have ended).
                let Some(entry) = map.get(&addr).filter(|e| Arc::ptr_eq(&e.share, &share)) else {
                    continue;
                };
                share.evicted.store(true, Ordering::Release);
                kills.extend(entry.sessions.values().cloned());
                self.remember_closed(addr, progress);
                metrics::counter!("chatmesh_reply_evictions_total").increment(1);
                let idle_ms = now.saturating_sub(progress);
                let sessions = entry.sessions.len();
                tracing::warn!(%addr, queued, idle_ms, sessions, "closing an address's sessions: the gateway holds too many unread replies, and it has read none of its own the longest");
            }
        }
        for kill in kills {
            kill.cancel();
        }
    }
}

impl Held {
    /// Counts a reply of `size` bytes if the share has room for it, or holds nothing (any
    /// one reply fits then); false, and nothing counted, otherwise. Checked and counted at
    /// once, so sessions of the address racing each other cannot overshoot it. Call
    /// [`Held::rebalance`] after it (not under a lock of the caller's).
    pub fn try_charge(&self, size: usize) -> bool {
        // A closed address's session (one that was past its check when it was closed) adds
        // nothing to what is leaving.
        if self.evicted() {
            return false;
        }
        let max = self.share.max;
        if self.share.queued.load(Ordering::Acquire) == 0 {
            // Starting to hold after holding nothing is progress (set before the bytes count,
            // so a scan never sees them with the time of an older holding), but not for an
            // address closed lately: it has to read to look alive.
            let now = self.all.now_ms();
            if now >= self.share.penalty_until {
                self.share.progress.store(now, Ordering::Release);
            }
        }
        let Ok(_) = self
            .share
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued + size <= max).then_some(queued + size)
            })
        else {
            return false;
        };
        self.all.queued.fetch_add(size, Ordering::AcqRel);
        true
    }

    /// If all addresses together hold more than `reply_bytes_total`, closes the sessions of
    /// those that held theirs the longest (see the module's docs).
    pub fn rebalance(&self) {
        if self.all.queued.load(Ordering::Acquire) > self.all.max {
            self.all.rebalance(&self.map);
        }
    }

    /// Replies of `size` bytes left a queue: for the socket (`written`: the address reads,
    /// which is progress), or dropped with it.
    pub fn discharge(&self, size: usize, written: bool) {
        if size == 0 {
            return;
        }
        self.all.queued.fetch_sub(size, Ordering::AcqRel);
        if written {
            self.share
                .progress
                .store(self.all.now_ms(), Ordering::Release);
        }
        let before = self.share.queued.fetch_sub(size, Ordering::AcqRel);
        // Only a share this full can have replies waiting on it: every reply fits in the
        // other three quarters (`reply_bytes_per_address` is at least 4 MiB).
        if before > self.share.max / 4 {
            self.share.freed.notify_waiters();
        }
    }

    /// Resolves when bytes of the share were freed after this call (enable it before
    /// checking [`Held::try_charge`], like [`Notify::notified`]).
    pub fn freed(&self) -> Notified<'_> {
        self.share.freed.notified()
    }

    /// The session was closed because its address had gone the longest without reading when
    /// the gateway held too many replies.
    pub fn evicted(&self) -> bool {
        self.share.evicted.load(Ordering::Acquire)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        // A drained evicted share may have been replaced by a newer one.
        if let Some(entry) = map
            .get_mut(&self.addr)
            .filter(|e| Arc::ptr_eq(&e.share, &self.share))
        {
            entry.sessions.remove(&self.session);
            if entry.sessions.is_empty() {
                map.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(shares: &ReplyShares, addr: IpAddr, session: u64) -> Held {
        shares.hold(addr, session, CancellationToken::new())
    }

    fn pause() {
        std::thread::sleep(std::time::Duration::from_millis(SCAN_EVERY_MS + 5));
    }

    /// The share is one per address, bounded, and forgotten with its last session.
    #[test]
    fn an_address_shares_its_bytes_and_is_forgotten_with_its_last_session() {
        let shares = ReplyShares::new(100, 1_000);
        let (a, b) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let (one, two, other) = (
            hold(&shares, a, 1),
            hold(&shares, a, 2),
            hold(&shares, b, 3),
        );
        assert!(one.try_charge(1_000), "an empty share takes any one reply");
        one.discharge(1_000, true);
        assert!(one.try_charge(60));
        assert!(!two.try_charge(50), "the address's other session waits");
        assert!(other.try_charge(50), "another address does not");
        assert!(two.try_charge(40));
        one.discharge(60, true);
        assert!(two.try_charge(50));
        assert_eq!(shares.addresses(), 2);
        drop(one);
        assert_eq!(shares.addresses(), 2);
        drop((two, other));
        assert_eq!(shares.addresses(), 0);
    }

    /// Sessions of one address closing at the same time on several threads leave no entry.
    #[test]
    fn sessions_closing_at_once_leave_no_address_behind() {
        let shares = Arc::new(ReplyShares::new(100, 1_000));
        let addr: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..200 {
            let held: Vec<Held> = (0..4).map(|id| hold(&shares, addr, id)).collect();
            let threads: Vec<_> = held
                .into_iter()
                .map(|h| std::thread::spawn(move || drop(h)))
                .collect();
            for t in threads {
                t.join().unwrap_or_default();
            }
            assert_eq!(shares.addresses(), 0);
        }
    }

    /// Over the gateway's total, the sessions of the address that has gone the longest
    /// without reading are told to close, not the one that holds the most but reads; what
    /// the closing sessions still hold is not held against the others; until it has left,
    /// the address's new sessions are closed at once.
    #[test]
    fn the_address_that_reads_nothing_goes_when_all_hold_too_much() {
        let shares = ReplyShares::new(100, 150);
        let (a, b, c) = (
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            [10, 0, 0, 3].into(),
        );
        let (ka, kb, kc) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let a1 = shares.hold(a, 1, ka.clone());
        let a2 = hold(&shares, a, 2);
        let b1 = shares.hold(b, 3, kb.clone());
        let c1 = shares.hold(c, 4, kc.clone());
        assert!(a1.try_charge(30) && a2.try_charge(10));
        assert!(b1.try_charge(90));
        b1.rebalance();
        assert!(!ka.is_cancelled() && !kb.is_cancelled(), "130 of 150");
        pause();
        b1.discharge(10, true);
        assert!(c1.try_charge(60), "180 of 150");
        c1.rebalance();
        assert!(
            ka.is_cancelled() && a1.evicted() && a2.evicted(),
            "a read nothing"
        );
        assert!(
            !kb.is_cancelled() && !kc.is_cancelled(),
            "b holds the most, but reads"
        );
        assert!(!a1.try_charge(1), "a closing session adds nothing");
        pause();
        assert!(c1.try_charge(10));
        c1.rebalance();
        assert!(
            !kb.is_cancelled() && !kc.is_cancelled(),
            "190 queued, 40 of them leaving"
        );
        let ka3 = CancellationToken::new();
        let a3 = shares.hold(a, 5, ka3.clone());
        assert!(
            ka3.is_cancelled() && a3.evicted(),
            "refused until a's bytes have left"
        );
        a1.discharge(30, false);
        a2.discharge(10, false);
        drop((a1, a2, a3));
        assert_eq!(shares.addresses(), 2, "a is forgotten with its sessions");
        assert_eq!(shares.queued(), 150);
    }

    /// An address closed lately comes back with its old progress: starting to hold again is
    /// no progress for it (reconnecting does not make it look new), reading is.
    #[test]
    fn a_closed_address_that_reconnects_is_first_in_line_until_it_reads() {
        let shares = ReplyShares::new(100, 100);
        let (a, b) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let old = hold(&shares, a, 1);
        assert!(old.try_charge(60));
        pause();
        let b1 = hold(&shares, b, 2);
        assert!(b1.try_charge(50), "110 of 100");
        b1.rebalance();
        assert!(old.evicted() && !b1.evicted());
        old.discharge(60, false);
        drop(old);
        let ka = CancellationToken::new();
        let again = shares.hold(a, 3, ka.clone());
        assert!(
            !ka.is_cancelled() && !again.evicted(),
            "its bytes have left: a new share"
        );
        assert!(again.try_charge(60), "110 of 100 again");
        pause();
        again.rebalance();
        assert!(
            ka.is_cancelled(),
            "a, not b: a has not read since it was closed"
        );
        assert!(!b1.evicted());
        again.discharge(60, false);
        b1.discharge(50, true);
        drop((again, b1));
        // One that reads after it came back is judged by that.
        let c: IpAddr = [10, 0, 0, 3].into();
        let kc = CancellationToken::new();
        let a2 = hold(&shares, a, 4);
        assert!(a2.try_charge(40));
        let c1 = shares.hold(c, 5, kc.clone());
        assert!(c1.try_charge(60));
        pause();
        a2.discharge(10, true);
        assert!(a2.try_charge(20), "110 of 100");
        a2.rebalance();
        assert!(
            kc.is_cancelled() && !a2.evicted(),
            "c has read nothing since it started"
        );
    }
}
