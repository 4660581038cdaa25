//! Turning one batch of deliveries into one store write: decode each payload, chain it to
//! its room's previous message, write messages, room stats and the partition checkpoint in
//! one atomic batch (one fsync), then tell the caches.
//!
//! Deliveries arrive in stream order, so a room's messages are chained in seq order. Anything
//! at or below the checkpoint (or below a seq already seen in this batch) is a redelivery and
//! is skipped: the store has it already.

use std::collections::HashMap;
use std::time::Instant;

use async_nats::jetstream::Message as JsMessage;
use chatmesh_protocol::message::{Message, Payload};
use chatmesh_protocol::subjects::room_of;
use chatmesh_protocol::validate_name;
use metrics::{counter, histogram};
use tracing::warn;

use super::{SessionError, Writer};
use crate::metrics as m;
use crate::model::{Model, RoomStats, StoredMessage};
use crate::store::WriteBatch;

/// Decodes a delivery into its room and payload, or `None` if it is not a chat message.
fn decode(msg: &JsMessage) -> Option<(String, Payload)> {
    let room = room_of(msg.subject.as_str())?;
    validate_name("room", room).ok()?;
    let payload: Payload = serde_json::from_slice(&msg.payload).ok()?;
    Some((room.to_owned(), payload))
}

/// Stores `msgs` (deliveries of partition `p`, in order) and advances `checkpoint`.
pub(crate) async fn persist(
    w: &Writer,
    p: u32,
    checkpoint: &mut u64,
    msgs: &[JsMessage],
) -> Result<(), SessionError> {
    let mut batch = WriteBatch::new();
    let mut rooms: HashMap<String, (RoomStats, Vec<Message>)> = HashMap::new();
    let mut high = *checkpoint;
    let mut skipped = 0u64;
    for msg in msgs {
        let seq = msg
            .info()
            .map_err(|e| SessionError::Consumer(format!("bad delivery metadata: {e}")))?
            .stream_sequence;
        if seq <= high {
            skipped += 1;
            continue;
        }
        high = seq;
        let Some((room, payload)) = decode(msg) else {
            counter!(m::DECODE_ERRORS).increment(1);
            warn!(partition = p, seq, subject = %msg.subject, "skipping undecodable message");
            continue;
        };
        if !rooms.contains_key(&room) {
            let stats = w.caches.stats(&w.model, &room).await?;
            rooms.insert(room.clone(), (stats, Vec::new()));
        }
        let Some((stats, new)) = rooms.get_mut(&room) else {
            continue;
        };
        if seq <= stats.last_seq {
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
            last_seq: seq,
            count: stored.n,
        };
        Model::put_message(&mut batch, &room, seq, &stored);
        new.push(stored.into_message(&room, seq));
    }
    counter!(m::SKIPPED).increment(skipped);
    if high == *checkpoint {
        return Ok(());
    }
    let mut stored = 0usize;
    for (room, (stats, new)) in &rooms {
        if !new.is_empty() {
            Model::put_stats(&mut batch, room, stats);
            stored += new.len();
        }
    }
    Model::put_checkpoint(&mut batch, p, high);
    let started = Instant::now();
    w.model.write(batch).await?;
    histogram!(m::STORE_COMMIT).record(started.elapsed().as_secs_f64());
    histogram!(m::BATCH_SIZE).record(stored as f64);
    counter!(m::BATCHES).increment(1);
    counter!(m::STORED).increment(stored as u64);
    *checkpoint = high;
    for (room, (stats, new)) in &rooms {
        if !new.is_empty() {
            w.caches.stored(room, *stats, new).await;
        }
    }
    Ok(())
}
