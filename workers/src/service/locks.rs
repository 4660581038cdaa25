//! Striped async locks that serialise the read-check-write of one key (a user name, a room,
//! a cursor) inside this worker: two `register` requests for the same name cannot both see
//! it free.
//!
//! Keys share stripes, so two keys are only ever held together through
//! [`KeyLocks::lock_two`]: it takes the two stripes in index order, and a stripe both keys
//! fall on only once (a tokio mutex is not reentrant: a task locking it twice waits forever).
//! Taking them one after the other in a fixed key order is not enough: a user whose stripe is
//! also a room's stripe deadlocked `room_create` on itself, and two requests whose user and
//! room stripes crossed deadlocked each other; each stuck request kept a service permit until
//! none was left and every service call timed out.
//!
//! A request waits for a stripe only until its deadline (then `unavailable`: its caller has
//! stopped waiting, and a change it then made would happen after its caller was told it
//! failed), and only while fewer than `max_waiting` requests wait for that stripe (then
//! `rate_limited`): each waiting request holds a service slot, and one room's owner sending a
//! thousand topic changes at once held every slot of the worker, so that other rooms' and
//! users' requests timed out behind them. A crowd joining a public room waits by its
//! deadline only ([`KeyLocks::lock_crowd`]). Callers outside a request (the sweeper, tests)
//! wait as long as it takes.

use std::sync::atomic::{AtomicUsize, Ordering};

use chatmesh_protocol::subjects::fnv1a32;
use chatmesh_protocol::ApiError;
use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 1024;

/// A fixed set of mutexes, picked by key hash.
pub(crate) struct KeyLocks {
    stripes: Box<[Mutex<()>]>,
    /// Requests waiting for each stripe.
    waiting: Box<[AtomicUsize]>,
    /// Most requests that wait for one stripe at once.
    max_waiting: usize,
}

/// The guards of [`KeyLocks::lock_two`]: one or two stripes, released on drop.
pub(crate) struct TwoGuards<'a> {
    _first: MutexGuard<'a, ()>,
    _second: Option<MutexGuard<'a, ()>>,
}

/// A request counted as waiting for a stripe while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl KeyLocks {
    /// Stripes for which at most `max_waiting` requests wait at once (at least one).
    pub fn new(max_waiting: usize) -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            waiting: (0..STRIPES).map(|_| AtomicUsize::new(0)).collect(),
            max_waiting: max_waiting.max(1),
        }
    }

    pub(crate) fn stripe(kind: u8, a: &str, b: &str) -> usize {
        let h = fnv1a32(&[kind]) ^ fnv1a32(a.as_bytes()) ^ fnv1a32(b.as_bytes()).rotate_left(7);
        h as usize % STRIPES
    }

    /// Locks the stripe of `(kind, a, b)`, within the request's bounds (module docs). Never
    /// call it while holding another stripe: use [`KeyLocks::lock_two`].
    pub async fn lock(&self, kind: u8, a: &str, b: &str) -> Result<MutexGuard<'_, ()>, ApiError> {
        self.take(Self::stripe(kind, a, b)).await
    }

    /// Locks the stripe of `(kind, a, b)` until the request's deadline, however many wait:
    /// for what many users ask of one room at once by right (a crowd joining a public
    /// room), where a refusal would fail them all but the first few.
    pub async fn lock_crowd(
        &self,
        kind: u8,
        a: &str,
        b: &str,
    ) -> Result<MutexGuard<'_, ()>, ApiError> {
        self.take_within(Self::stripe(kind, a, b), usize::MAX).await
    }

    /// Locks the stripe of `(kind, a, b)`, however long it takes (for work that is not a
    /// request's, or whose request took a bounded lock first).
    pub async fn lock_unbounded(&self, kind: u8, a: &str, b: &str) -> MutexGuard<'_, ()> {
        self.stripes[Self::stripe(kind, a, b)].lock().await
    }

    /// Locks the stripes of keys `(kind, name)` `x` and `y` together, deadlock-free, within
    /// the request's bounds.
    pub async fn lock_two(&self, x: (u8, &str), y: (u8, &str)) -> Result<TwoGuards<'_>, ApiError> {
        let i = Self::stripe(x.0, x.1, "");
        let j = Self::stripe(y.0, y.1, "");
        let first = self.take(i.min(j)).await?;
        let second = if i == j {
            None
        } else {
            Some(self.take(i.max(j)).await?)
        };
        Ok(TwoGuards {
            _first: first,
            _second: second,
        })
    }

    async fn take(&self, i: usize) -> Result<MutexGuard<'_, ()>, ApiError> {
        self.take_within(i, self.max_waiting).await
    }

    /// Takes stripe `i` if fewer than `max_waiting` requests wait for it, by the request's
    /// deadline.
    async fn take_within(
        &self,
        i: usize,
        max_waiting: usize,
    ) -> Result<MutexGuard<'_, ()>, ApiError> {
        let stripe = &self.stripes[i];
        if let Ok(guard) = stripe.try_lock() {
            return Ok(guard);
        }
        let Some(deadline) = super::password::request_deadline() else {
            return Ok(stripe.lock().await);
        };
        let waiting = &self.waiting[i];
        if waiting.fetch_add(1, Ordering::AcqRel) >= max_waiting {
            waiting.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(crate::metrics::LOCK_REFUSED, "why" => "busy").increment(1);
            return Err(ApiError::rate_limited_for(
                "too many requests about this room or user at once",
                std::time::Duration::from_secs(1),
            ));
        }
        let _waiting = Waiting(waiting);
        let left = natskit::deadline::left(deadline);
        match tokio::time::timeout(left, stripe.lock()).await {
            Ok(guard) => Ok(guard),
            Err(_) => {
                metrics::counter!(crate::metrics::LOCK_REFUSED, "why" => "deadline").increment(1);
                Err(ApiError::unavailable(
                    "this room or user is busy: the request waited past its deadline",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    const USER: u8 = 1;
    const ROOM: u8 = 2;

    /// A room name on stripe `want`.
    fn room_on(want: usize) -> String {
        (0..1_000_000)
            .map(|i| format!("room-{i}"))
            .find(|r| KeyLocks::stripe(ROOM, r, "") == want)
            .expect("a room on that stripe")
    }

    #[tokio::test]
    async fn two_keys_on_one_stripe_are_locked_once() {
        let locks = KeyLocks::new(16);
        let user = KeyLocks::stripe(USER, "alice", "");
        let room = room_on(user);
        let guards = tokio::time::timeout(
            Duration::from_secs(2),
            locks.lock_two((USER, "alice"), (ROOM, &room)),
        )
        .await;
        assert!(
            guards.is_ok(),
            "locking a user and a room on one stripe never returned"
        );
    }

    /// Two requests whose user and room stripes cross: (u1, r1) and (u2, r2) with
    /// stripe(r1) == stripe(u2) and stripe(r2) == stripe(u1), taken many times at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crossed_stripes_do_not_deadlock() {
        let locks = Arc::new(KeyLocks::new(16));
        let (u1, u2) = ("alice".to_owned(), "bob".to_owned());
        assert_ne!(
            KeyLocks::stripe(USER, &u1, ""),
            KeyLocks::stripe(USER, &u2, "")
        );
        let r1 = room_on(KeyLocks::stripe(USER, &u2, ""));
        let r2 = room_on(KeyLocks::stripe(USER, &u1, ""));
        let mut tasks = Vec::new();
        for (u, r) in [(u1, r1), (u2, r2)] {
            let locks = locks.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..2_000 {
                    let _g = locks.lock_two((USER, &u), (ROOM, &r)).await;
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in tasks {
            let done = tokio::time::timeout(Duration::from_secs(20), t).await;
            assert!(done.is_ok(), "crossed lock orders deadlocked");
        }
    }
}
