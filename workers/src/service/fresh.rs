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
//!
//! When the leader does not answer within [`LEADER_WAIT`] (its region is cut off, or, in a
//! two-region deployment cut in two, JetStream has no meta leader: docs/REGIONS.md), the last
//! seq comes from a direct get instead: the stream itself where it lives, or its local
//! mirror. History of a cut region's rooms is then what this side holds (read-only), and the
//! rooms of the working side keep their history.
//!
//! A wait holds one of the worker's service slots (`service_concurrency`). So that waits
//! cannot take them all (a leader election, a store writer behind), a request waits
//! [`FREE_WAIT`] on its own; a longer wait needs one of the worker's waiter permits (half
//! the slots), and without one the request is refused `unavailable` at once: access
//! checks, joins and room lists keep the other half.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind, Stream};
use chatmesh_protocol::subjects::in_subject;
use chatmesh_protocol::ApiError;
use metrics::counter;
use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::{debug, warn};

use crate::metrics as m;
use crate::progress::Progress;

/// How long the stream's leader may take to tell a room's last seq (a WAN round trip when
/// the stream lives in another region) before a direct get answers instead.
const LEADER_WAIT: Duration = Duration::from_millis(1_500);

/// How long a request waits for the stream or the store writer before it needs a waiter
/// permit: a healthy leader answers and a healthy store writer catches up well within it.
const FREE_WAIT: Duration = Duration::from_millis(50);

/// What a worker needs to tell whether its store is behind the stream.
#[derive(Debug)]
pub struct StreamTail {
    /// The message streams.
    pub streams: crate::streams::Streams,
    /// The store writers' checkpoints.
    pub progress: Arc<Progress>,
    /// The deployment's partition count (`mesh.partitions`).
    pub partitions: u32,
    /// Longest wait for the store writer (`worker.history_wait_ms`).
    pub wait: Duration,
    /// Requests that may wait longer than [`FREE_WAIT`] at once (see [`StreamTail::waiters`]).
    pub waiters: Semaphore,
}

impl StreamTail {
    /// The waiter permits for a worker with `service_concurrency` slots: half of them, at
    /// least one.
    pub fn waiters(service_concurrency: usize) -> Semaphore {
        Semaphore::new((service_concurrency / 2).max(1))
    }

    /// `wait` to its end if it ends within [`FREE_WAIT`] or a waiter permit is `held` or
    /// free (then held for the request's later waits too); else `unavailable` at once.
    async fn bounded<'a, T>(
        &'a self,
        held: &mut Option<SemaphorePermit<'a>>,
        wait: impl Future<Output = T>,
    ) -> Result<T, ApiError> {
        tokio::pin!(wait);
        if held.is_none() {
            if let Ok(done) = tokio::time::timeout(FREE_WAIT, &mut wait).await {
                return Ok(done);
            }
            let Ok(permit) = self.waiters.try_acquire() else {
                counter!(m::HISTORY_WAITS, "outcome" => "too_many_waiting").increment(1);
                return Err(ApiError::unavailable(
                    "too many requests are waiting for recent messages; retry shortly",
                ));
            };
            *held = Some(permit);
        }
        Ok(wait.await)
    }

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
        let (p, stream) = self
            .streams
            .of_room(room)
            .ok_or_else(|| ApiError::not_found("no such room"))?;
        let mut held = None;
        let last = self
            .bounded(&mut held, self.last_seq(stream, room))
            .await??;
        let target = before.map_or(last, |b| last.min(b - 1));
        if target <= stored_last {
            return Ok(false);
        }
        if self.progress.at(p) >= target {
            return Ok(true);
        }
        let deadline = tokio::time::Instant::now() + self.wait;
        let reached = self.progress.reached(p, target, deadline);
        if self.bounded(&mut held, reached).await? {
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

    /// The seq of `room`'s last message in the stream (0 if none): every message acked so
    /// far is at or below it. `None` if this worker does not serve the room's stream.
    pub(super) async fn room_last_seq(&self, room: &str) -> Option<Result<u64, ApiError>> {
        let (_, stream) = self.streams.of_room(room)?;
        Some(
            self.bounded(&mut None, self.last_seq(stream, room))
                .await
                .and_then(|last| last),
        )
    }

    /// The seq of the room's last message in the stream (0 if none), from the stream's
    /// leader: a direct get may be answered by a replica that has not seen the ack yet.
    async fn last_seq(&self, stream: &Stream, room: &str) -> Result<u64, ApiError> {
        let subject = in_subject(self.partitions, room);
        let leader = tokio::time::timeout(
            LEADER_WAIT,
            stream.get_last_raw_message_by_subject(&subject),
        )
        .await;
        let why = match leader {
            Ok(Ok(m)) => return Ok(m.sequence),
            Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(0),
            Ok(Err(e)) => chatmesh_protocol::error::Chain(&e).to_string(),
            Err(_) => format!("no answer within {LEADER_WAIT:?}"),
        };
        // One region: the leader is only being elected (or slow), and a direct get may be
        // answered by a replica that has not seen the latest acks: a page from it could miss
        // a message acked before it was asked. Refused; the client retries.
        if !self.streams.topology().has_regions() {
            counter!(m::HISTORY_WAITS, "outcome" => "no_leader").increment(1);
            warn!(
                room,
                leader = why,
                "the stream's leader did not answer: history refused"
            );
            return Err(ApiError::unavailable(
                "history is not available right now (the stream is electing its leader); retry shortly",
            ));
        }
        // No leader to ask (its region cut off, or no meta leader): what a direct get reads
        // here, the stream or its local mirror, is all this side can have (docs/REGIONS.md).
        match stream.direct_get_last_for_subject(&subject).await {
            Ok(m) => {
                counter!(m::HISTORY_WAITS, "outcome" => "no_leader").increment(1);
                debug!(
                    room,
                    why,
                    "the room's last seq from a direct get: the stream's leader did not answer"
                );
                Ok(m.sequence)
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(0),
            Err(e) => {
                warn!(room, leader = why, error = %chatmesh_protocol::error::Chain(&e), "could not read the room's last seq from the stream");
                counter!(m::HISTORY_WAITS, "outcome" => "stream_error").increment(1);
                Err(ApiError::unavailable("history is not available right now"))
            }
        }
    }
}
