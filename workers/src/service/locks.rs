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

use chatmesh_protocol::subjects::fnv1a32;
use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 1024;

/// A fixed set of mutexes, picked by key hash.
pub(crate) struct KeyLocks {
    stripes: Box<[Mutex<()>]>,
}

/// The guards of [`KeyLocks::lock_two`]: one or two stripes, released on drop.
pub(crate) struct TwoGuards<'a> {
    _first: MutexGuard<'a, ()>,
    _second: Option<MutexGuard<'a, ()>>,
}

impl KeyLocks {
    pub fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub(crate) fn stripe(kind: u8, a: &str, b: &str) -> usize {
        let h = fnv1a32(&[kind]) ^ fnv1a32(a.as_bytes()) ^ fnv1a32(b.as_bytes()).rotate_left(7);
        h as usize % STRIPES
    }

    /// Locks the stripe of `(kind, a, b)`. Never call it while holding another stripe: use
    /// [`KeyLocks::lock_two`].
    pub async fn lock(&self, kind: u8, a: &str, b: &str) -> MutexGuard<'_, ()> {
        self.stripes[Self::stripe(kind, a, b)].lock().await
    }

    /// Locks the stripes of keys `(kind, name)` `x` and `y` together, deadlock-free.
    pub async fn lock_two(&self, x: (u8, &str), y: (u8, &str)) -> TwoGuards<'_> {
        let i = Self::stripe(x.0, x.1, "");
        let j = Self::stripe(y.0, y.1, "");
        let first = self.stripes[i.min(j)].lock().await;
        let second = if i == j {
            None
        } else {
            Some(self.stripes[i.max(j)].lock().await)
        };
        TwoGuards {
            _first: first,
            _second: second,
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
        let locks = KeyLocks::new();
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
        let locks = Arc::new(KeyLocks::new());
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
