//! The store side of the store writer: one batch of deliveries becomes one store write.
//! Each message is chained to its room's previous message; messages, room stats and the
//! partition checkpoint go in one atomic batch ([`prepare`]); once it is written (on its own,
//! or with other partitions' batches in one group commit, `consumer::commit`) the caches are
//! told ([`Prepared::stored`]).
//!
//! Deliveries must come in stream order, so a room's messages are chained in seq order.
//! Anything at or below the checkpoint (or at or below a seq already seen in the batch, or
//! the room's last stored seq) is a redelivery and is skipped: the store has it already.
//! This is the only writer of messages, room stats, checkpoints and the caches of those.

use std::collections::HashMap;
use std::time::Instant;

use chatmesh_protocol::message::{Message, Payload};
use metrics::{counter, histogram};
use tracing::warn;

use crate::cache::Caches;
use crate::metrics as m;
use crate::model::{Model, RoomStats, StoredMessage};
use crate::store::{StoreError, WriteBatch};

/// One message delivered from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its stream sequence: the message's `seq`.
    pub seq: u64,
    /// Its room and payload, `None` if it could not be decoded (skipped, but checkpointed).
    pub message: Option<(String, Payload)>,
}

/// Stores `batch` (partition `p`'s deliveries, in stream order) and advances `checkpoint`:
/// [`prepare`], one store write of its own, [`Prepared::stored`].
pub async fn store_batch(
    model: &Model,
    caches: &Caches,
    p: u32,
    checkpoint: &mut u64,
    batch: Vec<Delivery>,
) -> Result<(), StoreError> {
    let Some(mut prepared) = prepare(model, caches, p, *checkpoint, batch).await? else {
        return Ok(());
    };
    let started = Instant::now();
    model.write(prepared.take_write()).await?;
    histogram!(m::STORE_COMMIT).record(started.elapsed().as_secs_f64());
    prepared.stored(caches, checkpoint).await;
    Ok(())
}

/// A batch of deliveries made into one store write, not written yet.
#[derive(Debug)]
pub struct Prepared {
    /// Messages, then (after a barrier) room stats and the partition checkpoint.
    write: WriteBatch,
    rooms: HashMap<String, (RoomStats, Vec<Message>)>,
    high: u64,
    messages: usize,
}

/// Chains `batch` (partition `p`'s deliveries, in stream order, above `checkpoint`) to each
/// room's last stored message; `None` when every delivery was already stored.
pub async fn prepare(
    model: &Model,
    caches: &Caches,
    p: u32,
    checkpoint: u64,
    batch: Vec<Delivery>,
) -> Result<Option<Prepared>, StoreError> {
    let mut write = WriteBatch::new();
    let mut rooms: HashMap<String, (RoomStats, Vec<Message>)> = HashMap::new();
    let mut high = checkpoint;
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
        if !rooms.contains_key(&room) {
            let stats = caches.stats(model, &room).await?;
            rooms.insert(room.clone(), (stats, Vec::new()));
        }
        let Some((stats, new)) = rooms.get_mut(&room) else {
            continue;
        };
        if d.seq <= stats.last_seq {
            skipped += 1;
            continue;
        }
        let stored = StoredMessage {
            prev: stats.last_seq,
            n: stats.count + 1,
            id: payload.id,
            from: payload.from,
            ts: payload.ts,
            body: payload.body,
        };
        *stats = RoomStats {
            last_seq: d.seq,
            count: stored.n,
        };
        Model::put_message(&mut write, &room, d.seq, &stored);
        new.push(stored.into_message(&room, d.seq));
    }
    counter!(m::SKIPPED).increment(skipped);
    if high == checkpoint {
        return Ok(None);
    }
    // Messages first: on a backend without atomic batches (TiKV raw) a crash then leaves
    // messages above the checkpoint, never a checkpoint or stats above missing messages.
    write.barrier();
    rooms.retain(|_, (_, new)| !new.is_empty());
    let mut messages = 0usize;
    for (room, (stats, new)) in &rooms {
        Model::put_stats(&mut write, room, stats);
        messages += new.len();
    }
    Model::put_checkpoint(&mut write, p, high);
    Ok(Some(Prepared {
        write,
        rooms,
        high,
        messages,
    }))
}

impl Prepared {
    /// The store write (taken once; it is empty afterwards).
    pub fn take_write(&mut self) -> WriteBatch {
        std::mem::take(&mut self.write)
    }

    /// After its write is durable: advances `checkpoint` and tells the caches.
    pub async fn stored(self, caches: &Caches, checkpoint: &mut u64) {
        histogram!(m::BATCH_SIZE).record(self.messages as f64);
        counter!(m::BATCHES).increment(1);
        counter!(m::STORED).increment(self.messages as u64);
        *checkpoint = self.high;
        for (room, (stats, new)) in &self.rooms {
            caches.stored(room, *stats, new).await;
        }
    }
}
