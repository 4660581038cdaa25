//! The store writer of one partition: a durable pull consumer `store-p{p}` on
//! `chat.in.{p}.>` whose deliveries are written to the store in batches and then acked with
//! `AckPolicy::All` acks. A batch is whatever has arrived when the writer is ready for more;
//! the batches of all partitions are written together, one store write and one fsync per
//! window (the model's group commit, `store::group`).
//!
//! A room's `prev` chain is only right if the partition's messages are stored strictly in
//! stream order, and a redelivery after a crash would arrive after newer messages. So every
//! session starts by reading the partition's checkpoint from the store and recreating the
//! consumer to deliver from `checkpoint + 1`; any delivery out of line (a gap in the consumer
//! sequence, an error of the pull stream, a failed commit or ack) ends the session, and the
//! next one starts again from the checkpoint. Redeliveries at or below it are skipped.
//!
//! Acks are plain (no reply) and lazy: one at most every `ack_interval_ms` (or every
//! `batch_max` stored messages), acking everything stored so far. An ack costs nats-server a
//! message to process, and a `double_ack` a subscription, a reply and an unsubscription too;
//! one per batch was most of the server's work per message at low rates. Nothing depends on
//! an ack being prompt or even arriving: an ack only lets the server forget messages that are
//! already durable in the store, the next ack covers one that was lost, and a message
//! redelivered because its ack was late or lost is at or below the checkpoint and skipped.
//! `max_ack_pending` (4 × `batch_max`) is never reached by the lag, which is at most
//! `batch_max` messages or the ack interval (at most a quarter of `ack_wait`).

mod erase;
mod setup;

use chatmesh_protocol::backoff::Backoff;
use chatmesh_protocol::error::Chain;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Message as JsMessage;
use chatmesh_protocol::message::Payload;
use chatmesh_protocol::subjects::room_of;
use chatmesh_protocol::validate_name;
use futures::{FutureExt, StreamExt};
use metrics::counter;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn, Instrument as _};

use crate::cache::Caches;
use crate::error::WorkerError;
use crate::metrics as m;
use crate::model::Model;
use crate::progress::Progress;
use crate::search::{IndexOp, Indexes};
use crate::store::StoreError;
use crate::writer::{store_batch, Delivery};

pub(crate) use setup::ConsumerSettings;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const HEARTBEAT: Duration = Duration::from_secs(5);
const PULL_EXPIRES: Duration = Duration::from_secs(30);

/// Why a store-writer session ended (the next one starts from the checkpoint).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The pull consumer could not be set up or its stream failed (`source`: the NATS error,
    /// none when the stream just ended).
    #[error("consumer: {what}")]
    Consumer {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("delivery out of line: expected consumer seq {expected}, got {got}")]
    Gap { expected: u64, got: u64 },
    #[error("ack")]
    Ack(#[source] BoxError),
    /// The stream ends below the store's checkpoint: it was deleted and made again (or
    /// restored from an older copy) under this worker. No session can mend that.
    #[error("the stream ends at seq {last}, below the store's checkpoint {checkpoint}")]
    StreamBehind { checkpoint: u64, last: u64 },
}

/// A NATS client error, kept as the source of a [`SessionError`].
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl SessionError {
    /// A consumer failure: `what` was being done, `source` went wrong.
    pub(crate) fn consumer(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        SessionError::Consumer {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            SessionError::Store(_) => "store",
            SessionError::Consumer { .. } => "consumer",
            SessionError::Gap { .. } => "gap",
            SessionError::Ack(_) => "ack",
            SessionError::StreamBehind { .. } => "stream_behind",
        }
    }
}

/// What every partition's store writer shares.
#[derive(Clone)]
pub(crate) struct Writer {
    pub model: Model,
    pub caches: Arc<Caches>,
    /// Told each committed checkpoint (history waits on it).
    pub progress: Arc<Progress>,
    /// The message streams (a partition reads its region's).
    pub streams: crate::streams::Streams,
    pub consumer: ConsumerSettings,
    pub batch_max: usize,
    /// The search indexes, kept after each stored batch (none when search is off).
    pub search: Option<Indexes>,
    /// When to trim a room's stored messages from the stream.
    pub trim: TrimEvery,
    /// Stops the worker on what no new session can mend.
    pub halt: Arc<Halt>,
}

/// A failure of a store writer that stops the whole worker ([`crate::Worker::failed`]): the
/// stream was replaced under the store, as a worker would refuse to start on.
#[derive(Debug, Default)]
pub(crate) struct Halt {
    stopped: CancellationToken,
    why: std::sync::Mutex<Option<WorkerError>>,
}

impl Halt {
    /// Stops the worker with `why` (the first reason given is kept).
    fn stop(&self, why: WorkerError) {
        self.why
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.stopped.cancel();
    }

    /// Resolves with the reason once a store writer stopped the worker.
    pub(crate) async fn stopped(&self) -> WorkerError {
        self.stopped.cancelled().await;
        let why = self.why.lock().unwrap_or_else(|e| e.into_inner()).take();
        why.unwrap_or_else(|| WorkerError::stream_msg("a store writer stopped the worker"))
    }
}

/// A room's subject holds at most `stream_max_msgs_per_room` messages and refuses more (see
/// `crate::streams`). So that a room in steady use never gets there, its store writer trims
/// what it stored of it from the stream each time it stored half the cap of it (counted
/// since the writer started: after a restart a room may reach the cap once, and the gateway's
/// `room_trim` frees it). Only a writer further behind in one room than half the cap lets the
/// room fill up, and then its sends wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrimEvery {
    /// Messages of one room stored between trims (0: the cap is off, never trim).
    pub messages: u64,
    pub partitions: u32,
}

impl TrimEvery {
    pub fn of(mesh: &chatmesh_protocol::MeshConfig) -> Self {
        Self {
            messages: u64::try_from(mesh.stream_max_msgs_per_room / 2).unwrap_or(0),
            partitions: mesh.partitions,
        }
    }
}

/// Runs partition `p`'s store writer until `shutdown`; `ready` says whether it has a consumer.
/// Its log lines carry the span `store_writer{partition}`.
pub(crate) async fn run_partition(
    w: Writer,
    p: u32,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("store_writer", partition = p);
    write_partition(w, p, ready, shutdown)
        .instrument(span)
        .await
}

async fn write_partition(w: Writer, p: u32, ready: Arc<AtomicBool>, shutdown: CancellationToken) {
    // This worker runs the partition from now until it returns; before and after, another
    // worker may write its rooms (ownership "shared").
    w.caches.partition_moved();
    write_sessions(&w, p, &ready, &shutdown).await;
    w.caches.partition_moved();
}

async fn write_sessions(w: &Writer, p: u32, ready: &AtomicBool, shutdown: &CancellationToken) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    loop {
        let result = session(w, p, ready, shutdown, &mut backoff).await;
        ready.store(false, Ordering::Release);
        let Err(e) = result else { return };
        if let SessionError::StreamBehind { checkpoint, last } = e {
            // Consuming it would take its messages up to the checkpoint for stored ones
            // (skipped, then trimmed from the stream): stop, as a start on it is refused.
            counter!(m::WRITER_RESTARTS, "reason" => e.reason()).increment(1);
            let why = WorkerError::StreamBehindStore {
                partition: p,
                checkpoint,
                last,
            };
            error!(partition = p, error = %why, "the stream was replaced under the store: the worker stops");
            w.halt.stop(why);
            return;
        }
        warn!(partition = p, error = %Chain(&e), "store writer restarts from its checkpoint");
        counter!(m::WRITER_RESTARTS, "reason" => e.reason()).increment(1);
        // Whatever ended it (a failed commit, or a consumer another worker replaced while
        // both held the partition for a moment), the store may hold more than the cached
        // stats and pages say: they are read again.
        w.caches.reset_written();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// One consumer session; returns `Ok` only on shutdown.
async fn session(
    w: &Writer,
    p: u32,
    ready: &AtomicBool,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), SessionError> {
    let setup = async {
        let checkpoint = w.model.checkpoint(p).await?;
        // The search index may be behind the store (what it had not committed when the
        // worker stopped): the consumer then starts where the index is, and the store skips
        // what it has.
        // An index that cannot be read never holds the store back: it is left behind.
        let indexed = match &w.search {
            Some(search) => search.covered(p).await.unwrap_or_else(|e| {
                counter!(m::SEARCH_ERRORS).increment(1);
                warn!(partition = p, error = %Chain(&e), "search index unreadable; not catching it up");
                checkpoint
            }),
            None => checkpoint,
        };
        let start = checkpoint.min(indexed);
        let filter = w.streams.topology().partition_filter(p);
        let stream = w
            .streams
            .of_partition(p)
            .ok_or_else(|| SessionError::Consumer {
                what: format!("partition {p} belongs to a stream this worker does not serve"),
                source: None,
            })?;
        // The checkpoint is a seq of the stream the store was written from: a stream that
        // ends below it is another one (deleted and made again, or an older copy).
        let last = crate::streams::last_seq(stream)
            .await
            .map_err(|e| SessionError::consumer("reading the stream's info", e))?;
        if checkpoint > last {
            return Err(SessionError::StreamBehind { checkpoint, last });
        }
        let consumer = setup::recreate(stream, p, &filter, start + 1, w.consumer).await?;
        let deliveries = consumer
            .stream()
            .max_messages_per_batch(w.batch_max)
            .heartbeat(HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|e| SessionError::consumer("pull", e))?;
        Ok::<_, SessionError>((checkpoint, indexed, deliveries))
    };
    // Nothing is in flight yet: a shutdown may interrupt the setup (NATS may be down).
    let (mut checkpoint, mut indexed, mut deliveries) = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        started = setup => started?,
    };
    ready.store(true, Ordering::Release);
    w.progress.stored(p, checkpoint);
    debug!(partition = p, checkpoint, "store writer consuming");
    let mut next_dseq = 1u64;
    let mut stored_since_trim: HashMap<String, u64> = HashMap::new();
    let mut acks = Acks::default();
    let ack_timer = tokio::time::sleep(w.consumer.ack_interval);
    tokio::pin!(ack_timer);
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                // Best effort: an ack lost here only means redeliveries the checkpoint skips.
                let _ = acks.send().await;
                return Ok(());
            }
            _ = &mut ack_timer, if acks.pending() => {
                acks.send().await?;
                continue;
            }
            m = deliveries.next() => m,
        };
        let mut batch = vec![delivery(first)?];
        let mut failure = None;
        // Whatever else has arrived already; the group commit's window does the waiting.
        while batch.len() < w.batch_max {
            let Some(next) = deliveries.next().now_or_never() else {
                break;
            };
            match delivery(next) {
                Ok(msg) => batch.push(msg),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let in_line = in_line_prefix(&batch, &mut next_dseq, &mut failure)?;
        batch.truncate(in_line);
        let decoded = batch.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let high = decoded.last().map_or(0, |d| d.seq);
        let due = trims_due(w, &mut stored_since_trim, &decoded);
        let index_ops = w.search.as_ref().map(|_| {
            decoded
                .iter()
                .filter(|d| d.seq > indexed)
                .filter_map(|d| {
                    let (room, payload) = d.message.as_ref()?;
                    IndexOp::of(d.seq, room, payload)
                })
                .collect::<Vec<_>>()
        });
        // Traced sends go on here: one span per message, ended when the batch is stored.
        let spans = traced(p, &batch);
        let erased = store_batch(&w.model, &w.caches, p, &mut checkpoint, decoded).await?;
        drop(spans);
        if let (Some(search), Some(ops)) = (&w.search, index_ops) {
            if high > indexed {
                // Never holds the store back either: what could not be indexed is counted,
                // logged and missing from search.
                if let Err(e) = search.apply(&w.model, p, high, ops).await {
                    counter!(m::SEARCH_ERRORS).increment(1);
                    warn!(partition = p, error = %Chain(&e), "indexing a batch for search failed");
                }
                indexed = high;
            }
        }
        if let (false, Some(stream)) = (erased.is_empty(), w.streams.of_partition(p)) {
            tokio::spawn(erase::erase(stream.clone(), w.trim.partitions, erased));
        }
        trim_stored(w, p, due, checkpoint);
        w.progress.stored(p, checkpoint);
        let stored = batch.len();
        if let Some(last) = batch.pop() {
            if !acks.pending() {
                ack_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + w.consumer.ack_interval);
            }
            acks.stored(last, stored);
        }
        if acks.unacked >= w.batch_max || failure.is_some() {
            acks.send().await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        backoff.reset();
    }
}

/// Counts the batch's messages per room; the rooms that reach half their cap since their last
/// trim are due (and counted from 0 again). A room already counted costs no allocation.
fn trims_due(w: &Writer, counts: &mut HashMap<String, u64>, batch: &[Delivery]) -> Vec<String> {
    let mut due = Vec::new();
    if w.trim.messages == 0 {
        return due;
    }
    for room in batch
        .iter()
        .filter_map(|d| d.message.as_ref().map(|(room, _)| room))
    {
        let n = match counts.get_mut(room) {
            Some(n) => n,
            None => counts.entry(room.clone()).or_default(),
        };
        *n += 1;
        if *n >= w.trim.messages {
            *n = 0;
            due.push(room.clone());
        }
    }
    // Rooms that went quiet are forgotten now and then: the map stays small.
    if counts.len() > 100_000 {
        counts.clear();
    }
    due
}

/// Trims `rooms` from the stream in the background: everything up to `checkpoint` is stored
/// (and made durable first: with `fsync = "buffered"` a power loss would lose what only the
/// page cache held, and the stream no longer would), and, with search, up to what the index
/// has committed (a crash loses what the index had not committed, which it then catches up
/// from the stream: trimmed, it was lost from search for good, and an edit lost so left the
/// old words findable). The trims wait for the index's next commit to cover the checkpoint
/// (a room whose last trim came before it went quiet kept its subject near the cap). A
/// subject that is full is trimmed up to the checkpoint anyway (`service/trim.rs`): the
/// index never holds sends back.
fn trim_stored(w: &Writer, p: u32, rooms: Vec<String>, checkpoint: u64) {
    let Some(stream) = w.streams.of_partition(p) else {
        return;
    };
    let (stream, partitions) = (stream.clone(), w.trim.partitions);
    let (model, search) = (w.model.clone(), w.search.clone());
    tokio::spawn(async move {
        if let Err(e) = model.store().durable().await {
            warn!(partition = p, error = %Chain(&e), "syncing the store failed: rooms not trimmed now");
            return;
        }
        let upto = match &search {
            Some(search) => match search.covered_up_to(p, checkpoint).await {
                Ok(covered) => checkpoint.min(covered),
                Err(e) => {
                    warn!(partition = p, error = %Chain(&e), "reading what the search index covers failed: rooms not trimmed now");
                    return;
                }
            },
            None => checkpoint,
        };
        for room in rooms {
            match crate::streams::trim_below(&stream, partitions, &room, upto + 1).await {
                Ok((below, purged)) => {
                    counter!(m::ROOM_TRIMS, "why" => "stored").increment(1);
                    debug!(
                        room,
                        below, purged, "trimmed what is stored of a room from the stream"
                    );
                }
                Err(e) => warn!(room, error = %Chain(&e), "trimming a room from the stream failed"),
            }
        }
    });
}

/// The ack a partition owes: the last stored delivery (an `AckPolicy::All` ack of it acks
/// everything before it) and how many deliveries it covers.
#[derive(Default)]
struct Acks {
    last: Option<JsMessage>,
    unacked: usize,
}

impl Acks {
    fn pending(&self) -> bool {
        self.last.is_some()
    }

    fn stored(&mut self, last: JsMessage, n: usize) {
        self.last = Some(last);
        self.unacked += n;
    }

    async fn send(&mut self) -> Result<(), SessionError> {
        let Some(last) = self.last.take() else {
            return Ok(());
        };
        self.unacked = 0;
        last.ack().await.map_err(SessionError::Ack)
    }
}

/// A `store` span for each message of `batch` that carries a trace context (none when traces
/// are off).
fn traced(p: u32, batch: &[JsMessage]) -> Vec<tracing::Span> {
    if !natskit::trace::enabled() {
        return Vec::new();
    }
    batch
        .iter()
        .filter(|m| {
            m.headers
                .as_ref()
                .is_some_and(|h| h.get("traceparent").is_some())
        })
        .map(|m| {
            let span = tracing::info_span!("store", partition = p, subject = %m.subject);
            natskit::trace::continue_from(&span, m.headers.as_ref());
            span
        })
        .collect()
}

/// A delivery's seq, room and payload (`None` if it is not a chat message).
fn decode(msg: &JsMessage) -> Result<Delivery, SessionError> {
    let seq = msg
        .info()
        .map_err(|e| SessionError::consumer("bad delivery metadata", e))?
        .stream_sequence;
    let message = room_of(msg.subject.as_str())
        .filter(|room| validate_name("room", room).is_ok())
        .and_then(|room| {
            let payload: Payload = serde_json::from_slice(&msg.payload).ok()?;
            Some((room.to_owned(), payload))
        });
    Ok(Delivery { seq, message })
}

fn delivery(
    next: Option<Result<JsMessage, impl Into<BoxError>>>,
) -> Result<JsMessage, SessionError> {
    match next {
        Some(Ok(msg)) => Ok(msg),
        Some(Err(e)) => Err(SessionError::consumer("pull", e)),
        None => Err(SessionError::Consumer {
            what: "pull stream ended".into(),
            source: None,
        }),
    }
}

/// How many deliveries of `batch` come in line (consecutive consumer sequences); sets
/// `failure` to a gap when one does not: a delivery was lost on the way (e.g. across a
/// reconnect), and acking past it with `AckPolicy::All` would drop it for good. nats-server
/// gives a redelivery a new consumer seq (checked on 2.15.1), so redeliveries stay in line and
/// the checkpoint skips them; a seq below the expected one is treated the same way.
fn in_line_prefix(
    batch: &[JsMessage],
    next_dseq: &mut u64,
    failure: &mut Option<SessionError>,
) -> Result<usize, SessionError> {
    for (i, msg) in batch.iter().enumerate() {
        let dseq = msg
            .info()
            .map_err(|e| SessionError::consumer("bad delivery metadata", e))?
            .consumer_sequence;
        if dseq > *next_dseq {
            *failure = Some(SessionError::Gap {
                expected: *next_dseq,
                got: dseq,
            });
            return Ok(i);
        }
        *next_dseq = (*next_dseq).max(dseq + 1);
    }
    Ok(batch.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_errors_keep_their_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = SessionError::consumer("creating store-p3", io);
        assert_eq!(e.reason(), "consumer");
        assert_eq!(
            Chain(&e).to_string(),
            "consumer: creating store-p3: reset by peer"
        );
        let ended = delivery(None::<Result<JsMessage, std::io::Error>>).unwrap_err();
        assert_eq!(Chain(&ended).to_string(), "consumer: pull stream ended");
    }
}
