//! What one batch of the store writer will write beyond its new messages: the earlier
//! messages its edits, deletes, reactions and replies change (read once, changed in
//! memory, written with the batch), the reaction records, the thread records, the file
//! references to delete, and the topics and names its room events set. The rules are [`crate::edits`] and [`crate::reactions`]; what they
//! refuse becomes a void marker.

use std::collections::{HashMap, HashSet};

use chatmesh_protocol::message::Change;
use chatmesh_protocol::moderation::RoomEvent;
use metrics::counter;
use tracing::debug;

use crate::cache::Caches;
use crate::edits;
use crate::metrics as m;
use crate::model::{Model, RoomStats, StoredMessage, UserReactions};
use crate::reactions;
use crate::store::StoreError;

/// What one batch will write: its new messages per room (with the room's stats), the
/// earlier messages its changes and replies changed, the reaction and thread records, and
/// the file references to delete.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) rooms: HashMap<String, (RoomStats, Vec<(u64, StoredMessage)>)>,
    pub(super) older: HashMap<(String, u64), StoredMessage>,
    pub(super) unrefs: Vec<(String, String, u64)>,
    pub(super) changed: HashSet<String>,
    /// The rooms and seqs whose bodies a delete erased, and the refused edits' (void).
    pub(super) erased: Vec<(String, u64)>,
    /// Reaction records loaded or changed by this batch, by (room, message seq, user).
    pub(super) marks: HashMap<(String, u64, String), UserReactions>,
    /// Messages deleted by this batch whose reaction records go.
    pub(super) wiped: Vec<(String, u64)>,
    /// Replies of this batch: (room, root, seq, sender).
    pub(super) replies: Vec<(String, u64, u64, String)>,
    /// Topics and names set by the batch's room events, the last in stream order winning.
    pub(super) texts: HashMap<(String, RoomText), Option<String>>,
}

/// A room's text that room events set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum RoomText {
    Topic,
    Name,
}

impl Pending {
    /// Notes what room event `event` of `room` sets (moderation events set nothing here:
    /// the service stored them before the event was published).
    pub(super) fn room_event(&mut self, room: &str, event: &RoomEvent) {
        let (what, text) = match event {
            RoomEvent::Topic(t) => (RoomText::Topic, t),
            RoomEvent::Name(n) => (RoomText::Name, n),
            _ => return,
        };
        self.texts.insert((room.to_owned(), what), text.clone());
    }

    /// Message `seq` of `room` as this batch will leave it, if loaded.
    fn get_mut(&mut self, room: &str, seq: u64) -> Option<&mut StoredMessage> {
        if let Some((_, new)) = self.rooms.get_mut(room) {
            if let Ok(i) = new.binary_search_by_key(&seq, |(s, _)| *s) {
                return Some(&mut new[i].1);
            }
        }
        self.older.get_mut(&(room.to_owned(), seq))
    }

    /// Loads message `seq` of `room` into the batch; false if it is not stored.
    async fn fetch(&mut self, model: &Model, room: &str, seq: u64) -> Result<bool, StoreError> {
        if self.get_mut(room, seq).is_some() {
            return Ok(true);
        }
        match model.message(room, seq).await? {
            Some(m) => {
                self.older.insert((room.to_owned(), seq), m);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Applies the edit or delete `msg` (seq `seq`) to its target, or makes `msg` a void
    /// marker when the rules refuse it (it keeps its seq, so the chain holds).
    pub(super) async fn apply(
        &mut self,
        model: &Model,
        caches: &Caches,
        room: &str,
        seq: u64,
        msg: &mut StoredMessage,
        change: Change,
    ) -> Result<(), StoreError> {
        if change.is_reaction() {
            return self.react(model, caches, room, seq, msg, change).await;
        }
        let target = change.target();
        let found = target < seq && self.fetch(model, room, target).await?;
        let author = match found.then(|| self.get_mut(room, target)).flatten() {
            Some(t) => {
                let applied = t.edits.iter().any(|e| e.seq == seq)
                    || t.deleted.as_ref().is_some_and(|d| d.seq == seq);
                if applied {
                    // Stored before a crash left the stats behind (TiKV): already applied.
                    return Ok(());
                }
                Some(t.from.clone())
            }
            None => None,
        };
        let role = match (change, &author) {
            (Change::Delete(_), Some(a)) if *a != msg.from => {
                caches.role(model, room, &msg.from).await?
            }
            _ => None,
        };
        let (files, edited) = {
            let Some(t) = found.then(|| self.get_mut(room, target)).flatten() else {
                return self.void_change(msg, room, seq, "no such message");
            };
            if let Err(e) = edits::check(Some(t), change, &msg.from, role) {
                return self.void_change(msg, room, seq, &e.message);
            }
            match change {
                Change::Edit(_) => {
                    edits::apply_edit(t, seq, msg);
                    (Vec::new(), Vec::new())
                }
                Change::Delete(_) => {
                    let files = edits::apply_delete(t, seq, msg);
                    let edited: Vec<u64> = t.edits.iter().map(|e| e.seq).collect();
                    (files, edited)
                }
                // Reactions were applied by `react` above.
                Change::React(_) | Change::Unreact(_) => (Vec::new(), Vec::new()),
            }
        };
        self.changed.insert(room.to_owned());
        if matches!(change, Change::Delete(_)) {
            self.erased.push((room.to_owned(), target));
            self.erased
                .extend(edited.iter().map(|seq| (room.to_owned(), *seq)));
            self.marks
                .retain(|(r, s, _), _| !(r == room && *s == target));
            self.wiped.push((room.to_owned(), target));
        }
        for file in files {
            self.unrefs.push((room.to_owned(), file, target));
        }
        // The edits of a deleted message held its bodies: erase those too.
        for e in edited {
            if self.fetch(model, room, e).await? {
                if let Some(m) = self.get_mut(room, e) {
                    m.body.clear();
                }
            }
        }
        Ok(())
    }

    /// Applies the reaction or removal `msg` (seq `seq`) to its target's aggregate and its
    /// sender's reaction record, or makes `msg` a void marker when the rules refuse it.
    async fn react(
        &mut self,
        model: &Model,
        caches: &Caches,
        room: &str,
        seq: u64,
        msg: &mut StoredMessage,
        change: Change,
    ) -> Result<(), StoreError> {
        let target = change.target();
        let found = target < seq && self.fetch(model, room, target).await?;
        let mark = (room.to_owned(), target, msg.from.clone());
        let loaded = self.marks.contains_key(&mark);
        if found && !loaded {
            let mine = model.user_reactions(room, target, &msg.from).await?;
            self.marks.insert(mark.clone(), mine);
        }
        let applied = self.marks.get(&mark).is_some_and(|mine| {
            mine.marks
                .iter()
                .any(|m| m.seq == seq || m.removed.as_ref().is_some_and(|r| r.seq == seq))
        });
        if applied {
            // Stored before a crash left the stats behind (TiKV): already applied.
            return Ok(());
        }
        let role = caches.role(model, room, &msg.from).await?;
        let Some(mut mine) = self.marks.remove(&mark) else {
            return Self::void(msg, room, seq, "no such message");
        };
        let applied = match found.then(|| self.get_mut(room, target)).flatten() {
            None => Err("no such message".to_owned()),
            Some(t) => match reactions::check(Some(t), change, &msg.body, &mine, role) {
                Err(e) => Err(e.message),
                Ok(()) => Ok(reactions::apply(t, &mut mine, seq, msg, change)),
            },
        };
        let refill = match applied {
            Ok(refill) => refill,
            Err(why) => {
                // A record this batch did not change is not written back.
                if loaded {
                    self.marks.insert(mark, mine);
                }
                return Self::void(msg, room, seq, &why);
            }
        };
        self.marks.insert(mark, mine);
        self.changed.insert(room.to_owned());
        if refill {
            // Bounded: a message with many reactors would cost the partition's writer a read
            // of every record on each unreaction of a listed user, which a few accounts can
            // repeat at will.
            let mut all = model
                .first_reactions_on(room, target, reactions::REFILL_READS)
                .await?;
            // This batch's records are newer than the store's.
            for (user, mine) in &mut all {
                if let Some(m) = self.marks.get(&(room.to_owned(), target, user.clone())) {
                    *mine = m.clone();
                }
            }
            if let Some(t) = self.get_mut(room, target) {
                reactions::refill(t, &msg.body, &all);
            }
        }
        Ok(())
    }

    /// Puts the reply `msg` (seq `seq`) in its thread: the root is its target's root if the
    /// target is a reply itself (else the target, or what the gateway said when the target
    /// is no longer stored), and the root's summary counts it.
    pub(super) async fn reply(
        &mut self,
        model: &Model,
        room: &str,
        seq: u64,
        msg: &mut StoredMessage,
    ) -> Result<(), StoreError> {
        let Some(to) = msg.reply_to.filter(|t| *t < seq) else {
            msg.thread_root = None;
            return Ok(());
        };
        let root = match self.fetch(model, room, to).await? {
            true => self
                .get_mut(room, to)
                .and_then(|t| t.thread_root)
                .unwrap_or(to),
            false => msg.thread_root.filter(|r| *r <= to).unwrap_or(to),
        };
        msg.thread_root = Some(root);
        if self.fetch(model, room, root).await? {
            if let Some(r) = self.get_mut(room, root) {
                let t = r.thread.get_or_insert_with(Default::default);
                // Not counted again when stored again after a crash (TiKV).
                if t.last_seq < seq {
                    t.count += 1;
                    t.last_seq = seq;
                    t.last_ts = msg.ts;
                    self.changed.insert(room.to_owned());
                }
            }
        }
        self.replies
            .push((room.to_owned(), root, seq, msg.from.clone()));
        Ok(())
    }

    /// [`Pending::void`] for a refused edit or delete, whose body (an edit's new text) is
    /// erased from the stream too: an edit that lost its race with the delete of its target
    /// would otherwise keep the text its author meant to replace the deleted one with in the
    /// stream's files, and a gap fill would still read it.
    fn void_change(
        &mut self,
        msg: &mut StoredMessage,
        room: &str,
        seq: u64,
        why: &str,
    ) -> Result<(), StoreError> {
        if !msg.body.is_empty() {
            self.erased.push((room.to_owned(), seq));
        }
        Self::void(msg, room, seq, why)
    }

    fn void(msg: &mut StoredMessage, room: &str, seq: u64, why: &str) -> Result<(), StoreError> {
        debug!(
            room,
            seq, why, "edit, delete or reaction refused when stored: a void marker"
        );
        counter!(m::CHANGES_VOID).increment(1);
        msg.void = true;
        msg.body.clear();
        Ok(())
    }
}
