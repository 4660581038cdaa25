//! `room_trim`: the stream refused a message of a room because the room's subject is at its
//! cap (`stream_max_msgs_per_room`; the stream refuses rather than drops, see
//! `crate::streams`). The room's worker purges from the stream every message of the room it
//! has stored (below its partition's checkpoint + 1: the store writer stores in stream
//! order, so all of those are in the store) but the room's last message (the next
//! message's `prev` comes from it), and the gateway's retry lands. Nothing a worker
//! has not stored is ever purged: a worker that is behind frees little or nothing, and the
//! room's sends wait (then `unavailable`) until it catches up, instead of the stream
//! dropping acked messages it never read.
//!
//! Many senders of one full room ask at once; a trim that finds the room purged up to the
//! same checkpoint already answers at once, without asking the stream.

use std::collections::HashMap;
use std::sync::Mutex;

use chatmesh_protocol::service::{TrimRequest, Trimmed as TrimDone};
use chatmesh_protocol::ApiError;
use metrics::counter;
use tracing::{debug, warn};

use super::{valid, Service};
use crate::metrics as m;

/// Rooms whose last trim is remembered; the map starts over beyond it.
const REMEMBERED: usize = 10_000;

/// Up to which seq (the partition's checkpoint + 1) each room was trimmed last: until the
/// store writer moves on, another trim would free nothing.
#[derive(Debug, Default)]
pub(super) struct Trimmed(Mutex<HashMap<String, u64>>);

impl Trimmed {
    fn below(&self, room: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(room).copied().unwrap_or(0)
    }

    fn set(&self, room: &str, below: u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= REMEMBERED {
            map.clear();
        }
        let at = map.entry(room.to_owned()).or_default();
        *at = (*at).max(below);
    }
}

impl Service {
    /// Purges what this worker stored of `req.room` from the stream.
    pub async fn room_trim(&self, req: TrimRequest) -> Result<TrimDone, ApiError> {
        valid("room", &req.room)?;
        let Some(tail) = self.inner.tail.get() else {
            return Err(ApiError::unavailable(
                "this worker does not follow the stream",
            ));
        };
        let (p, stream) = tail
            .streams
            .of_room(&req.room)
            .ok_or_else(|| ApiError::not_found("no such room"))?;
        let stored_below = tail.progress.at(p) + 1;
        if stored_below <= self.inner.trimmed.below(&req.room) {
            return Ok(TrimDone {
                below: stored_below,
                purged: 0,
            });
        }
        // Stored is not enough with `fsync = "buffered"`: what leaves the stream must
        // survive a power loss in the store.
        self.model().store().durable().await.map_err(|e| {
            warn!(room = %req.room, error = %chatmesh_protocol::error::Chain(&e), "syncing the store before a trim failed");
            ApiError::unavailable("the store could not be synced; the room stays full for now")
        })?;
        let (below, purged) = crate::streams::trim_below(stream, tail.partitions, &req.room, stored_below)
            .await
            .map_err(|e| {
                warn!(room = %req.room, error = %chatmesh_protocol::error::Chain(&e), "trimming a full room failed");
                ApiError::unavailable("the stream did not answer; the room stays full for now")
            })?;
        self.inner.trimmed.set(&req.room, stored_below);
        counter!(m::ROOM_TRIMS, "why" => "full").increment(1);
        debug!(room = %req.room, below, purged, "the room's subject was full: trimmed what is stored");
        Ok(TrimDone { below, purged })
    }
}
