//! The collapse window: what is waiting to be pushed to each user. The first message for a
//! user opens a [`Pending`] notification due `delay` later; messages for that user until
//! then join it (a count per room, the latest sender and body), so a burst becomes one push.
//!
//! Every message is held unacked ([`Held`]) by each notification it joined; the stream
//! message is acked once the last of them is claimed ([`release`]), so a notifier that dies
//! mid-window has its messages redelivered and nothing is lost. Due times only grow with
//! arrival, so a FIFO of (due, user) is the timer wheel.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
}

/// New messages of one room for one user.
#[derive(Debug, Clone)]
pub struct RoomPending {
    pub room: String,
    pub kind: RoomKind,
    pub count: u32,
    /// The first `MAX_SEQS` seqs, in order.
    pub seqs: Vec<u64>,
    pub last_seq: u64,
    pub last_from: String,
    pub last_body: String,
    /// When the latest message was stored (the rooms of a push are ordered by it).
    pub last_stored: SystemTime,
}

impl RoomPending {
    /// How many of these messages are above `mark` (already pushed up to it). Messages past
    /// the first `MAX_SEQS` are all counted as above.
    pub fn count_after(&self, mark: u64) -> u32 {
        if mark >= self.last_seq {
            return 0;
        }
        let kept_above = self.seqs.iter().filter(|s| **s > mark).count() as u32;
        kept_above + self.count.saturating_sub(self.seqs.len() as u32)
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
                    r.seqs.push(m.seq);
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
                seqs: vec![m.seq],
                last_seq: m.seq,
                last_from: m.from.clone(),
                last_body: m.body.clone(),
                last_stored: m.stored,
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
}

impl Window {
    pub fn new(delay: Duration, max_users: usize) -> Self {
        Self {
            delay,
            max_users,
            pending: HashMap::new(),
            due: VecDeque::new(),
        }
    }

    /// Adds `m` to `user`'s notification (opening one due `delay` from now). False when
    /// the table is full and `user` has none open: the message is not pushed to them.
    pub fn add(&mut self, user: &str, m: &Incoming, held: &Held) -> bool {
        if let Some(p) = self.pending.get_mut(user) {
            p.add(m, held.clone());
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
        self.pending.drain().flat_map(|(_, p)| p.held).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(seqs: &[u64], count: u32) -> RoomPending {
        RoomPending {
            room: "r".into(),
            kind: RoomKind::Private,
            count,
            seqs: seqs.to_vec(),
            last_seq: seqs.last().copied().unwrap_or(0) + u64::from(count) - seqs.len() as u64,
            last_from: "a".into(),
            last_body: "b".into(),
            last_stored: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn counts_above_a_mark() {
        let r = room(&[5, 7, 9], 3);
        assert_eq!(r.count_after(0), 3);
        assert_eq!(r.count_after(5), 2);
        assert_eq!(r.count_after(9), 0);
        assert_eq!(r.count_after(100), 0);
        // Two more messages than seqs kept: counted as above any mark below the last.
        let r = room(&[5, 7], 4);
        assert_eq!(r.count_after(7), 2);
    }
}
