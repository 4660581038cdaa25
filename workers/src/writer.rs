//! The store side of the store writer: one batch of deliveries becomes one store write.
//! Each message is chained to its room's previous message; messages, room stats and the
//! partition checkpoint go in one atomic batch (in a running worker, merged with the other
//! partitions' batches of the same window into one store write); then the caches are told.
//!
//! Deliveries must come in stream order, so a room's messages are chained in seq order.
//! Anything at or below the checkpoint (or at or below a seq already seen in the batch, or
//! the room's last stored seq) is a redelivery and is skipped: the store has it already.
//! This is the only writer of messages, room stats, checkpoints and the caches of those.

use std::collections::HashMap;

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

/// Stores `batch` (partition `p`'s deliveries, in stream order) and advances `checkpoint`.
pub async fn store_batch(
    model: &Model,
    caches: &Caches,
    p: u32,
    checkpoint: &mut u64,
    batch: Vec<Delivery>,
) -> Result<(), StoreError> {
    let mut write = WriteBatch::new();
    let mut rooms: HashMap<String, (RoomStats, Vec<Message>)> = HashMap::new();
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
            attachments: payload.attachments,
            mentions: payload.mentions,
        };
        if !stored.mentions.is_empty() {
            model
                .put_mentions(&mut write, &room, d.seq, &stored.from, &stored.mentions)
                .await?;
        }
        for file in &stored.attachments {
            Model::put_file_ref(&mut write, &room, &file.id, d.seq);
        }
        *stats = RoomStats {
            last_seq: d.seq,
            count: stored.n,
        };
        Model::put_message(&mut write, &room, d.seq, &stored);
        new.push(stored.into_message(&room, d.seq));
    }
    counter!(m::SKIPPED).increment(skipped);
    if high == *checkpoint {
        return Ok(());
    }
    // Messages first: on a backend without atomic batches (TiKV raw) a crash then leaves
    // messages above the checkpoint, never a checkpoint or stats above missing messages.
    write.barrier();
    rooms.retain(|_, (_, new)| !new.is_empty());
    let mut stored = 0usize;
    for (room, (stats, new)) in &rooms {
        Model::put_stats(&mut write, room, stats);
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
    for (room, (stats, new)) in &rooms {
        caches.stored(room, *stats, new).await;
    }
    Ok(())
}
