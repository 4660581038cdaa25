//! Admission of sends when the bus falls behind. A send holds four slots until its PubAck
//! (or its `unavailable`): one of its session's (at most [`SESSION_INFLIGHT`]), one of its
//! user's over all the user's sessions on this gateway (an eighth of the gateway's, at least
//! a session's: one account with many sessions cannot take the whole budget and leave every
//! other user's sends shed), one of its client address's over all the accounts connected
//! from it (a quarter of the gateway's, at least a user's: many accounts on one address
//! cannot take it either; not counted for a trusted proxy's own address), and one of the
//! gateway's (`max_inflight_sends`). When JetStream stops answering, slots run out; a send
//! then waits at most `admission_wait_ms` for one and is otherwise refused at once with
//! `unavailable` (resend with the same id), so a client is never left in silence: every send
//! is answered within the wait plus `publish_deadline_ms`. Once a wait has run out, later
//! sends that find no free slot are refused without waiting until a slot frees again (the
//! session's, user's, address's and gateway's "shedding" state), so a session's reader stops
//! for at most one wait per stall, not one per queued send, and its pings and other requests
//! are answered.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chatmesh_protocol::ApiError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Sends of one session awaiting their PubAck at once.
pub const SESSION_INFLIGHT: usize = 64;
/// One user's share of the gateway's budget: this fraction of it (at least a session's).
const USER_SHARE_DIVISOR: usize = 8;
/// One client address's share of the gateway's budget: this fraction of it (at least a
/// user's).
const ADDRESS_SHARE_DIVISOR: usize = 4;

/// The gateway's budget of sends in flight.
#[derive(Debug, Clone)]
pub struct Admission {
    gateway: Arc<Semaphore>,
    /// A wait for a gateway slot ran out and none has been free since.
    shedding: Arc<AtomicBool>,
    max: usize,
    wait: Duration,
    /// The slots of each user with a session here (gone with the user's last session).
    users: Arc<Mutex<Shares<Arc<str>>>>,
    /// The slots of each client address with a session here.
    addresses: Arc<Mutex<Shares<IpAddr>>>,
}

/// The shares of the sessions' users or addresses, each kept while a session holds it.
#[derive(Debug)]
struct Shares<K> {
    slots: HashMap<K, Weak<Share>>,
    /// The map is swept of shares without sessions when it reaches this size.
    sweep_at: usize,
}

impl<K> Default for Shares<K> {
    fn default() -> Self {
        Self {
            slots: HashMap::new(),
            sweep_at: 0,
        }
    }
}

impl<K: Hash + Eq> Shares<K> {
    /// The share of `key`, `size` slots if it is new.
    fn get(&mut self, key: K, size: usize) -> Arc<Share> {
        if let Some(share) = self.slots.get(&key).and_then(Weak::upgrade) {
            return share;
        }
        if self.slots.len() >= self.sweep_at {
            self.slots.retain(|_, s| s.strong_count() > 0);
            self.sweep_at = (self.slots.len() * 2).max(1_024);
        }
        let share = Arc::new(Share {
            slots: Arc::new(Semaphore::new(size)),
            shedding: AtomicBool::new(false),
        });
        self.slots.insert(key, Arc::downgrade(&share));
        share
    }
}

/// One user's or one address's slots over all its sessions, and whether a wait for them
/// ran out with none free since.
#[derive(Debug)]
pub struct Share {
    slots: Arc<Semaphore>,
    shedding: AtomicBool,
}

/// A slot of a [`Share`], which keeps the share (and so its count) while the send is in
/// flight, even when its sessions are gone: a user or an address cannot start afresh by
/// reconnecting.
#[derive(Debug)]
struct Held {
    _permit: OwnedSemaphorePermit,
    _share: Arc<Share>,
}

impl Share {
    /// A slot of this share, waiting until `deadline` unless it is shedding; `None` (and
    /// shedding from then on) when none freed.
    async fn take(self: &Arc<Self>, deadline: tokio::time::Instant) -> Option<Held> {
        let shedding = self.shedding.load(Ordering::Relaxed);
        let permit = take(&self.slots, shedding, deadline).await;
        match permit {
            None => self.shedding.store(true, Ordering::Relaxed),
            Some(_) if shedding => self.shedding.store(false, Ordering::Relaxed),
            Some(_) => {}
        }
        Some(Held {
            _permit: permit?,
            _share: self.clone(),
        })
    }
}

/// One session's slots, and whether a wait for them ran out with none free since.
#[derive(Debug)]
pub struct SessionSlots {
    slots: Arc<Semaphore>,
    shedding: bool,
    user: Arc<Share>,
    /// `None` for a trusted proxy's own address.
    address: Option<Arc<Share>>,
}

/// The slots one admitted send holds until it is answered.
#[derive(Debug)]
pub struct Admitted {
    _session: OwnedSemaphorePermit,
    _user: Held,
    _address: Option<Held>,
    _gateway: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(max_inflight: usize, wait: Duration) -> Self {
        Self {
            gateway: Arc::new(Semaphore::new(max_inflight)),
            shedding: Arc::default(),
            max: max_inflight,
            wait,
            users: Arc::default(),
            addresses: Arc::default(),
        }
    }

    /// The slots of a session of `user` from client address `address` (`None`: a trusted
    /// proxy, not counted): its own, its user's and its address's.
    pub fn session_slots(&self, user: &str, address: Option<IpAddr>) -> SessionSlots {
        self.slots(user, address, SESSION_INFLIGHT)
    }

    fn slots(&self, user: &str, address: Option<IpAddr>, n: usize) -> SessionSlots {
        let user_share = self.user_share();
        let address_share = (self.max / ADDRESS_SHARE_DIVISOR).max(user_share);
        SessionSlots {
            slots: Arc::new(Semaphore::new(n)),
            shedding: false,
            user: lock(&self.users).get(Arc::from(user), user_share),
            address: address.map(|ip| lock(&self.addresses).get(ip, address_share)),
        }
    }

    /// One user's share of the gateway's budget.
    fn user_share(&self) -> usize {
        (self.max / USER_SHARE_DIVISOR).max(SESSION_INFLIGHT)
    }

    /// Sends of this gateway in flight now.
    pub fn in_flight(&self) -> usize {
        self.max - self.gateway.available_permits()
    }

    /// Takes a slot of `session`, one of its user, one of its address and one of the
    /// gateway, waiting at most the admission wait for all of them together (not at all
    /// while shedding); `unavailable` when none frees in time.
    pub async fn admit(&self, session: &mut SessionSlots) -> Result<Admitted, ApiError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let own = match take(&session.slots, session.shedding, deadline).await {
            Some(permit) => permit,
            None => {
                session.shedding = true;
                return Err(shed("send_session"));
            }
        };
        session.shedding = false;
        let Some(theirs) = session.user.take(deadline).await else {
            return Err(shed("send_user"));
        };
        let from = match &session.address {
            None => None,
            Some(address) => match address.take(deadline).await {
                Some(permit) => Some(permit),
                None => return Err(shed("send_address")),
            },
        };
        let shedding = self.shedding.load(Ordering::Relaxed);
        let all = match take(&self.gateway, shedding, deadline).await {
            Some(permit) => permit,
            None => {
                self.shedding.store(true, Ordering::Relaxed);
                return Err(shed("send_gateway"));
            }
        };
        if shedding {
            self.shedding.store(false, Ordering::Relaxed);
        }
        metrics::gauge!("chatmesh_sends_in_flight").set(self.in_flight() as f64);
        Ok(Admitted {
            _session: own,
            _user: theirs,
            _address: from,
            _gateway: all,
        })
    }
}

fn lock<K>(shares: &Mutex<Shares<K>>) -> std::sync::MutexGuard<'_, Shares<K>> {
    shares.lock().unwrap_or_else(|e| e.into_inner())
}

/// A permit of `slots`: at once if one is free, else (unless `shedding`) the first to free
/// up before `deadline`.
async fn take(
    slots: &Arc<Semaphore>,
    shedding: bool,
    deadline: tokio::time::Instant,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(permit) = slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    if shedding {
        return None;
    }
    tokio::time::timeout_at(deadline, slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Counts a refused send; the error its client gets.
fn shed(what: &'static str) -> ApiError {
    metrics::counter!("chatmesh_shed_total", "what" => what).increment(1);
    ApiError::unavailable(
        "overloaded: too many sends wait for the message bus; resend with the same id",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past the gateway's budget a send is refused after the wait, the next one at once
    /// (shedding), and a freed slot admits again.
    #[tokio::test(start_paused = true)]
    async fn sheds_after_one_wait_and_admits_when_freed() {
        let admission = Admission::new(2, Duration::from_millis(300));
        let (mut a, mut b) = (
            admission.session_slots("a", None),
            admission.session_slots("b", None),
        );
        let first = admission.admit(&mut a).await.expect("first");
        let _second = admission.admit(&mut b).await.expect("second");
        assert_eq!(admission.in_flight(), 2);
        let started = tokio::time::Instant::now();
        let err = admission.admit(&mut a).await.expect_err("over the budget");
        assert_eq!(err.code, chatmesh_protocol::ErrorCode::Unavailable);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        let started = tokio::time::Instant::now();
        admission.admit(&mut b).await.expect_err("still over it");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no second wait while shedding"
        );
        drop(first);
        admission.admit(&mut a).await.expect("a freed slot");
    }

    /// A session over its own budget waits once, then is refused at once until a slot of its
    /// own frees; other sessions are not affected.
    #[tokio::test(start_paused = true)]
    async fn a_session_over_its_budget_is_refused_alone() {
        let admission = Admission::new(100, Duration::from_millis(50));
        let mut one = admission.slots("one", None, 1);
        let held = admission.admit(&mut one).await.expect("its one slot");
        let started = tokio::time::Instant::now();
        assert!(admission.admit(&mut one).await.is_err());
        assert!(admission.admit(&mut one).await.is_err());
        assert_eq!(started.elapsed(), Duration::from_millis(50), "one wait");
        admission
            .admit(&mut admission.session_slots("one", None))
            .await
            .expect("another session");
        drop(held);
        admission.admit(&mut one).await.expect("freed");
    }

    /// One user's sessions together hold at most their user's share of the gateway's slots
    /// (here a session's 64 of 256): past it their sends wait once, then are refused at
    /// once, while another user's are admitted (before: two sessions of one user took 128
    /// and four took all 256, and everyone else's sends were shed).
    #[tokio::test(start_paused = true)]
    async fn one_user_holds_at_most_its_share_of_the_gateway() {
        let admission = Admission::new(256, Duration::from_millis(50));
        let (mut one, mut two) = (
            admission.session_slots("greedy", None),
            admission.session_slots("greedy", None),
        );
        let mut held = Vec::new();
        for _ in 0..SESSION_INFLIGHT {
            held.push(
                admission
                    .admit(&mut one)
                    .await
                    .expect("the first session's slots"),
            );
        }
        let started = tokio::time::Instant::now();
        assert!(
            admission.admit(&mut two).await.is_err(),
            "past the user's share"
        );
        assert!(admission.admit(&mut two).await.is_err());
        assert_eq!(started.elapsed(), Duration::from_millis(50), "one wait");
        let mut other = admission.session_slots("bob", None);
        admission.admit(&mut other).await.expect("another user");
        held.pop();
        admission
            .admit(&mut two)
            .await
            .expect("a slot of the user freed");
        drop(held);
        drop((one, two));
        let users = admission.users.lock().expect("lock");
        assert_eq!(users.slots.get("greedy").map(Weak::strong_count), Some(0));
    }

    /// Many accounts from one client address together hold at most the address's share of
    /// the gateway's slots (here a quarter of 1,024): past it their sends wait once, then are
    /// refused at once, while an account from another address, and one behind a trusted
    /// proxy, are admitted (before: four accounts from one address took the whole budget
    /// during a stall and every other address's sends were shed).
    #[tokio::test(start_paused = true)]
    async fn one_address_holds_at_most_its_share_of_the_gateway() {
        let admission = Admission::new(1_024, Duration::from_millis(50));
        let crowd: IpAddr = [203, 0, 113, 9].into();
        let mut held = Vec::new();
        for account in 0..2 {
            for _ in 0..2 {
                let mut session = admission.session_slots(&format!("crowd{account}"), Some(crowd));
                for _ in 0..SESSION_INFLIGHT {
                    held.push(admission.admit(&mut session).await.expect("the share"));
                }
            }
        }
        assert_eq!(admission.in_flight(), 256);
        let mut late = admission.session_slots("crowd2", Some(crowd));
        let started = tokio::time::Instant::now();
        let err = admission
            .admit(&mut late)
            .await
            .expect_err("past the share");
        assert_eq!(err.code, chatmesh_protocol::ErrorCode::Unavailable);
        assert!(admission.admit(&mut late).await.is_err());
        assert_eq!(started.elapsed(), Duration::from_millis(50), "one wait");
        let mut elsewhere = admission.session_slots("bob", Some([198, 51, 100, 7].into()));
        admission
            .admit(&mut elsewhere)
            .await
            .expect("another address");
        let mut proxied = admission.session_slots("carol", None);
        admission.admit(&mut proxied).await.expect("not counted");
        held.pop();
        admission
            .admit(&mut late)
            .await
            .expect("a slot of the address freed");
    }
}
