//! Read receipts, coalesced: a client may send `read` as often as it likes (every message
//! it scrolls past), but each (room, user) costs at most one cursor write in the store and
//! one `receipt` to the room's members per interval on this gateway. The first `read` of an
//! interval goes out at once; later ones only raise the pending seq, and the latest pending
//! one goes out when the interval ends, so members always end up seeing the final cursor.
//! A `read` that does not move the cursor forward costs nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_protocol::frames::ServerFrame;
use chatmesh_protocol::service::{SetCursor, SetCursorRequest};
use chatmesh_protocol::subjects::evt_subject;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fanout::EVENT_USER;
use crate::services::Services;

type Key = (Arc<str>, Arc<str>);

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Highest seq sent (persisted and announced).
    sent: u64,
    /// When it was sent.
    at: Instant,
    /// Highest seq waiting for the interval to end (0: none).
    pending: u64,
}

/// What to do with one `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Persist and announce it now.
    Now,
    /// Held; the flusher sends the latest held seq when the interval ends.
    Later,
    /// Not above what was already sent or held: nothing to do.
    Stale,
}

/// The receipt coalescer of one gateway.
#[derive(Debug, Clone)]
pub struct Receipts {
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    interval: Duration,
}

impl Receipts {
    pub fn new(interval: Duration) -> Self {
        Self {
            entries: Arc::default(),
            interval,
        }
    }

    /// Decides about `user`'s `read` of `seq` in `room` at `now`.
    pub fn offer(&self, room: &str, user: &str, seq: u64, now: Instant) -> Decision {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key: Key = (Arc::from(room), Arc::from(user));
        let Some(entry) = entries.get_mut(&key) else {
            entries.insert(
                key,
                Entry {
                    sent: seq,
                    at: now,
                    pending: 0,
                },
            );
            return Decision::Now;
        };
        if seq <= entry.sent.max(entry.pending) {
            return Decision::Stale;
        }
        if now.duration_since(entry.at) >= self.interval && entry.pending == 0 {
            entry.sent = seq;
            entry.at = now;
            return Decision::Now;
        }
        entry.pending = seq;
        Decision::Later
    }

    /// The held reads whose interval has ended, marked sent; forgets entries idle for
    /// longer than an interval (memory stays proportional to active readers).
    fn due(&self, now: Instant) -> Vec<(Key, u64)> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        entries.retain(|key, entry| {
            let elapsed = now.duration_since(entry.at) >= self.interval;
            if entry.pending > 0 && elapsed {
                out.push((key.clone(), entry.pending));
                entry.sent = entry.pending;
                entry.pending = 0;
                entry.at = now;
                return true;
            }
            entry.pending > 0 || !elapsed
        });
        out
    }

    /// Sends held reads as their intervals end, until `stop`.
    pub fn spawn_flusher(
        &self,
        nats: async_nats::Client,
        services: Services,
        stop: CancellationToken,
    ) {
        let this = self.clone();
        let tick = (self.interval / 4).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => {}
                }
                for ((room, user), seq) in this.due(Instant::now()) {
                    let req = SetCursorRequest {
                        room: room.to_string(),
                        user: user.to_string(),
                        seq,
                    };
                    services.notify::<SetCursor>(&room, &req).await;
                    let _ = publish(&nats, &room, &user, receipt(&room, &user, seq)).await;
                }
            }
        });
    }
}

/// The `receipt` frame of `user` at `seq` in `room`.
pub fn receipt(room: &str, user: &str, seq: u64) -> String {
    ServerFrame::Receipt { room, user, seq }.encode()
}

/// Publishes an ephemeral event frame of `user` to every gateway with members in `room`.
pub async fn publish(
    nats: &async_nats::Client,
    room: &str,
    user: &str,
    frame: String,
) -> Result<(), async_nats::PublishError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(EVENT_USER, user);
    nats.publish_with_headers(evt_subject(room), headers, frame.into())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 180 reads in a burst cost one immediate send and one held send of the latest seq; a
    /// read below what was sent costs nothing; after the interval a read goes out at once.
    #[test]
    fn a_burst_of_reads_becomes_two_sends() {
        let r = Receipts::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(r.offer("room", "ann", 1, t0), Decision::Now);
        let held = (2..=180)
            .filter(|seq| r.offer("room", "ann", *seq, t0) == Decision::Later)
            .count();
        assert_eq!(held, 179);
        assert_eq!(r.offer("room", "ann", 5, t0), Decision::Stale);
        assert!(r.due(t0 + Duration::from_millis(500)).is_empty());
        let due = r.due(t0 + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1, 180);
        assert_eq!(
            r.offer("room", "ann", 180, t0 + Duration::from_secs(1)),
            Decision::Stale
        );
        assert_eq!(
            r.offer("room", "ann", 181, t0 + Duration::from_secs(3)),
            Decision::Now
        );
        assert_eq!(r.offer("room", "bob", 1, t0), Decision::Now, "per user");
        // Idle entries are forgotten.
        r.due(t0 + Duration::from_secs(10));
        assert!(r.entries.lock().unwrap().is_empty());
    }
}
