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
//! in its root's thread and counted on the root. A delete that takes a file's last
//! carrying message marks the file detached ([`files`]). A room event is quiet (not
//! unread); a topic or name event sets the room's topic or name, in stream order. A commit
//! of an `e2ee` room moves the room's epoch on when it is for the room's epoch, and is void
//! otherwise.

mod files;
mod pending;

use std::collections::{HashMap, HashSet};

use chatmesh_protocol::e2ee::next_epoch;
use chatmesh_protocol::mentions::Mentions;
use chatmesh_protocol::message::{Message, Payload};
use metrics::{counter, histogram};
use tracing::warn;

use crate::cache::Caches;
use crate::metrics as m;
use crate::model::{Model, RoomStats, StoredMessage};
use crate::store::{StoreError, WriteBatch};
use pending::{Pending, RoomText};

/// One message delivered from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its stream sequence: the message's `seq`.
    pub seq: u64,
    /// Its room and payload, `None` if it could not be decoded (skipped, but checkpointed).
    pub message: Option<(String, Payload)>,
}

/// Stores `batch` (partition `p`'s deliveries, in stream order) and advances `checkpoint`.
/// Returns the rooms and stream seqs whose bodies a delete of this batch erased from the
/// store (the deleted messages and their edits), for the caller to erase from the stream
/// too.
pub async fn store_batch(
    model: &Model,
    caches: &Caches,
    p: u32,
    checkpoint: &mut u64,
    batch: Vec<Delivery>,
) -> Result<Vec<(String, u64)>, StoreError> {
    // Retention waits while the batch reads targets and writes them back (`Caches::writing`).
    let _writing = caches.writing().await;
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
        let mut stored = StoredMessage {
            prev: stats.last_seq,
            n: stats.count + 1,
            quiet: stats.quiet,
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
            event: payload.event,
            mls: payload.mls,
            ..Default::default()
        };
        // Reactions, room events and MLS handshake messages are not unread.
        stored.quiet += u64::from(stored.is_quiet());
        let (epoch, void) = match &stored.mls {
            Some(mls) => next_epoch(stats.epoch, mls),
            None => (stats.epoch, false),
        };
        let commit = if epoch != stats.epoch {
            d.seq
        } else {
            stats.commit
        };
        if void {
            // A commit for an epoch the room is not at: it changes nothing (clients apply
            // the same rule in seq order).
            counter!(m::CHANGES_VOID).increment(1);
            stored.void = true;
        }
        if let Some(event) = &stored.event {
            pending.room_event(&room, event);
        } else if let Some(change) = stored.change() {
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
            epoch,
            commit,
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
        texts,
    } = pending;
    let mut write = WriteBatch::new();
    let mut fresh: HashMap<String, Vec<Message>> = HashMap::new();
    // Files the batch's new messages carry (a delete of the batch emptied its targets').
    let mut carried = HashSet::new();
    for (room, (_, new)) in &mut rooms {
        let msgs = fresh.entry(room.clone()).or_default();
        for (seq, mut stored) in new.drain(..) {
            for file in &stored.attachments {
                Model::put_file_ref(&mut write, room, &file.id, seq);
                carried.insert((room.clone(), file.id.clone()));
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
    for (room, file) in files::detached(model, &unrefs, &carried).await? {
        Model::put_file_detached(&mut write, room, file);
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
    for ((room, what), text) in &texts {
        match what {
            RoomText::Topic => Model::put_topic(&mut write, room, text.as_deref()),
            RoomText::Name => Model::put_room_name(&mut write, room, text.as_deref()),
        }
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
        if changed.contains(room) {
            // An older message changed: the recent page may hold its old version. Dropped
            // before the stats move, so no reader meanwhile finds the page extended with the
            // change (a delete's tombstone) next to the old version (the deleted body).
            caches.trimmed(room).await;
        }
        if let Some((stats, _)) = rooms.get(room) {
            caches.stored(room, *stats, new).await;
        }
    }
    Ok(erased)
}
