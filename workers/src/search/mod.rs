//! Full-text search (issue 18, docs/PROTOCOL.md "Search"): one tantivy index per partition
//! (`p{p}` in the search folder, `[worker.search] dir`), kept by the partition's store writer after each
//! stored batch, off the send path (a client's ack never waits for it), and read by the
//! `search` service operation for the rooms the gateway says the caller is in.
//!
//! **What an index holds.** One document per message in its current version: its seq (the
//! stream sequence, unique across rooms: the document's key), room, sender, time and body.
//! An edit replaces its target's document and a delete removes it, both read back from the
//! store once the batch is stored, so the index says what history says. Edits, deletes,
//! reactions and void markers have no document of their own; replies are messages.
//!
//! **Durability.** Documents are committed at most every [`COMMIT_EVERY`], each commit
//! carrying the highest stream seq the index covers (its payload). A crash loses what was
//! not committed; the store writer then starts its consumer from the lower of the store's
//! checkpoint and the index's, so the index catches up from the stream (the store skips
//! what it has). An index behind what the stream still holds (a new index beside an old
//! store, or the stream's retention having dropped messages) covers only what the stream
//! redelivers: see docs/STORAGE.md.
//!
//! **Memory.** A partition's index writer (one thread, [`WRITER_MEMORY`] of arena) is open
//! only while the partition has something to write; it is closed after [`IDLE_CLOSE`]
//! without any.

mod index;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatmesh_protocol::message::Payload;
use chatmesh_protocol::search::{SearchRequest, SearchResults};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::model::Model;
use crate::store::StoreError;
use index::{Doc, PartIndex};

/// Documents wait at most this long to be committed (searchable).
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// A partition's index writer is closed after this long without anything to write.
pub const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// Arena of one partition's index writer (tantivy's minimum).
pub const WRITER_MEMORY: usize = 15_000_000;

/// `[worker.search]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Keep the indexes and answer searches (off: `search` answers `unavailable`).
    pub enabled: bool,
    /// Where the indexes live; empty: beside the worker's `data_dir` (`<data_dir>.search`);
    /// `chatmesh up` uses `search` in its data dir.
    pub dir: PathBuf,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::new(),
        }
    }
}

/// Why the index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index of partition {partition}: {what}")]
    Index {
        partition: u32,
        what: &'static str,
        #[source]
        source: tantivy::TantivyError,
    },
    #[error("search index: {0}")]
    Store(#[from] StoreError),
    #[error("search index: the task was cancelled")]
    Cancelled,
}

/// What a stored batch does to the index, in stream order.
#[derive(Debug, Clone)]
pub enum IndexOp {
    /// A new message: index it as sent.
    Add {
        seq: u64,
        room: String,
        from: String,
        ts: u64,
        body: String,
    },
    /// An edit or a delete of message `seq` of `room`: read its current version back.
    Refresh { room: String, seq: u64 },
}

impl IndexOp {
    /// The op of one delivery (`None`: nothing to index: a reaction changes no body).
    pub fn of(seq: u64, room: &str, payload: &Payload) -> Option<Self> {
        // A reaction changes no body; a room event has none.
        if payload.react_to.is_some() || payload.unreact_to.is_some() || payload.event.is_some() {
            return None;
        }
        if let Some(target) = payload.edit_of.or(payload.delete_of) {
            return Some(IndexOp::Refresh {
                room: room.to_owned(),
                seq: target,
            });
        }
        Some(IndexOp::Add {
            seq,
            room: room.to_owned(),
            from: payload.from.clone(),
            ts: payload.ts,
            body: payload.body.clone(),
        })
    }
}

/// Every partition's index; cheap to clone.
#[derive(Clone)]
pub struct Indexes {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    parts: Vec<Mutex<Option<PartIndex>>>,
}

impl std::fmt::Debug for Indexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexes")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Indexes {
    /// The indexes of `partitions` partitions under `dir` (opened when first used).
    pub fn new(dir: &Path, partitions: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                parts: (0..partitions).map(|_| Mutex::new(None)).collect(),
            }),
        }
    }

    /// Runs `f` on partition `p`'s index (opened if need be) on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        p: u32,
        f: impl FnOnce(&mut PartIndex) -> Result<T, SearchError> + Send + 'static,
    ) -> Result<T, SearchError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let slot = inner.parts.get(p as usize).ok_or(SearchError::Cancelled)?;
            let mut guard = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if guard.is_none() {
                *guard = Some(PartIndex::open(&inner.dir.join(format!("p{p}")), p)?);
            }
            let part = guard.as_mut().ok_or(SearchError::Cancelled)?;
            f(part)
        })
        .await
        .map_err(|_| SearchError::Cancelled)?
    }

    /// How many partitions there are.
    pub fn partitions(&self) -> u32 {
        self.inner.parts.len() as u32
    }

    /// The highest stream seq partition `p`'s index covers (committed).
    pub async fn covered(&self, p: u32) -> Result<u64, SearchError> {
        self.with(p, |part| Ok(part.committed())).await
    }

    /// Applies a stored batch's ops (`high`: its highest stream seq). Edits and deletes
    /// read their targets from `model`, which holds them now.
    pub async fn apply(
        &self,
        model: &Model,
        p: u32,
        high: u64,
        ops: Vec<IndexOp>,
    ) -> Result<(), SearchError> {
        let mut docs = Vec::with_capacity(ops.len());
        for op in ops {
            docs.push(match op {
                IndexOp::Add {
                    seq,
                    room,
                    from,
                    ts,
                    body,
                } => (
                    seq,
                    Some(Doc {
                        room,
                        from,
                        ts,
                        body,
                    }),
                ),
                IndexOp::Refresh { room, seq } => {
                    let now = model.message(&room, seq).await?;
                    let doc = now
                        .filter(|m| m.change().is_none() && !m.void && m.deleted.is_none())
                        .map(|m| Doc {
                            room,
                            from: m.from,
                            ts: m.ts,
                            body: m.body,
                        });
                    (seq, doc)
                }
            });
        }
        self.with(p, move |part| part.write(high, docs)).await
    }

    /// Removes the documents of messages retention deleted from `room`.
    pub async fn remove(&self, room: &str, seqs: Vec<u64>) -> Result<(), SearchError> {
        let p = chatmesh_protocol::subjects::partition(room, self.partitions());
        let docs = seqs.into_iter().map(|seq| (seq, None)).collect();
        self.with(p, move |part| part.write(0, docs)).await
    }

    /// Commits partition `p`'s index now (what the commit loop does every second).
    pub async fn commit(&self, p: u32) -> Result<(), SearchError> {
        self.with(p, |part| part.commit(false, Instant::now()))
            .await
    }

    /// Answers a search of rooms of partition `p`.
    pub async fn search(&self, p: u32, req: SearchRequest) -> Result<SearchResults, SearchError> {
        let snapshot = self.with(p, |part| Ok(part.snapshot())).await?;
        tokio::task::spawn_blocking(move || snapshot.search(&req))
            .await
            .map_err(|_| SearchError::Cancelled)?
    }

    /// Commits what each partition wrote (every [`COMMIT_EVERY`]) and closes idle writers,
    /// until `stop`; then commits once more.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let stopped = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(COMMIT_EVERY) => false,
            };
            for p in 0..self.inner.parts.len() as u32 {
                let open = {
                    let slot = &self.inner.parts[p as usize];
                    slot.lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .is_some()
                };
                if !open {
                    continue;
                }
                let close_idle = !stopped;
                let done = self
                    .with(p, move |part| part.commit(close_idle, Instant::now()))
                    .await;
                if let Err(e) = done {
                    warn!(partition = p, error = %chatmesh_protocol::error::Chain(&e), "committing the search index failed");
                }
            }
            if stopped {
                return;
            }
        }
    }
}
