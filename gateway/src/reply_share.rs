//! Reply bytes per client address, and in all. Each session's replies wait while 4 MiB of
//! them are queued ([`crate::link::REPLY_BYTES`]), but one address may hold hundreds of
//! sessions (`max_connections_per_ip`): the sessions of one address also share
//! `gateway.reply_bytes_per_address` of queued replies, so clients that ask for much and
//! read nothing hold a bounded part of the gateway per address, and their other sessions'
//! replies wait (their requests with them) until they read or are closed. Many addresses
//! (IPv6 /64s are cheap) could still add up: when all of them together hold more than
//! `gateway.reply_bytes_total`, the sessions of the addresses holding the most are closed
//! (1013) until the rest fits, so the others are left alone. Live frames and replays are not
//! counted: live frames never wait, and replays have their own bounds per address
//! (`max_replays_per_ip`) and a pace they must keep, which a neighbour that stops reading
//! must not make them miss. Addresses with no session are not kept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The gateway looks for addresses to close at most this often, milliseconds.
const SCAN_EVERY_MS: u64 = 20;

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
    /// Shares whose sessions were told to close and may not have let go of their bytes yet.
    closing: Mutex<Vec<Weak<Share>>>,
}

/// One address's queued reply bytes.
#[derive(Debug)]
pub struct Share {
    queued: AtomicUsize,
    max: usize,
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
                closing: Mutex::default(),
            }),
            max,
        }
    }

    /// The share of `addr`, held by one more session (`session`, ended by `kill` if its
    /// address is closed).
    pub fn hold(&self, addr: IpAddr, session: u64, kill: CancellationToken) -> Held {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(addr).or_insert_with(|| Entry {
            share: Arc::new(Share {
                queued: AtomicUsize::new(0),
                max: self.max,
                freed: Notify::new(),
                evicted: AtomicBool::new(false),
            }),
            sessions: HashMap::new(),
        });
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
    /// Called when more than `max` is queued: closes the sessions of the addresses holding
    /// the most until what the others hold fits (what addresses told to close still hold
    /// counts as gone). At most once per [`SCAN_EVERY_MS`].
    fn over(&self, map: &Map) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.scanned.load(Ordering::Acquire);
        if now < last.saturating_add(SCAN_EVERY_MS)
            || self
                .scanned
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let mut closing = self.closing.lock().unwrap_or_else(PoisonError::into_inner);
        closing.retain(|s| s.strong_count() > 0);
        let leaving: usize = closing
            .iter()
            .filter_map(Weak::upgrade)
            .map(|s| s.queued.load(Ordering::Acquire))
            .sum();
        let mut excess = self
            .queued
            .load(Ordering::Acquire)
            .saturating_sub(leaving)
            .saturating_sub(self.max);
        if excess == 0 {
            return;
        }
        let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut held: Vec<(usize, IpAddr)> = map
            .iter()
            .map(|(addr, e)| (e.share.queued.load(Ordering::Acquire), *addr))
            .collect();
        held.sort_unstable_by_key(|&(queued, _)| std::cmp::Reverse(queued));
        for (queued, addr) in held {
            if excess == 0 || queued == 0 {
                break;
            }
            // Forgotten here: a new session of the address starts a share of its own.
            let Some(entry) = map.remove(&addr) else {
                continue;
            };
            entry.share.evicted.store(true, Ordering::Release);
            // Its sessions' requests waiting for room give up, and their readers see the kill.
            entry.share.freed.notify_waiters();
            for kill in entry.sessions.values() {
                kill.cancel();
            }
            closing.push(Arc::downgrade(&entry.share));
            excess = excess.saturating_sub(queued);
            metrics::counter!("chatmesh_reply_evictions_total").increment(1);
            tracing::warn!(
                %addr,
                queued,
                sessions = entry.sessions.len(),
                "closing an address's sessions: the gateway holds too many unread replies"
            );
        }
    }
}

impl Held {
    /// Counts a reply of `size` bytes if the share has room for it, or holds nothing (any
    /// one reply fits then); false, and nothing counted, otherwise. Checked and counted at
    /// once, so sessions of the address racing each other cannot overshoot it. Over the
    /// gateway's total, the addresses holding the most are closed.
    pub fn try_charge(&self, size: usize) -> bool {
        let max = self.share.max;
        let charged = self
            .share
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued + size <= max).then_some(queued + size)
            })
            .is_ok();
        if charged && self.all.queued.fetch_add(size, Ordering::AcqRel) + size > self.all.max {
            self.all.over(&self.map);
        }
        charged
    }

    /// Replies of `size` bytes left a queue (written, or dropped with it).
    pub fn discharge(&self, size: usize) {
        if size == 0 {
            return;
        }
        self.all.queued.fetch_sub(size, Ordering::AcqRel);
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

    /// The session was closed because its address held the most when the gateway held too
    /// many unread replies.
    pub fn evicted(&self) -> bool {
        self.share.evicted.load(Ordering::Acquire)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        // An evicted share is no longer the address's entry: a newer one may be.
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
        one.discharge(1_000);
        assert!(one.try_charge(60));
        assert!(!two.try_charge(50), "the address's other session waits");
        assert!(other.try_charge(50), "another address does not");
        assert!(two.try_charge(40));
        one.discharge(60);
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

    /// Over the gateway's total, the sessions of the address holding the most are told to
    /// close, once; the address's next session starts afresh, and what the closing sessions
    /// still hold is not held against the others.
    #[test]
    fn the_address_holding_most_goes_when_all_hold_too_much() {
        let shares = ReplyShares::new(100, 150);
        let (a, b, c) = (
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            [10, 0, 0, 3].into(),
        );
        let (ka, kb) = (CancellationToken::new(), CancellationToken::new());
        let a1 = shares.hold(a, 1, ka.clone());
        let a2 = shares.hold(a, 2, CancellationToken::new());
        let b1 = shares.hold(b, 3, kb.clone());
        assert!(a1.try_charge(60) && a2.try_charge(30) && b1.try_charge(50));
        assert!(!ka.is_cancelled() && !kb.is_cancelled(), "140 of 150");
        std::thread::sleep(std::time::Duration::from_millis(SCAN_EVERY_MS + 5));
        assert!(b1.try_charge(20), "170 of 150");
        assert!(
            ka.is_cancelled() && a1.evicted() && a2.evicted(),
            "a holds the most"
        );
        assert!(!kb.is_cancelled() && !b1.evicted());
        // a's sessions still hold 90 while they close: that is not b's or c's doing.
        let c1 = hold(&shares, c, 4);
        std::thread::sleep(std::time::Duration::from_millis(SCAN_EVERY_MS + 5));
        assert!(c1.try_charge(40), "210 queued, 90 of them leaving");
        assert!(!kb.is_cancelled());
        let a3 = hold(&shares, a, 5);
        assert!(!a3.evicted(), "a new session of the address starts afresh");
        a1.discharge(60);
        a2.discharge(30);
        drop((a1, a2));
        assert_eq!(
            shares.addresses(),
            3,
            "a's new entry stays with its session"
        );
        assert_eq!(shares.queued(), 110);
    }
}
