//! Read-your-acks for history. A gateway acks a send once JetStream stored it; this worker's
//! store writer persists it a few milliseconds later. A history read in between would miss
//! a message its sender was already told about, so before answering, the worker makes sure
//! its store holds everything the stream has for the room (below the page's `before`):
//! it asks the stream's leader for the room's last seq, then waits, bounded, for the
//! partition's store writer to pass it ([`Progress`]). A store that does not catch up in
//! time is answered with `unavailable`, never with a page that silently lacks acked
//! messages.
//!
//! Resume reads (`after`) skip this: their caller reads what the store lacks from the
//! stream itself.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use chatmesh_protocol::subjects::{in_subject, partition};
use chatmesh_protocol::ApiError;
use metrics::counter;
use tracing::warn;

use crate::metrics as m;
use crate::progress::Progress;

/// What a worker needs to tell whether its store is behind the stream.
#[derive(Debug)]
pub struct StreamTail {
    /// Stream `CHAT`.
    pub stream: Stream,
    /// The store writers' checkpoints.
    pub progress: Arc<Progress>,
    /// The deployment's partition count (`mesh.partitions`).
    pub partitions: u32,
    /// Longest wait for the store writer (`worker.history_wait_ms`).
    pub wait: Duration,
}

impl StreamTail {
    /// Returns once the store holds every message of `room` the stream had when asked (with
    /// `before`, only those below it); `stored_last` is the room's last stored seq as the
    /// caller read it. `Ok(true)`: the store moved past what the caller read (read again).
    pub(super) async fn caught_up(
        &self,
        room: &str,
        before: Option<u64>,
        stored_last: u64,
    ) -> Result<bool, ApiError> {
        // Stored messages are complete up to the room's last one: a page below it is whole.
        if before.is_some_and(|b| b <= stored_last.saturating_add(1)) {
            return Ok(false);
        }
        let last = self.last_seq(room).await?;
        let target = before.map_or(last, |b| last.min(b - 1));
        if target <= stored_last {
            return Ok(false);
        }
        let p = partition(room, self.partitions);
        if self.progress.at(p) >= target {
            return Ok(true);
        }
        let deadline = tokio::time::Instant::now() + self.wait;
        if self.progress.reached(p, target, deadline).await {
            counter!(m::HISTORY_WAITS, "outcome" => "caught_up").increment(1);
            return Ok(true);
        }
        counter!(m::HISTORY_WAITS, "outcome" => "timed_out").increment(1);
        warn!(
            room,
            partition = p,
            target,
            stored = self.progress.at(p),
            "store writer behind the stream: history refused"
        );
        Err(ApiError::unavailable(
            "history is catching up with recent messages; retry shortly",
        ))
    }

    /// The seq of the room's last message in the stream (0 if none), from the stream's
    /// leader: a direct get may be answered by a replica that has not seen the ack yet.
    async fn last_seq(&self, room: &str) -> Result<u64, ApiError> {
        let subject = in_subject(self.partitions, room);
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => {
                warn!(room, error = %chatmesh_protocol::error::Chain(&e), "could not read the room's last seq from the stream");
                counter!(m::HISTORY_WAITS, "outcome" => "stream_error").increment(1);
                Err(ApiError::unavailable("history is not available right now"))
            }
        }
    }
}
