//! What this gateway may have missed of the membership and account events, read back from
//! the event log ([`EVENT_LOG`], a stream the workers create that keeps `chat.mem.*` and
//! `chat.user.*` as published, for an hour).
//!
//! The events themselves arrive over core NATS; the log is read only after a possible loss
//! (a reconnect, a slow-consumer drop: [`crate::reconnects`]). For that the gateway keeps a
//! mark: a seq of the log up to which every event has reached it. Every [`LOOK`] it reads the
//! log's last seq; a seq read while no loss was counted becomes the mark at the next look if
//! still no loss was counted (events published before a look have had a whole [`LOOK`] to
//! arrive). After a loss, [`EventLog::missed`] reads the events after the mark: the (room,
//! user) pairs and the users they name are all that needs asking about again. When the log
//! cannot say (no mark yet, events trimmed past the mark, a log made anew, too many events,
//! the log not answering) it says so, and everyone is asked about as before.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::context::GetStreamError;
use chatmesh_protocol::service::MemberEvent;
use chatmesh_protocol::subjects::EVENT_LOG;

/// How often the log's last seq is read for the mark.
pub const LOOK: Duration = Duration::from_secs(2);
/// Events read back in one direct get.
const BATCH: usize = 256;
/// The most events read back after one loss; past that everyone is asked about (as many
/// questions at most as the events would have made).
pub const MAX_READ: u64 = 100_000;

/// The missed events' (room, user) pairs and users, to ask about again.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Named {
    pub members: HashSet<(String, String)>,
    pub users: HashSet<String>,
}

/// What may have been missed since the mark.
#[derive(Debug)]
pub enum Missed {
    /// The events after the mark up to `upto` (the log's last seq when read), `read` of them.
    Events { named: Named, upto: u64, read: u64 },
    /// Not known: ask about everyone. `why`: `no_mark` (none yet), `remade` (the log's last
    /// seq is below the mark), `trimmed` (the missed events are gone), `too_many` (more than
    /// [`MAX_READ`]), `unreadable` (the log did not answer). `upto` is the log's last seq
    /// before, if it answered: once everyone has been asked about, every event up to it is
    /// accounted for.
    Unknown {
        why: &'static str,
        upto: Option<u64>,
    },
}

/// The mark, and the seq that may become it.
#[derive(Debug)]
struct Marks {
    /// Every event up to this seq has reached this gateway (live or read back).
    handled: Option<u64>,
    /// A last seq read while the count of losses was `.1`.
    candidate: Option<(u64, u64)>,
    /// The count of losses the last catch-up ran for: no mark moves while a later loss has
    /// not been caught up (the events it lost are not read yet).
    caught_up: u64,
}

/// The event log as this gateway reads it.
#[derive(Debug)]
pub struct EventLog {
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    timeout: Duration,
    marks: Mutex<Marks>,
}

impl EventLog {
    /// `losses`: the connection's count of losses when the gateway's state was made.
    pub fn new(
        nats: async_nats::Client,
        js: async_nats::jetstream::Context,
        timeout: Duration,
        losses: u64,
    ) -> Self {
        Self {
            nats,
            js,
            timeout,
            marks: Mutex::new(Marks {
                handled: None,
                candidate: None,
                caught_up: losses,
            }),
        }
    }

    /// The mark: every event up to it has reached this gateway. `None` until the first
    /// two looks (or after the log could not say).
    pub fn handled(&self) -> Option<u64> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner()).handled
    }

    /// Reads the log's last seq every [`LOOK`] until `drain`, moving the mark.
    pub fn spawn_looks(self: &std::sync::Arc<Self>, background: &crate::supervise::Supervisor) {
        let log = std::sync::Arc::downgrade(self);
        let stats = self.nats.statistics();
        let drain = background.drain().clone();
        background.spawn("event log looks", async move {
            let mut look = tokio::time::interval(LOOK);
            look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = drain.cancelled() => return,
                    _ = look.tick() => {}
                }
                let Some(log) = log.upgrade() else { return };
                let before = natskit::lossy::losses(&stats);
                let Ok((_, last)) = log.bounds().await else {
                    continue;
                };
                log.looked(before, natskit::lossy::losses(&stats), last);
            }
        });
    }

    /// A look read `last` between counts of losses `before` and `after`.
    fn looked(&self, before: u64, after: u64, last: u64) {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        if before != after || marks.caught_up != before {
            marks.candidate = None;
            return;
        }
        if let Some((seq, at)) = marks.candidate {
            if at == before {
                marks.handled = Some(marks.handled.map_or(seq, |h| h.max(seq)));
            }
        }
        marks.candidate = Some((last, before));
    }

    /// Every event up to `upto` is accounted for by the catch-up that ran for `losses`.
    pub fn caught_up(&self, upto: u64, losses: u64) {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        marks.handled = Some(upto);
        marks.candidate = None;
        marks.caught_up = marks.caught_up.max(losses);
    }

    /// Everyone was asked about after the losses counted up to `losses`, but the log did
    /// not answer: there is no mark until the next looks make one.
    pub fn lost_mark(&self, losses: u64) {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        marks.handled = None;
        marks.candidate = None;
        marks.caught_up = marks.caught_up.max(losses);
    }

    /// The log's first and last seq (asked of the stream's leader).
    async fn bounds(&self) -> Result<(u64, u64), GetStreamError> {
        let stream = self.js.get_stream(EVENT_LOG).await?;
        let state = &stream.cached_info().state;
        Ok((state.first_sequence, state.last_sequence))
    }

    /// What may have been missed since the mark (see the module's docs).
    pub async fn missed(&self) -> Missed {
        let Ok((first, last)) = self.bounds().await else {
            return Missed::Unknown {
                why: "unreadable",
                upto: None,
            };
        };
        let unknown = |why| Missed::Unknown {
            why,
            upto: Some(last),
        };
        let Some(handled) = self.handled() else {
            return unknown("no_mark");
        };
        if last < handled {
            return unknown("remade");
        }
        if first > handled + 1 {
            return unknown("trimmed");
        }
        if last - handled > MAX_READ {
            return unknown("too_many");
        }
        let mut named = Named::default();
        let mut from = handled + 1;
        while from <= last {
            let ask = natskit::Batch::Next {
                subject: ">",
                from,
                batch: BATCH,
            };
            let Ok(batch) = natskit::direct_batch(&self.nats, EVENT_LOG, ask, self.timeout).await
            else {
                return unknown("unreadable");
            };
            // The log only loses events from its front (age, size): a first event past
            // `from` means those before it are gone.
            if batch.first().is_none_or(|e| e.seq != from) {
                return unknown("trimmed");
            }
            for entry in batch.into_iter().take_while(|e| e.seq <= last) {
                from = entry.seq + 1;
                named.add(&entry.subject, &entry.payload);
            }
        }
        Missed::Events {
            named,
            upto: last,
            read: last - handled,
        }
    }
}

impl Named {
    /// Takes the (room, user) or user an event on `subject` names.
    pub(crate) fn add(&mut self, subject: &str, payload: &[u8]) {
        if subject.starts_with("chat.mem.") {
            match serde_json::from_slice::<MemberEvent>(payload) {
                Ok(ev) => {
                    self.members.insert((ev.room, ev.user));
                }
                Err(_) => tracing::warn!(subject, "malformed membership event in the log"),
            }
        } else if let Some(user) = subject.strip_prefix("chat.user.") {
            self.users.insert(user.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(log: &EventLog) -> (Option<u64>, Option<(u64, u64)>) {
        let m = log.marks.lock().unwrap();
        (m.handled, m.candidate)
    }

    async fn log() -> EventLog {
        // Never connected: only the marks are used.
        let nats = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("127.0.0.1:1")
            .await
            .unwrap();
        let js = async_nats::jetstream::new(nats.clone());
        EventLog::new(nats, js, Duration::from_secs(1), 1)
    }

    /// A seq becomes the mark one look after it was read, and only if no loss was counted
    /// in between or while it was read.
    #[tokio::test]
    async fn the_mark_moves_only_across_looks_without_a_loss() {
        let log = log().await;
        log.looked(1, 1, 10);
        assert_eq!(marks(&log), (None, Some((10, 1))));
        log.looked(1, 1, 14);
        assert_eq!(marks(&log), (Some(10), Some((14, 1))));
        // A loss during a look: nothing moves, the candidate is dropped.
        log.looked(1, 2, 20);
        assert_eq!(marks(&log), (Some(10), None));
        // After the loss, before its catch-up: nothing moves.
        log.looked(2, 2, 21);
        log.looked(2, 2, 22);
        assert_eq!(marks(&log), (Some(10), None));
        // The catch-up for that loss read up to 23.
        log.caught_up(23, 2);
        log.looked(2, 2, 25);
        assert_eq!(marks(&log), (Some(23), Some((25, 2))));
        log.looked(2, 2, 26);
        assert_eq!(marks(&log).0, Some(25));
        // Another loss caught up by asking everyone while the log did not answer: no mark,
        // and the looks make a new one.
        log.lost_mark(3);
        assert_eq!(marks(&log), (None, None));
        log.looked(3, 3, 30);
        log.looked(3, 3, 31);
        assert_eq!(marks(&log), (Some(30), Some((31, 3))));
    }

    /// Membership events name their pair, account events their user; junk names nothing.
    #[test]
    fn events_name_what_to_ask_about() {
        let mut named = Named::default();
        let ev = MemberEvent {
            room: "hall".into(),
            user: "bob".into(),
            role: None,
            refresh: false,
        };
        named.add("chat.mem.hall", &serde_json::to_vec(&ev).unwrap());
        named.add("chat.mem.hall", b"junk");
        named.add("chat.user.ann", b"{}");
        assert!(named
            .members
            .contains(&("hall".to_owned(), "bob".to_owned())));
        assert_eq!(named.members.len(), 1);
        assert_eq!(named.users, HashSet::from(["ann".to_owned()]));
    }
}
