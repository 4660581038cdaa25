//! Admission of sends when the bus falls behind. A send holds three slots until its PubAck
//! (or its `unavailable`): one of its session's (at most [`SESSION_INFLIGHT`]), one of its
//! user's over all the user's sessions on this gateway (an eighth of the gateway's, at least
//! a session's: one account with many sessions cannot take the whole budget and leave every
//! other user's sends shed), and one of the gateway's (`max_inflight_sends`). When
//! JetStream stops answering, slots run out; a send
//! then waits at most `admission_wait_ms` for one and is otherwise refused at once with
//! `unavailable` (resend with the same id), so a client is never left in silence: every send
//! is answered within the wait plus `publish_deadline_ms`. Once a wait has run out, later
//! sends that find no free slot are refused without waiting until a slot frees again (the
//! session's and the gateway's "shedding" state), so a session's reader stops for at most one
//! wait per stall, not one per queued send, and its pings and other requests are answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chatmesh_protocol::ApiError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Sends of one session awaiting their PubAck at once.
pub const SESSION_INFLIGHT: usize = 64;
/// One user's share of the gateway's budget: this fraction of it (at least a session's).
const USER_SHARE_DIVISOR: usize = 8;

/// The gateway's budget of sends in flight.
#[derive(Debug, Clone)]
pub struct Admission {
    gateway: Arc<Semaphore>,
    /// A wait for a gateway slot ran out and none has been free since.
    shedding: Arc<AtomicBool>,
    max: usize,
    wait: Duration,
    /// The slots of each user with a session here (gone with the user's last session).
    users: Arc<Mutex<Users>>,
}

#[derive(Debug, Default)]
struct Users {
    slots: HashMap<Arc<str>, Weak<UserSlots>>,
    /// The map is swept of users without sessions when it reaches this size.
    sweep_at: usize,
}

/// One user's slots over all its sessions, and whether a wait for them ran out with none
/// free since.
#[derive(Debug)]
pub struct UserSlots {
    slots: Arc<Semaphore>,
    shedding: AtomicBool,
}

/// One session's slots, and whether a wait for them ran out with none free since.
#[derive(Debug)]
pub struct SessionSlots {
    slots: Arc<Semaphore>,
    shedding: bool,
    user: Arc<UserSlots>,
}

/// The three slots one admitted send holds until it is answered.
#[derive(Debug)]
pub struct Admitted {
    _session: OwnedSemaphorePermit,
    _user: OwnedSemaphorePermit,
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
        }
    }

    /// The slots of a session of `user`: its own, and its user's.
    pub fn session_slots(&self, user: &str) -> SessionSlots {
        self.slots(user, SESSION_INFLIGHT)
    }

    fn slots(&self, user: &str, n: usize) -> SessionSlots {
        SessionSlots {
            slots: Arc::new(Semaphore::new(n)),
            shedding: false,
            user: self.user_slots(user),
        }
    }

    /// One user's share of the gateway's budget.
    fn user_share(&self) -> usize {
        (self.max / USER_SHARE_DIVISOR).max(SESSION_INFLIGHT)
    }

    fn user_slots(&self, user: &str) -> Arc<UserSlots> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slots) = users.slots.get(user).and_then(Weak::upgrade) {
            return slots;
        }
        if users.slots.len() >= users.sweep_at {
            users.slots.retain(|_, s| s.strong_count() > 0);
            users.sweep_at = (users.slots.len() * 2).max(1_024);
        }
        let slots = Arc::new(UserSlots {
            slots: Arc::new(Semaphore::new(self.user_share())),
            shedding: AtomicBool::new(false),
        });
        users.slots.insert(Arc::from(user), Arc::downgrade(&slots));
        slots
    }

    /// Sends of this gateway in flight now.
    pub fn in_flight(&self) -> usize {
        self.max - self.gateway.available_permits()
    }

    /// Takes a slot of `session`, one of its user and one of the gateway, waiting at most
    /// the admission wait for all three together (not at all while shedding); `unavailable`
    /// when none frees in time.
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
        let user = &session.user;
        let user_shedding = user.shedding.load(Ordering::Relaxed);
        let theirs = match take(&user.slots, user_shedding, deadline).await {
            Some(permit) => permit,
            None => {
                user.shedding.store(true, Ordering::Relaxed);
                return Err(shed("send_user"));
            }
        };
        if user_shedding {
            user.shedding.store(false, Ordering::Relaxed);
        }
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
            _gateway: all,
        })
    }
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
        let (mut a, mut b) = (admission.session_slots("a"), admission.session_slots("b"));
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
        let mut one = admission.slots("one", 1);
        let held = admission.admit(&mut one).await.expect("its one slot");
        let started = tokio::time::Instant::now();
        assert!(admission.admit(&mut one).await.is_err());
        assert!(admission.admit(&mut one).await.is_err());
        assert_eq!(started.elapsed(), Duration::from_millis(50), "one wait");
        admission
            .admit(&mut admission.session_slots("one"))
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
            admission.session_slots("greedy"),
            admission.session_slots("greedy"),
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
        let mut other = admission.session_slots("bob");
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
}
