//! Reply bytes per client address. Each session's replies wait while 4 MiB of them are
//! queued ([`crate::link::REPLY_BYTES`]), but one address may hold hundreds of sessions
//! (`max_connections_per_ip`): the sessions of one address also share
//! `gateway.reply_bytes_per_address` of queued replies, so clients that ask for much and
//! read nothing hold a bounded part of the gateway per address, and their other sessions'
//! replies wait (their requests with them) until they read or are closed. Live frames and
//! replays are not counted: live frames never wait, and replays have their own bounds per
//! address (`max_replays_per_ip`) and a pace they must keep, which a neighbour that stops
//! reading must not make them miss. Addresses with no session are not kept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Each address's share and how many sessions hold it.
type Map = Arc<Mutex<HashMap<IpAddr, (Arc<Share>, usize)>>>;

/// The shares of every address with a session.
#[derive(Debug)]
pub struct ReplyShares {
    map: Map,
    max: usize,
}

/// One address's queued reply bytes.
#[derive(Debug)]
pub struct Share {
    queued: AtomicUsize,
    max: usize,
    /// Bytes were taken off a queue while the share was a quarter full or more.
    freed: Notify,
}

/// A session's hold on its address's share; the share is forgotten with its last session.
#[derive(Debug)]
pub struct Held {
    addr: IpAddr,
    share: Arc<Share>,
    map: Map,
}

impl ReplyShares {
    /// Shares of `max` bytes each.
    pub fn new(max: usize) -> Self {
        Self {
            map: Arc::default(),
            max,
        }
    }

    /// The share of `addr`, held by one more session.
    pub fn hold(&self, addr: IpAddr) -> Held {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let (share, holders) = map.entry(addr).or_insert_with(|| {
            let share = Share {
                queued: AtomicUsize::new(0),
                max: self.max,
                freed: Notify::new(),
            };
            (Arc::new(share), 0)
        });
        *holders += 1;
        let share = share.clone();
        Held {
            addr,
            share,
            map: self.map.clone(),
        }
    }

    /// Addresses with a session (for tests and metrics).
    pub fn addresses(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Held {
    /// Counts a reply of `size` bytes if the share has room for it, or holds nothing (any
    /// one reply fits then); false, and nothing counted, otherwise. Checked and counted at
    /// once, so sessions of the address racing each other cannot overshoot it.
    pub fn try_charge(&self, size: usize) -> bool {
        let max = self.share.max;
        self.share
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued + size <= max).then_some(queued + size)
            })
            .is_ok()
    }

    /// Replies of `size` bytes left a queue (written, or dropped with it).
    pub fn discharge(&self, size: usize) {
        if size == 0 {
            return;
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
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, holders)) = map.get_mut(&self.addr) {
            *holders -= 1;
            if *holders == 0 {
                map.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share is one per address, bounded, and forgotten with its last session.
    #[test]
    fn an_address_shares_its_bytes_and_is_forgotten_with_its_last_session() {
        let shares = ReplyShares::new(100);
        let (a, b) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let (one, two, other) = (shares.hold(a), shares.hold(a), shares.hold(b));
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
        let shares = Arc::new(ReplyShares::new(100));
        let addr: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..200 {
            let held: Vec<Held> = (0..4).map(|_| shares.hold(addr)).collect();
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
}
