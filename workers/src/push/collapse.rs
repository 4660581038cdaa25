//! The collapse window: what is waiting to be pushed to each user. The first message for a
//! user opens a [`Pending`] notification due `delay` later; messages for that user until
//! then join it (a count per room, the latest sender and body), so a burst becomes one push.
//!
//! Every message is held unacked ([`Held`]) by each notification it joined; the stream
//! message is acked once the last of them is claimed ([`release`]), so a notifier that dies
//! mid-window has its messages redelivered and nothing is lost. Due times only grow with
//! arrival, so a FIFO of (due, user) is the timer wheel.
//!
//! A delete or an edit read while its target waits in windows changes them
//! ([`Window::revise`]): a deleted message leaves the count, and its preview the push (a push
//! must not show what its sender took back); an edited latest message is previewed as
//! edited. The windows holding a room are indexed by room for it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::Message;
use chatmesh_protocol::service::RoomKind;
use tokio::time::Instant;

/// A stream message held until every notification that carries it is claimed.
pub type Held = Arc<Message>;

/// Acks `held` if this was its last holder.
pub async fn release(held: Held) {
    if let Some(msg) = Arc::into_inner(held) {
        if let Err(e) = msg.ack().await {
            tracing::warn!(error = %chatmesh_protocol::error::Chain(&*e), "acking a pushed message failed; it will be redelivered and skipped");
        }
    }
}

/// Hands `held` back for redelivery now (rather than after `ack_wait`) if this was its
/// last holder: a stopping notifier's open windows.
pub async fn give_back(held: Held) {
    if let Some(msg) = Arc::into_inner(held) {
        let nak = async_nats::jetstream::AckKind::Nak(None);
        if let Err(e) = msg.ack_with(nak).await {
            tracing::debug!(error = %chatmesh_protocol::error::Chain(&*e), "nak failed; redelivered after ack_wait");
        }
    }
}

/// Seqs kept per room and notification (beyond: counted only).
const MAX_SEQS: usize = 64;

/// One message, as the notifier needs it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub room: String,
    pub kind: RoomKind,
    pub seq: u64,
    pub from: String,
    pub body: String,
    /// Who it mentions (for `mentions_only`).
    pub mentions: chatmesh_protocol::mentions::Mentions,
    /// When the stream stored it.
    pub stored: SystemTime,
    /// Its room is stored by another region's workers (membership is asked of them).
    pub remote: bool,
}

/// A delete or an edit of message `target` of `room`, read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub room: String,
    pub target: u64,
    /// The edited body's preview; `None` for a delete.
    pub body: Option<String>,
}

/// How far the stream's clock (a message's stored time) and the worker's (a target's
/// registration time) may disagree.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// The stored time from which messages are pushed to a target registered at `created` (ms
/// since the Unix epoch): each target only what came after it was registered, with
/// [`CLOCK_SLACK`] for the two clocks.
pub fn pushed_since(created: u64) -> SystemTime {
    let at = UNIX_EPOCH + Duration::from_millis(created);
    at.checked_sub(CLOCK_SLACK).unwrap_or(UNIX_EPOCH)
}

/// New messages of one room for one user.
#[derive(Debug, Clone)]
pub struct RoomPending {
    pub room: String,
    pub kind: RoomKind,
    pub count: u32,
    /// The first `MAX_SEQS` seqs, in order, each with when it was stored.
    pub seqs: Vec<(u64, SystemTime)>,
    pub last_seq: u64,
    pub last_from: String,
    pub last_body: String,
    /// When the latest message was stored (the rooms of a push are ordered by it).
    pub last_stored: SystemTime,
    /// Stored by another region's workers.
    pub remote: bool,
}

impl RoomPending {
    /// How many of these messages are above `mark` (already pushed up to it) and were
    /// stored at or after `since` (a target is pushed only what came after it was
    /// registered). Messages past the first `MAX_SEQS` are all counted when the latest was
    /// stored since: a room's messages are stored in seq order, so none is when it was not.
    pub fn count_after(&self, mark: u64, since: SystemTime) -> u32 {
        if mark >= self.last_seq || self.last_stored < since {
            return 0;
        }
        let kept_above = self
            .seqs
            .iter()
            .filter(|(seq, stored)| *seq > mark && *stored >= since)
            .count() as u32;
        kept_above + self.count.saturating_sub(self.seqs.len() as u32)
    }

    /// Applies `r` (of this room); false once no message is left to push.
    fn revise(&mut self, r: &Revision) -> bool {
        let kept = self.seqs.iter().position(|(seq, _)| *seq == r.target);
        // Past the first `MAX_SEQS` only the latest is known to be here.
        if kept.is_none() && r.target != self.last_seq {
            return true;
        }
        match &r.body {
            Some(body) if r.target == self.last_seq => self.last_body.clone_from(body),
            Some(_) => {}
            None => {
                if let Some(i) = kept {
                    self.seqs.remove(i);
                }
                self.count = self.count.saturating_sub(1);
                if r.target == self.last_seq {
                    // What came before it is not kept: the push says how many, not what.
                    self.last_from.clear();
                    self.last_body.clear();
                }
            }
        }
        self.count > 0
    }
}

/// A notification waiting for its window to close.
#[derive(Debug)]
pub struct Pending {
    pub user: String,
    pub rooms: Vec<RoomPending>,
    /// When the first message was stored (latency is measured from it).
    pub first_stored: SystemTime,
    pub held: Vec<Held>,
}

impl Pending {
    fn add(&mut self, m: &Incoming, held: Held) {
        self.held.push(held);
        match self.rooms.iter_mut().find(|r| r.room == m.room) {
            // A redelivery of a message already here: hold it (to ack it), count it once.
            Some(r) if m.seq <= r.last_seq => {}
            Some(r) => {
                r.count += 1;
                if r.seqs.len() < MAX_SEQS {
                    r.seqs.push((m.seq, m.stored));
                }
                r.last_seq = m.seq;
                r.last_from.clone_from(&m.from);
                r.last_body.clone_from(&m.body);
                r.last_stored = m.stored;
            }
            None => self.rooms.push(RoomPending {
                room: m.room.clone(),
                kind: m.kind,
                count: 1,
                seqs: vec![(m.seq, m.stored)],
                last_seq: m.seq,
                last_from: m.from.clone(),
                last_body: m.body.clone(),
                last_stored: m.stored,
                remote: m.remote,
            }),
        }
    }
}

/// Every pending notification, by user.
#[derive(Debug)]
pub struct Window {
    delay: Duration,
    max_users: usize,
    pending: HashMap<String, Pending>,
    due: VecDeque<(Instant, String)>,
    /// The users whose pending notification holds each room.
    by_room: HashMap<String, HashSet<String>>,
}

impl Window {
    pub fn new(delay: Duration, max_users: usize) -> Self {
        Self {
            delay,
            max_users,
            pending: HashMap::new(),
            due: VecDeque::new(),
            by_room: HashMap::new(),
        }
    }

    /// Adds `m` to `user`'s notification (opening one due `delay` from now). False when
    /// the table is full and `user` has none open: the message is not pushed to them.
    pub fn add(&mut self, user: &str, m: &Incoming, held: &Held) -> bool {
        if let Some(p) = self.pending.get_mut(user) {
            p.add(m, held.clone());
            self.index(&m.room, user);
            return true;
        }
        if self.pending.len() >= self.max_users {
            return false;
        }
        let mut p = Pending {
            user: user.to_owned(),
            rooms: Vec::new(),
            first_stored: m.stored,
            held: Vec::new(),
        };
        p.add(m, held.clone());
        self.pending.insert(user.to_owned(), p);
        self.index(&m.room, user);
        self.due
            .push_back((Instant::now() + self.delay, user.to_owned()));
        true
    }

    /// When the next notification is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.front().map(|(at, _)| *at)
    }

    /// A notification whose window has closed, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Pending> {
        while let Some((at, _)) = self.due.front() {
            if *at > now {
                return None;
            }
            let (_, user) = self.due.pop_front()?;
            if let Some(p) = self.pending.remove(&user) {
                for r in &p.rooms {
                    self.unindex(&r.room, &user);
                }
                return Some(p);
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Empties the window, returning every held message once per notification.
    pub fn drain(&mut self) -> Vec<Held> {
        self.due.clear();
        self.by_room.clear();
        self.pending.drain().flat_map(|(_, p)| p.held).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Applies a delete or an edit to every notification holding its room; answers how many
    /// lost the room (nothing of it left to push). A notification left without rooms stays
    /// until it is due, holding its messages (it pushes nothing then).
    pub fn revise(&mut self, r: &Revision) -> usize {
        let Some(users) = self.by_room.get(&r.room) else {
            return 0;
        };
        let mut emptied = Vec::new();
        for user in users {
            let Some(p) = self.pending.get_mut(user) else {
                continue;
            };
            if let Some(i) = p.rooms.iter().position(|x| x.room == r.room) {
                if !p.rooms[i].revise(r) {
                    p.rooms.remove(i);
                    emptied.push(user.clone());
                }
            }
        }
        for user in &emptied {
            self.unindex(&r.room, user);
        }
        emptied.len()
    }

    /// Notes that `user`'s notification holds `room` (nothing allocated when it did already:
    /// every message of a room a user waits on comes here).
    fn index(&mut self, room: &str, user: &str) {
        match self.by_room.get_mut(room) {
            Some(users) if users.contains(user) => {}
            Some(users) => {
                users.insert(user.to_owned());
            }
            None => {
                self.by_room
                    .insert(room.to_owned(), HashSet::from([user.to_owned()]));
            }
        }
    }

    fn unindex(&mut self, room: &str, user: &str) {
        if let Some(users) = self.by_room.get_mut(room) {
            users.remove(user);
            if users.is_empty() {
                self.by_room.remove(room);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Message `seq` was stored `seq` seconds after the epoch.
    fn stored(seq: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seq)
    }

    fn room(seqs: &[u64], count: u32) -> RoomPending {
        let last_seq = seqs.last().copied().unwrap_or(0) + u64::from(count) - seqs.len() as u64;
        RoomPending {
            room: "r".into(),
            kind: RoomKind::Private,
            count,
            seqs: seqs.iter().map(|s| (*s, stored(*s))).collect(),
            last_seq,
            last_from: "a".into(),
            last_body: "b".into(),
            last_stored: stored(last_seq),
            remote: false,
        }
    }

    fn seqs(r: &RoomPending) -> Vec<u64> {
        r.seqs.iter().map(|(seq, _)| *seq).collect()
    }

    const EPOCH: SystemTime = SystemTime::UNIX_EPOCH;

    #[test]
    fn counts_above_a_mark() {
        let r = room(&[5, 7, 9], 3);
        assert_eq!(r.count_after(0, EPOCH), 3);
        assert_eq!(r.count_after(5, EPOCH), 2);
        assert_eq!(r.count_after(9, EPOCH), 0);
        assert_eq!(r.count_after(100, EPOCH), 0);
        // Two more messages than seqs kept: counted as above any mark below the last.
        let r = room(&[5, 7], 4);
        assert_eq!(r.count_after(7, EPOCH), 2);
    }

    /// Only what was stored at or after a target's registration counts for it; past the
    /// kept seqs, whether the latest was.
    #[test]
    fn counts_only_what_was_stored_since() {
        let r = room(&[5, 7, 9], 3);
        assert_eq!(r.count_after(0, stored(6)), 2);
        assert_eq!(r.count_after(0, stored(9)), 1);
        assert_eq!(r.count_after(0, stored(10)), 0, "all stored before");
        assert_eq!(r.count_after(7, stored(6)), 1);
        let r = room(&[5, 7], 4);
        assert_eq!(r.count_after(0, stored(6)), 3);
        assert_eq!(r.count_after(0, stored(10)), 0, "the latest, 9, before too");
    }

    fn revision(target: u64, body: Option<&str>) -> Revision {
        Revision {
            room: "r".into(),
            target,
            body: body.map(str::to_owned),
        }
    }

    #[test]
    fn deletes_and_edits_change_what_waits() {
        // An edit of the latest is previewed; of an earlier one, changes nothing.
        let mut r = room(&[5, 7, 9], 3);
        assert!(r.revise(&revision(9, Some("fixed"))));
        assert_eq!(r.last_body, "fixed");
        assert!(r.revise(&revision(5, Some("older"))));
        assert_eq!((r.last_body.as_str(), r.count), ("fixed", 3));
        // A delete of an earlier one leaves the count; of the latest, its preview too.
        assert!(r.revise(&revision(7, None)));
        assert_eq!((r.count, seqs(&r)), (2, vec![5, 9]));
        assert_eq!(r.count_after(5, EPOCH), 1);
        assert!(r.revise(&revision(9, None)));
        assert_eq!(
            (r.count, r.last_body.as_str(), r.last_from.as_str()),
            (1, "", "")
        );
        // Not in this window: nothing.
        assert!(r.revise(&revision(3, None)));
        assert_eq!(r.count, 1);
        assert!(!r.revise(&revision(5, None)), "nothing left to push");
        // Past the kept seqs only the latest is known to be here.
        let mut r = room(&[5, 7], 4);
        assert!(r.revise(&revision(8, None)));
        assert_eq!(r.count, 4);
        assert!(r.revise(&revision(9, None)));
        assert_eq!((r.count, r.count_after(7, EPOCH)), (3, 1));
    }
}
