//! Read receipts, coalesced: a client may send `read` as often as it likes (every message
//! it scrolls past), but each (room, user) costs at most one cursor write in the store and
//! one `receipt` to the room's members per interval on this gateway. The first `read` of an
//! interval goes out at once; later ones only replace the pending seq, and the pending one
//! goes out when the interval ends, so members always end up seeing the reader's latest
//! `read`. The cursor is written only when a read moves it forward; a repeat of what was
//! just announced costs nothing.

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
    /// Highest seq written to the cursor (it only moves forward).
    cursor: u64,
    /// The seq of the last receipt announced.
    announced: u64,
    /// When it was announced.
    at: Instant,
    /// The latest seq waiting for the interval to end.
    pending: Option<u64>,
    /// The latest read was of a user who may not reach the room's members (blocked in a
    /// DM): its cursor is written, no receipt goes out.
    quiet: bool,
}

impl Entry {
    /// Marks `seq` announced at `now`; whether it moves the cursor (and must be written).
    fn announce(&mut self, seq: u64, now: Instant) -> bool {
        let forward = seq > self.cursor;
        self.cursor = self.cursor.max(seq);
        self.announced = seq;
        self.at = now;
        self.pending = None;
        forward
    }
}

/// What to do with one `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Announce it now, and write the cursor if `persist` (the read moves it forward).
    Now { persist: bool },
    /// Held; the flusher sends the latest held seq when the interval ends.
    Later,
    /// The same seq was just announced or is already held: nothing to do.
    Repeat,
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

    /// Decides about `user`'s `read` of `seq` in `room` at `now`; a `quiet` read moves the
    /// cursor as usual, and the flusher announces nothing for it.
    pub fn offer(&self, room: &str, user: &str, seq: u64, quiet: bool, now: Instant) -> Decision {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key: Key = (Arc::from(room), Arc::from(user));
        let Some(entry) = entries.get_mut(&key) else {
            entries.insert(
                key,
                Entry {
                    cursor: seq,
                    announced: seq,
                    at: now,
                    pending: None,
                    quiet,
                },
            );
            return Decision::Now { persist: true };
        };
        entry.quiet = quiet;
        match entry.pending {
            Some(held) if held == seq => return Decision::Repeat,
            None if entry.announced == seq => return Decision::Repeat,
            None if now.duration_since(entry.at) >= self.interval => {
                let persist = entry.announce(seq, now);
                return Decision::Now { persist };
            }
            _ => {}
        }
        entry.pending = Some(seq);
        Decision::Later
    }

    /// The held reads whose interval has ended, marked announced, each with whether it
    /// moves the cursor; forgets entries idle for longer than an interval (memory stays
    /// proportional to active readers).
    fn due(&self, now: Instant) -> Vec<(Key, u64, bool, bool)> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        entries.retain(|key, entry| {
            let elapsed = now.duration_since(entry.at) >= self.interval;
            match entry.pending {
                Some(seq) if elapsed => {
                    let persist = entry.announce(seq, now);
                    out.push((key.clone(), seq, persist, entry.quiet));
                    true
                }
                Some(_) => true,
                None => !elapsed,
            }
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
                for ((room, user), seq, persist, quiet) in this.due(Instant::now()) {
                    if persist {
                        let req = SetCursorRequest {
                            room: room.to_string(),
                            user: user.to_string(),
                            seq,
                        };
                        services.notify::<SetCursor>(&room, &req).await;
                    }
                    if quiet {
                        continue;
                    }
                    let _ = publish(&nats, &room, &user, receipt(&room, &user, seq)).await;
                }
            }
        });
    }
}

/// The `receipt` frame of `user` at `seq` in `room`.
pub fn receipt(room: &str, user: &str, seq: u64) -> String {
    ServerFrame::Receipt {
        room: room.into(),
        user: user.into(),
        seq,
    }
    .encode()
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

    const NOW: Decision = Decision::Now { persist: true };

    /// 180 reads in a burst cost one immediate send and one held send of the latest seq; a
    /// repeat costs nothing; after the interval a read goes out at once.
    #[test]
    fn a_burst_of_reads_becomes_two_sends() {
        let r = Receipts::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(r.offer("room", "ann", 1, false, t0), NOW);
        assert_eq!(r.offer("room", "ann", 1, false, t0), Decision::Repeat);
        let held = (2..=180)
            .filter(|seq| r.offer("room", "ann", *seq, false, t0) == Decision::Later)
            .count();
        assert_eq!(held, 179);
        assert_eq!(r.offer("room", "ann", 180, false, t0), Decision::Repeat);
        assert!(r.due(t0 + Duration::from_millis(500)).is_empty());
        let due = r.due(t0 + Duration::from_secs(1));
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].1, due[0].2), (180, true));
        assert_eq!(
            r.offer("room", "ann", 180, false, t0 + Duration::from_secs(1)),
            Decision::Repeat
        );
        assert_eq!(
            r.offer("room", "ann", 181, false, t0 + Duration::from_secs(3)),
            NOW
        );
        assert_eq!(r.offer("room", "bob", 1, false, t0), NOW, "per user");
        // Idle entries are forgotten.
        r.due(t0 + Duration::from_secs(10));
        assert!(r.entries.lock().unwrap().is_empty());
    }

    /// A quiet read held for the interval's end is written when due and marked quiet (the
    /// flusher announces nothing for it).
    #[test]
    fn a_held_quiet_read_stays_quiet() {
        let r = Receipts::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(r.offer("room", "ann", 1, false, t0), NOW);
        assert_eq!(r.offer("room", "ann", 5, true, t0), Decision::Later);
        let due = r.due(t0 + Duration::from_secs(1));
        assert_eq!((due[0].1, due[0].2, due[0].3), (5, true, true));
    }

    /// A read below the cursor is announced (coalesced like any read) but never written.
    #[test]
    fn a_backward_read_is_announced_not_written() {
        let r = Receipts::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(r.offer("room", "ann", 10, false, t0), NOW);
        assert_eq!(r.offer("room", "ann", 4, false, t0), Decision::Later);
        let due = r.due(t0 + Duration::from_secs(1));
        assert_eq!((due[0].1, due[0].2), (4, false));
        let later = t0 + Duration::from_secs(3);
        assert_eq!(
            r.offer("room", "ann", 7, false, later),
            Decision::Now { persist: false }
        );
        assert_eq!(
            r.offer("room", "ann", 11, false, later + Duration::from_secs(1)),
            NOW
        );
    }
}
