//! Bounds on replays (`join` with `since`, see `replay.rs`), which read a room's backlog
//! from the workers and JetStream and so cost the gateway, the bus and the workers far more
//! than any other request:
//!
//! - a re-join or `leave` of a room stops the replay still running for it (its frames
//!   would be dropped anyway: they belong to the join it replaces);
//! - a session runs at most `max_replays_per_session` at once; one more is `rate_limited`;
//! - one user runs at most `max_replays_per_user` at once on the gateway, over all their
//!   sessions, and one client address `max_replays_per_ip`, over all its accounts; one more
//!   is `rate_limited`;
//! - the gateway runs at most `max_replays` at once ([`ReplaySlots`]); a join waits up to
//!   `replay_wait_ms` for a slot, then is refused `unavailable`.
//!
//! A replay holds its slot while it runs. A re-join takes over the slot of the replay it
//! stops, so replacing one's own replay never waits nor fails.

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chatmesh_protocol::{ApiError, ErrorCode};
use tokio::task::AbortHandle;

use super::rooms::RoomMap;
use crate::replay_slots::{ReplaySlots, Slot};

/// The replays one session runs, by room.
#[derive(Debug, Default)]
pub struct Running {
    rooms: RoomMap<Replaying>,
}

#[derive(Debug)]
struct Replaying {
    task: AbortHandle,
    /// The replay's slot; the task empties it when it ends.
    slot: Arc<Mutex<Option<Slot>>>,
}

impl Replaying {
    fn take_slot(&self) -> Option<Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Still running: the task gives its slot back as it ends.
    fn has_slot(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

impl Running {
    /// A slot for a replay of `room`: the one of the replay it replaces, else a new one
    /// within both bounds. Nothing changes when it is refused.
    pub async fn admit(
        &mut self,
        room: &str,
        per_session: usize,
        gateway: &ReplaySlots,
        user: &Arc<str>,
        ip: Option<IpAddr>,
    ) -> Result<Slot, ApiError> {
        if self.others(room) >= per_session {
            metrics::counter!("chatmesh_replays_refused_total", "reason" => "session").increment(1);
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {per_session} joins with since may replay at once per session; \
                     join again when one is done"
                ),
            ));
        }
        if let Some(slot) = self.cancel(room) {
            return Ok(slot);
        }
        gateway.acquire(user, ip).await
    }

    /// Runs `replay` of `room` holding `slot` until it ends or is cancelled.
    pub fn start(
        &mut self,
        room: Arc<str>,
        slot: Slot,
        replay: impl Future<Output = ()> + Send + 'static,
    ) {
        let slot = Arc::new(Mutex::new(Some(slot)));
        let held = slot.clone();
        let task = tokio::spawn(async move {
            replay.await;
            drop(held.lock().unwrap_or_else(|e| e.into_inner()).take());
        });
        self.rooms.insert(
            room,
            Replaying {
                task: task.abort_handle(),
                slot,
            },
        );
    }

    /// Stops the replay of `room`, if one runs; returns its slot.
    pub fn cancel(&mut self, room: &str) -> Option<Slot> {
        let replaying = self.rooms.remove(room)?;
        replaying.task.abort();
        let slot = replaying.take_slot();
        if slot.is_some() {
            metrics::counter!("chatmesh_replays_cancelled_total").increment(1);
        }
        slot
    }

    /// Stops every replay (the session ended).
    pub fn cancel_all(&mut self) {
        let rooms: Vec<Arc<str>> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.cancel(&room);
        }
    }

    /// Replays still running for rooms other than `room` (ended ones are forgotten).
    fn others(&mut self, room: &str) -> usize {
        self.rooms.retain(|r| !r.task.is_finished() && r.has_slot());
        self.rooms.len() - usize::from(self.rooms.contains_key(room))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay_slots::Shares;
    use std::time::Duration;

    fn ann() -> Arc<str> {
        Arc::from("ann")
    }

    fn shares(per_user: usize, per_ip: usize) -> Shares {
        Shares { per_user, per_ip }
    }

    fn forever() -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }

    /// A session's third replay is refused while a re-join takes over its own replay's
    /// slot; a gateway with no free slot refuses after its wait; cancelling frees slots.
    #[tokio::test(start_paused = true)]
    async fn replays_are_bounded_and_replaced() {
        let gateway = ReplaySlots::new(3, shares(10, 100), Duration::from_millis(100));
        let mut a = Running::default();
        for room in ["r1", "r2"] {
            let slot = a.admit(room, 2, &gateway, &ann(), None).await.unwrap();
            a.start(Arc::from(room), slot, forever());
        }
        let refused = a.admit("r3", 2, &gateway, &ann(), None).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        let again = a.admit("r1", 2, &gateway, &ann(), None).await.unwrap();
        a.start(Arc::from("r1"), again, forever());
        assert_eq!(gateway.available(), 1);

        let mut b = Running::default();
        let slot = b.admit("r1", 2, &gateway, &ann(), None).await.unwrap();
        b.start(Arc::from("r1"), slot, forever());
        let full = b.admit("r2", 2, &gateway, &ann(), None).await.unwrap_err();
        assert_eq!(full.code, ErrorCode::Unavailable);

        assert!(a.cancel("r2").is_some());
        assert_eq!(gateway.available(), 1);
        a.cancel_all();
        assert_eq!(gateway.available(), 2);
    }

    /// One user's sessions together hold at most their share of the gateway's slots (one
    /// more is `rate_limited` at once); another user still gets one; an ended replay gives
    /// the user's share back.
    #[tokio::test(start_paused = true)]
    async fn one_user_holds_at_most_their_share() {
        let gateway = ReplaySlots::new(4, shares(2, 100), Duration::from_millis(100));
        let (mut a, mut b, mut c) = (Running::default(), Running::default(), Running::default());
        for (s, room) in [(&mut a, "r1"), (&mut b, "r2")] {
            let slot = s.admit(room, 4, &gateway, &ann(), None).await.unwrap();
            s.start(Arc::from(room), slot, forever());
        }
        let refused = c.admit("r3", 4, &gateway, &ann(), None).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        let bob: Arc<str> = Arc::from("bob");
        let slot = c.admit("r3", 4, &gateway, &bob, None).await.unwrap();
        c.start(Arc::from("r3"), slot, forever());
        assert_eq!(gateway.available(), 1);
        a.cancel_all();
        let slot = c.admit("r4", 4, &gateway, &ann(), None).await.unwrap();
        c.start(Arc::from("r4"), slot, forever());
    }

    /// A replay that ends gives its slot back by itself and no longer counts.
    #[tokio::test]
    async fn a_finished_replay_frees_its_slot() {
        let gateway = ReplaySlots::new(1, shares(10, 100), Duration::from_millis(10));
        let mut a = Running::default();
        let slot = a.admit("r1", 1, &gateway, &ann(), None).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        a.start(Arc::from("r1"), slot, async move {
            let _ = rx.await;
        });
        drop(tx);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while gateway.available() == 0 && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        let slot = a.admit("r2", 1, &gateway, &ann(), None).await.unwrap();
        drop(slot);
        assert_eq!(gateway.available(), 1);
    }

    /// One address's accounts together hold at most its share (one more is `rate_limited`
    /// at once); another address, and an uncounted one (a trusted proxy), still get one.
    #[tokio::test(start_paused = true)]
    async fn one_address_holds_at_most_its_share() {
        let gateway = ReplaySlots::new(5, shares(4, 2), Duration::from_millis(100));
        let crowd: Option<IpAddr> = Some([203, 0, 113, 9].into());
        let mut a = Running::default();
        for (room, user) in [("r1", "ann"), ("r2", "cat")] {
            let slot = a
                .admit(room, 4, &gateway, &Arc::from(user), crowd)
                .await
                .unwrap();
            a.start(Arc::from(room), slot, forever());
        }
        let eve: Arc<str> = Arc::from("eve");
        let refused = a.admit("r3", 4, &gateway, &eve, crowd).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.message.contains("address"), "{}", refused.message);
        let other = Some([203, 0, 113, 10].into());
        let slot = a.admit("r3", 4, &gateway, &eve, other).await.unwrap();
        a.start(Arc::from("r3"), slot, forever());
        let slot = a.admit("r4", 4, &gateway, &eve, None).await.unwrap();
        a.start(Arc::from("r4"), slot, forever());
        a.cancel("r1");
        let slot = a.admit("r5", 4, &gateway, &eve, crowd).await.unwrap();
        a.start(Arc::from("r5"), slot, forever());
    }
}
