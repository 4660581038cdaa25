//! The store side of the store writer: one batch of deliveries becomes one store write.
//! Each message is chained to its room's previous message; messages, room stats and the
//! partition checkpoint go in one atomic batch (in a running worker, merged with the other
//! partitions' batches of the same window into one store write); then the caches are told.
//!
//! Deliveries must come in stream order, so a room's messages are chained in seq order.
//! Anything at or below the checkpoint (or at or below a seq already seen in the batch, or
//! the room's last stored seq) is a redelivery and is skipped: the store has it already.
//! This is the only writer of messages, room stats, checkpoints and the caches of those.
//!
//! An edit or a delete also rewrites its target (an earlier message, maybe of the same
//! batch) in the same store write, after checking the rules again ([`crate::edits`]); a
//! refused one is stored as a void marker. A reaction does the same to its target's
//! aggregate and to its sender's reaction record ([`crate::reactions`]); a reply is recorded
//! in its root's thread and counted on the root.

use chatmesh_protocol::mentions::Mentions;
use std::collections::{HashMap, HashSet};

use chatmesh_protocol::message::{Change, Message, Payload};
use metrics::{counter, histogram};
use tracing::{debug, warn};

use crate::cache::Caches;
use crate::edits;
use crate::metrics as m;
use crate::model::{Model, RoomStats, StoredMessage, UserReactions};
use crate::reactions;
use crate::store::{StoreError, WriteBatch};

/// One message delivered from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its stream sequence: the message's `seq`.
    pub seq: u64,
    /// Its room and payload, `None` if it could not be decoded (skipped, but checkpointed).
    pub message: Option<(String, Payload)>,
}

/// Stores `batch` (partition `p`'s deliveries, in stream order) and advances `checkpoint`.
/// Returns the stream seqs whose bodies a delete of this batch erased from the store (the
/// deleted messages and their edits), for the caller to erase from the stream too.
pub async fn store_batch(
    model: &Model,
    caches: &Caches,
    p: u32,
    checkpoint: &mut u64,
    batch: Vec<Delivery>,
) -> Result<Vec<u64>, StoreError> {
    let mut pending = Pending::default();
    let mut high = *checkpoint;
    let mut skipped = 0u64;
    for d in batch {
        if d.seq <= high {
            skipped += 1;
            continue;
        }
        high = d.seq;
        let Some((room, payload)) = d.message else {
            counter!(m::DECODE_ERRORS).increment(1);
            warn!(
                partition = p,
                seq = d.seq,
                "skipping an undecodable message"
            );
            continue;
        };
        if !pending.rooms.contains_key(&room) {
            let stats = caches.stats(model, &room).await?;
            pending.rooms.insert(room.clone(), (stats, Vec::new()));
        }
        let Some((stats, _)) = pending.rooms.get(&room) else {
            continue;
        };
        if d.seq <= stats.last_seq {
            skipped += 1;
            continue;
        }
        let reaction = payload.react_to.is_some() || payload.unreact_to.is_some();
        let mut stored = StoredMessage {
            prev: stats.last_seq,
            n: stats.count + 1,
            quiet: stats.quiet + u64::from(reaction),
            id: payload.id,
            from: payload.from,
            ts: payload.ts,
            body: payload.body,
            attachments: payload.attachments,
            mentions: payload.mentions,
            edit_of: payload.edit_of,
            delete_of: payload.delete_of,
            react_to: payload.react_to,
            unreact_to: payload.unreact_to,
            reply_to: payload.reply_to,
            thread_root: payload.thread_root,
            ..Default::default()
        };
        if let Some(change) = stored.change() {
            pending
                .apply(model, caches, &room, d.seq, &mut stored, change)
                .await?;
        } else if stored.reply_to.is_some() {
            pending.reply(model, &room, d.seq, &mut stored).await?;
        }
        let Some((stats, new)) = pending.rooms.get_mut(&room) else {
            continue;
        };
        *stats = RoomStats {
            last_seq: d.seq,
            count: stored.n,
            quiet: stored.quiet,
        };
        new.push((d.seq, stored));
    }
    counter!(m::SKIPPED).increment(skipped);
    if high == *checkpoint {
        return Ok(Vec::new());
    }
    let Pending {
        mut rooms,
        mut older,
        unrefs,
        changed,
        erased,
        marks,
        wiped,
        replies,
    } = pending;
    let mut write = WriteBatch::new();
    let mut fresh: HashMap<String, Vec<Message>> = HashMap::new();
    for (room, (_, new)) in &mut rooms {
        let msgs = fresh.entry(room.clone()).or_default();
        for (seq, mut stored) in new.drain(..) {
            for file in &stored.attachments {
                Model::put_file_ref(&mut write, room, &file.id, seq);
            }
            if stored.deleted.is_some() {
                stored.mentions = Mentions::default();
            } else if !stored.mentions.is_empty() {
                model
                    .put_mentions(&mut write, room, seq, &stored.from, &stored.mentions)
                    .await?;
            }
            Model::put_message(&mut write, room, seq, &stored);
            msgs.push(stored.into_message(room, seq));
        }
    }
    // Earlier messages an edit or a delete of this batch changed, and the file references
    // of deleted messages.
    for ((room, seq), stored) in &mut older {
        // A deleted message mentions nobody any more.
        if stored.deleted.is_some() && !stored.mentions.is_empty() {
            Model::delete_mentions(&mut write, room, *seq, &stored.mentions);
            stored.mentions = Mentions::default();
        }
        Model::put_message(&mut write, room, *seq, stored);
    }
    for (room, file, seq) in &unrefs {
        Model::delete_file_ref(&mut write, room, file, *seq);
    }
    for ((room, seq, user), mine) in &marks {
        Model::put_user_reactions(&mut write, room, *seq, user, mine);
    }
    // Deleted messages' reaction records (the batch's own are dropped from `marks`).
    for (room, seq) in &wiped {
        model.delete_reactions(&mut write, room, *seq).await?;
    }
    for (room, root, seq, from) in &replies {
        Model::put_reply(&mut write, room, *root, *seq, from);
    }
    // Messages first: on a backend without atomic batches (TiKV raw) a crash then leaves
    // messages above the checkpoint, never a checkpoint or stats above missing messages.
    write.barrier();
    fresh.retain(|_, new| !new.is_empty());
    let mut stored = 0usize;
    for (room, new) in &fresh {
        if let Some((stats, _)) = rooms.get(room) {
            Model::put_stats(&mut write, room, stats);
        }
        stored += new.len();
    }
    Model::put_checkpoint(&mut write, p, high);
    // A running worker's model group-commits: this waits for the window's one store write
    // (timed there, `store::group`).
    model.write(write).await?;
    histogram!(m::BATCH_SIZE).record(stored as f64);
    counter!(m::BATCHES).increment(1);
    counter!(m::STORED).increment(stored as u64);
    *checkpoint = high;
    for (room, new) in &fresh {
        if let Some((stats, _)) = rooms.get(room) {
            caches.stored(room, *stats, new).await;
        }
        if changed.contains(room) {
            // An older message changed: the recent page may hold its old version.
            caches.trimmed(room).await;
        }
    }
    Ok(erased)
}

/// What one batch will write: its new messages per room (with the room's stats), the
/// earlier messages its edits and deletes changed, and the file references to delete.
#[derive(Default)]
struct Pending {
    rooms: HashMap<String, (RoomStats, Vec<(u64, StoredMessage)>)>,
    older: HashMap<(String, u64), StoredMessage>,
    unrefs: Vec<(String, String, u64)>,
    changed: HashSet<String>,
    /// Seqs whose bodies a delete erased.
    erased: Vec<u64>,
    /// Reaction records loaded or changed by this batch, by (room, message seq, user).
    marks: HashMap<(String, u64, String), UserReactions>,
    /// Messages deleted by this batch whose reaction records go.
    wiped: Vec<(String, u64)>,
    /// Replies of this batch: (room, root, seq, sender).
    replies: Vec<(String, u64, u64, String)>,
}

impl Pending {
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
    async fn apply(
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
                return Self::void(msg, room, seq, "no such message");
            };
            if let Err(e) = edits::check(Some(t), change, &msg.from, role) {
                return Self::void(msg, room, seq, &e.message);
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
            self.erased.push(target);
            self.erased.extend(&edited);
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
            let mut all = model.reactions_on(room, target).await?;
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
    async fn reply(
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
