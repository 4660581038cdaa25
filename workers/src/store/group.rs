//! Group commit: every write of a worker (the store writers of all its partitions, cursor
//! moves, room and member changes) shares one store write, and so one fsync, per window.
//!
//! At 1,000 sends/s over 16 partitions each partition sees one message every ~16 ms, so a
//! writer per partition committed batches of one: one fsync, one blocking-pool hop and
//! several thread wake-ups per message, which is where most of the worker's CPU went
//! (docs/PERFORMANCE.md). Here the first batch that arrives opens a window of `linger`; every
//! batch that arrives before it closes (or until `max_ops` operations) joins one
//! [`WriteBatch`], written once, and every submitter is told the one result. On an atomic
//! store (fjall) the batches are concatenated in the order they came
//! ([`WriteBatch::concat`]), so a later batch's write of a key lands after an earlier one's;
//! on TiKV they are merged stage by stage ([`WriteBatch::merge`]), and a batch that touches
//! a key of the group opens the next group instead. A failed write fails every batch in it, as if each had failed on
//! its own (a store writer restarts from its checkpoint, a request answers `internal`).
//! Nothing in the committer's loop panics (merging moves vectors; a store write runs on the
//! blocking pool, whose panics come back as errors), so it lives as long as the model does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{KvStore, Store, StoreError, WriteBatch};
use crate::metrics as m;

/// Batches queued for the committer; a full queue makes writers wait (backpressure).
const QUEUE: usize = 256;

/// One partition's batch and where its result goes.
struct Request {
    batch: WriteBatch,
    done: oneshot::Sender<Result<(), Arc<StoreError>>>,
}

/// The handle writers submit batches through. Clones share the committer.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Request>,
}

impl GroupCommit {
    /// Starts the committer task; it ends when every handle is dropped. A write it has begun
    /// always finishes: a writer stopping at shutdown does not cut a group short.
    pub fn start(store: Store, linger: Duration, max_ops: usize) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx, linger, max_ops));
        Self { tx }
    }

    /// Writes `batch` with whatever else arrives in the same window; returns once that write
    /// is durable (per the store's fsync policy).
    pub async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (done, result) = oneshot::channel();
        let closed = || StoreError::Stopped("the group committer");
        self.tx
            .send(Request { batch, done })
            .await
            .map_err(|_| closed())?;
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Shared(e)),
            Err(_) => Err(closed()),
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Request>, linger: Duration, max_ops: usize) {
    let atomic = store.atomic_batches();
    // A batch that touches a key of the group before it opens the next group (stages only).
    let mut next: Option<Request> = None;
    loop {
        let first = match next.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        let mut ops = first.batch.len();
        let mut keys = KeysOf::new(!atomic);
        keys.add(&first.batch);
        let mut group = vec![first];
        let close = tokio::time::Instant::now() + linger;
        while ops < max_ops {
            // `timeout_at` polls the queue before the clock: what is queued is taken even
            // with a zero linger.
            match tokio::time::timeout_at(close, rx.recv()).await {
                Ok(Some(r)) if keys.overlaps(&r.batch) => {
                    next = Some(r);
                    break;
                }
                Ok(Some(r)) => {
                    ops += r.batch.len();
                    keys.add(&r.batch);
                    group.push(r);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let (batches, waiters): (Vec<_>, Vec<_>) =
            group.into_iter().map(|r| (r.batch, r.done)).unzip();
        metrics::histogram!(m::GROUP_SIZE).record(batches.len() as f64);
        let started = Instant::now();
        let merged = match atomic {
            true => WriteBatch::concat(batches),
            false => WriteBatch::merge(batches),
        };
        let result = store.write(merged).await.map_err(Arc::new);
        metrics::histogram!(m::STORE_COMMIT).record(started.elapsed().as_secs_f64());
        for done in waiters {
            // A writer that gave up (shutdown) no longer listens: nothing to tell it.
            let _ = done.send(result.clone());
        }
    }
}

/// The keys of a group merged stage by stage (a backend whose batches are not atomic): two
/// batches touching one key must not share a group, as merging their stages could apply the
/// later one's write of it first. Atomic backends concatenate whole batches in order and
/// track nothing.
struct KeysOf {
    keys: Option<std::collections::HashSet<Vec<u8>>>,
}

impl KeysOf {
    fn new(track: bool) -> Self {
        Self {
            keys: track.then(std::collections::HashSet::new),
        }
    }

    fn add(&mut self, batch: &WriteBatch) {
        if let Some(keys) = &mut self.keys {
            keys.extend(batch.keys().map(<[u8]>::to_vec));
        }
    }

    fn overlaps(&self, batch: &WriteBatch) -> bool {
        self.keys
            .as_ref()
            .is_some_and(|keys| batch.keys().any(|k| keys.contains(k)))
    }
}
