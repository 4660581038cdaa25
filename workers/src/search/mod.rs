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
//! **Pace.** A stored batch's documents wait in memory, in stream order, until their
//! partition's next commit: the send path only appends to a list. The commit loop writes
//! and commits one partition at a time, oldest waiting documents first, once they have
//! waited `commit_ms`, and at most `commits_per_second` times a second: a commit costs a
//! few milliseconds of CPU and a new segment whatever its size, and one per partition per
//! second was most of the worker's CPU per message at 1,000 sends/s (docs/PERFORMANCE.md).
//! So a message is searchable about `commit_ms` after it is stored while the commits keep
//! up, and within `partitions / commits_per_second` seconds under load. Past
//! [`MAX_WAITING`] documents waiting in one partition the send path hands them to the index
//! writer itself: memory stays bounded.
//!
//! **Durability.** Each commit carries the highest stream seq the index covers (its
//! payload). A crash loses what was
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
use metrics::counter;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::metrics as m;
use crate::model::Model;
use crate::store::StoreError;
use index::{Doc, PartIndex};

/// Documents waiting in one partition beyond which the send path hands them to the index
/// writer itself (they are committed with the partition's next commit).
pub const MAX_WAITING: usize = 20_000;
/// How often idle writers are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
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
    /// A partition's stored messages wait this long for its next commit (then searches
    /// see them), while the commits keep up.
    pub commit_ms: u64,
    /// At most this many partition commits a second, oldest waiting first: under load each
    /// partition is committed every `partitions / commits_per_second` seconds.
    pub commits_per_second: u32,
}

impl SearchConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(100..=60_000).contains(&self.commit_ms) {
            out.push("search.commit_ms must be between 100 and 60000".to_owned());
        }
        if !(1..=100).contains(&self.commits_per_second) {
            out.push("search.commits_per_second must be between 1 and 100".to_owned());
        }
        out
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::new(),
            commit_ms: 1_000,
            commits_per_second: 4,
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
    /// Per partition, what waits for its next commit. Locked briefly, never across a
    /// write: the send path appends here while a commit runs.
    waiting: Vec<Mutex<Waiting>>,
    commit_after: Duration,
    tick: Duration,
}

/// A partition's documents not yet handed to its index, in stream order.
#[derive(Default)]
struct Waiting {
    docs: Vec<(u64, Option<Doc>)>,
    /// The highest stream seq they cover (0: none).
    high: u64,
    /// Since when something waits for a commit (also written but uncommitted documents).
    since: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl std::fmt::Debug for Indexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexes")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Indexes {
    /// The indexes of `partitions` partitions under `dir` (opened when first used),
    /// committed at the pace of `config`.
    pub fn new(dir: &Path, partitions: u32, config: &SearchConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                parts: (0..partitions).map(|_| Mutex::new(None)).collect(),
                waiting: (0..partitions)
                    .map(|_| Mutex::new(Waiting::default()))
                    .collect(),
                commit_after: Duration::from_millis(config.commit_ms),
                tick: Duration::from_secs(1) / config.commits_per_second.max(1),
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
            let mut guard = lock(slot);
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
        self.enqueue(p, high, docs).await
    }

    /// Removes the documents of messages retention deleted from `room`.
    pub async fn remove(&self, room: &str, seqs: Vec<u64>) -> Result<(), SearchError> {
        let p = chatmesh_protocol::subjects::partition(room, self.partitions());
        let docs = seqs.into_iter().map(|seq| (seq, None)).collect();
        self.enqueue(p, 0, docs).await
    }

    /// Adds `docs` to what partition `p`'s next commit writes; past [`MAX_WAITING`] they are
    /// handed to the index writer now.
    async fn enqueue(
        &self,
        p: u32,
        high: u64,
        mut docs: Vec<(u64, Option<Doc>)>,
    ) -> Result<(), SearchError> {
        let full = {
            let slot = self.inner.waiting.get(p as usize);
            let mut waiting = lock(slot.ok_or(SearchError::Cancelled)?);
            waiting.docs.append(&mut docs);
            waiting.high = waiting.high.max(high);
            waiting.since.get_or_insert_with(Instant::now);
            waiting.docs.len() >= MAX_WAITING
        };
        if full {
            let inner = self.inner.clone();
            self.with(p, move |part| write_waiting(&inner, p, part))
                .await?;
        }
        Ok(())
    }

    /// Writes and commits partition `p`'s waiting documents now (what the commit loop does
    /// when they are due).
    pub async fn commit(&self, p: u32) -> Result<(), SearchError> {
        let inner = self.inner.clone();
        self.with(p, move |part| {
            write_waiting(&inner, p, part)?;
            part.commit(false, Instant::now())?;
            // Committed: nothing waits any more but what came in meanwhile, from now.
            let mut w = lock(
                inner
                    .waiting
                    .get(p as usize)
                    .ok_or(SearchError::Cancelled)?,
            );
            w.since = (!w.docs.is_empty()).then(Instant::now);
            Ok(())
        })
        .await
    }

    /// The due partition whose documents have waited longest (`commit_ms`, or any wait
    /// with `all`).
    fn most_due(&self, now: Instant, all: bool) -> Option<u32> {
        let mut best: Option<(Instant, u32)> = None;
        for (p, slot) in self.inner.waiting.iter().enumerate() {
            let w = lock(slot);
            let Some(since) = w.since else { continue };
            let due = all || now.duration_since(since) >= self.inner.commit_after;
            if due && best.is_none_or(|(b, _)| since < b) {
                best = Some((since, p as u32));
            }
        }
        best.map(|(_, p)| p)
    }

    /// Answers a search of rooms of partition `p`.
    pub async fn search(&self, p: u32, req: SearchRequest) -> Result<SearchResults, SearchError> {
        let snapshot = self.with(p, |part| Ok(part.snapshot())).await?;
        tokio::task::spawn_blocking(move || snapshot.search(&req))
            .await
            .map_err(|_| SearchError::Cancelled)?
    }

    /// Commits one due partition per tick (`1 / commits_per_second`), the longest waiting
    /// first, and closes idle writers, until `stop`; then commits every partition with
    /// something waiting.
    pub async fn run(self, stop: CancellationToken) {
        let mut last_sweep = Instant::now();
        loop {
            let stopped = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(self.inner.tick) => false,
            };
            if stopped {
                while let Some(p) = self.most_due(Instant::now(), true) {
                    if !self.commit_logged(p).await {
                        // Nothing else is tried for it: what stays uncommitted is caught up
                        // from the stream at the next start.
                        lock(&self.inner.waiting[p as usize]).since = None;
                    }
                }
                return;
            }
            if let Some(p) = self.most_due(Instant::now(), false) {
                self.commit_logged(p).await;
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                self.close_idle().await;
            }
        }
    }

    /// [`Indexes::commit`], a failure counted and logged: whether it committed.
    async fn commit_logged(&self, p: u32) -> bool {
        let Err(e) = self.commit(p).await else {
            return true;
        };
        counter!(m::SEARCH_ERRORS).increment(1);
        warn!(partition = p, error = %chatmesh_protocol::error::Chain(&e), "committing the search index failed");
        false
    }

    /// Closes the writers of partitions that had nothing to write for [`IDLE_CLOSE`].
    async fn close_idle(&self) {
        for p in 0..self.partitions() {
            let open = lock(&self.inner.parts[p as usize]).is_some();
            if !open || lock(&self.inner.waiting[p as usize]).since.is_some() {
                continue;
            }
            let done = self
                .with(p, move |part| part.commit(true, Instant::now()))
                .await;
            if let Err(e) = done {
                warn!(partition = p, error = %chatmesh_protocol::error::Chain(&e), "closing an idle search index writer failed");
            }
        }
    }
}

/// Hands partition `p`'s waiting documents to its index writer (under the partition's
/// lock, so writes stay in stream order). They stay due (`since`) until a commit: a failed
/// commit is tried again by the loop.
fn write_waiting(inner: &Inner, p: u32, part: &mut PartIndex) -> Result<(), SearchError> {
    let slot = inner
        .waiting
        .get(p as usize)
        .ok_or(SearchError::Cancelled)?;
    let (docs, high) = {
        let mut w = lock(slot);
        (
            std::mem::take(&mut w.docs),
            std::mem::replace(&mut w.high, 0),
        )
    };
    if docs.is_empty() && high == 0 {
        return Ok(());
    }
    part.write(high, docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(room: &str, body: &str) -> Option<Doc> {
        Some(Doc {
            room: room.into(),
            from: "ann".into(),
            ts: 1,
            body: body.into(),
        })
    }

    fn ask(q: &str, room: &str) -> SearchRequest {
        SearchRequest {
            q: q.into(),
            rooms: vec![room.into()],
            from: None,
            since: None,
            until: None,
            before: None,
            limit: 10,
        }
    }

    fn indexes(dir: &Path, commit_ms: u64, commits_per_second: u32) -> Indexes {
        let config = SearchConfig {
            commit_ms,
            commits_per_second,
            ..SearchConfig::default()
        };
        Indexes::new(dir, 3, &config)
    }

    /// Stored documents wait in memory until their partition is due (`commit_ms`), and the
    /// partition that has waited longest is committed first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn documents_wait_for_their_commit_oldest_partition_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = indexes(dir.path(), 60_000, 4);
        idx.enqueue(1, 5, vec![(5, doc("b", "first words"))])
            .await
            .expect("enqueue");
        idx.enqueue(0, 7, vec![(7, doc("a", "later words"))])
            .await
            .expect("enqueue");
        assert_eq!(idx.most_due(Instant::now(), false), None, "not waited yet");
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(idx.most_due(later, false), Some(1), "the oldest first");
        assert_eq!(idx.covered(1).await.expect("covered"), 0);
        let hits = idx.search(1, ask("words", "b")).await.expect("search");
        assert!(hits.hits.is_empty(), "not searchable before the commit");

        idx.commit(1).await.expect("commit");
        assert_eq!(idx.covered(1).await.expect("covered"), 5);
        let hits = idx.search(1, ask("words", "b")).await.expect("search");
        assert_eq!(hits.hits.iter().map(|h| h.seq).collect::<Vec<_>>(), [5]);
        assert_eq!(idx.most_due(later, false), Some(0));
        idx.commit(0).await.expect("commit");
        assert_eq!(idx.most_due(later, false), None, "nothing waits");
        assert_eq!(idx.covered(0).await.expect("covered"), 7);
    }

    /// Past MAX_WAITING documents the send path hands them to the index writer itself;
    /// they stay due until committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_partition_is_written_at_once_and_stays_due() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = indexes(dir.path(), 60_000, 4);
        let docs: Vec<_> = (1..=MAX_WAITING as u64)
            .map(|seq| (seq, doc("a", "bulk")))
            .collect();
        idx.enqueue(2, MAX_WAITING as u64, docs)
            .await
            .expect("enqueue");
        assert!(lock(&idx.inner.waiting[2]).docs.is_empty(), "written");
        assert!(lock(&idx.inner.waiting[2]).since.is_some(), "still due");
        assert_eq!(idx.covered(2).await.expect("covered"), 0, "not committed");
        idx.commit(2).await.expect("commit");
        assert_eq!(idx.covered(2).await.expect("covered"), MAX_WAITING as u64);
        assert!(lock(&idx.inner.waiting[2]).since.is_none());
    }

    /// The loop commits what is due within its pace, and everything when stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_loop_commits_due_partitions_and_everything_at_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = indexes(dir.path(), 100, 100);
        let stop = CancellationToken::new();
        let running = tokio::spawn(idx.clone().run(stop.clone()));
        idx.enqueue(0, 3, vec![(3, doc("a", "soon"))])
            .await
            .expect("enqueue");
        let deadline = Instant::now() + Duration::from_secs(20);
        while idx.covered(0).await.expect("covered") < 3 {
            assert!(Instant::now() < deadline, "committed by the loop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        running.await.expect("loop ends");

        // Stopped: a new loop with a long wait still commits everything when it stops.
        let idx = indexes(dir.path(), 60_000, 1);
        let stop = CancellationToken::new();
        let running = tokio::spawn(idx.clone().run(stop.clone()));
        idx.enqueue(1, 9, vec![(9, doc("b", "late"))])
            .await
            .expect("enqueue");
        stop.cancel();
        running.await.expect("loop ends");
        assert_eq!(idx.covered(1).await.expect("covered"), 9);
    }
}
