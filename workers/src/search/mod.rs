//! Full-text search (issue 18, docs/PROTOCOL.md "Search"): one tantivy index per worker
//! (`all` in the search folder, `[worker.search] dir`) holding every partition's messages,
//! kept by the store writers after each stored batch, off the send path (a client's ack
//! never waits for it), and read by the `search` service operation for the rooms the
//! gateway says the caller is in.
//!
//! **What the index holds.** One document per message in its current version: its seq (the
//! stream sequence, unique across rooms and partitions: the document's key), room, sender,
//! time and body. An edit replaces its target's document and a delete removes it, both read
//! back from the store once the batch is stored, so the index says what history says.
//! Edits, deletes, reactions and void markers have no document of their own; replies are
//! messages.
//!
//! **Pace.** A stored batch's documents wait in memory, in stream order, until the next
//! commit: the send path only appends to a list. The commit loop writes and commits them
//! all once the oldest has waited `commit_ms`, at most `commits_per_second` times a second:
//! a commit costs a few milliseconds of CPU and a new segment whatever its size. One index
//! for all partitions makes that one commit per tick, however many partitions are busy (one
//! index per partition, committed every second, was most of the worker's CPU per message at
//! 1,000 sends/s: docs/PERFORMANCE.md). So a message is searchable about `commit_ms` after
//! it is stored. Past [`MAX_WAITING`] waiting documents the send path hands them to the
//! index writer itself: memory stays bounded.
//!
//! **Durability.** Each commit carries, per partition, the highest stream seq the index
//! covers (its payload). A crash loses what was not committed; each store writer then
//! starts its consumer from the lower of the store's checkpoint and the index's, so the
//! index catches up from the stream (the store skips what it has). An index behind what the
//! stream still holds (a new index beside an old store, or the stream's retention having
//! dropped messages) covers only what the stream redelivers: see docs/STORAGE.md. The
//! per-partition indexes of older versions (`p<N>`) are moved into it when it is first
//! opened, with what they covered.
//!
//! **Memory.** The index writer (one thread, [`WRITER_MEMORY`] of arena) is open only while
//! there is something to write; it is closed after [`IDLE_CLOSE`] without any.

mod index;
pub mod reindex;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatmesh_protocol::message::Payload;
use chatmesh_protocol::search::{SearchRequest, SearchResults};
use metrics::counter;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics as m;
use crate::model::Model;
use crate::model::StoredMessage;
use crate::store::StoreError;
use index::{Change, Doc, MessageIndex};

/// Documents waiting beyond which the send path hands them to the index writer itself
/// (they are committed with the next commit).
pub const MAX_WAITING: usize = 50_000;
/// How often idle writers are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// The index writer is closed after this long without anything to write.
pub const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// Arena of the index writer (tantivy's minimum).
pub const WRITER_MEMORY: usize = 15_000_000;

/// `[worker.search]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Keep the index and answer searches (off: `search` answers `unavailable`).
    pub enabled: bool,
    /// Where the index lives (in `all` under it); empty: beside the worker's `data_dir`
    /// (`<data_dir>.search`); `chatmesh up` uses `search` in its data dir.
    pub dir: PathBuf,
    /// Stored messages wait at most about this long for the next commit (then searches
    /// see them).
    pub commit_ms: u64,
    /// How often a second the commit loop looks for due messages (so at most this many
    /// commits a second).
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
    #[error("search index: {what}")]
    Index {
        what: &'static str,
        #[source]
        source: tantivy::TantivyError,
    },
    #[error("search index: {0}")]
    Store(#[from] StoreError),
    #[error("search index: the task was cancelled")]
    Cancelled,
    #[error("search index: every search slot stayed busy for {SEARCH_WAIT:?}")]
    Busy,
}

/// Searches one worker runs at once (each on a blocking thread): about the cores of a
/// small machine, so that queries never take every core from the send path and the store.
const SEARCHES: usize = 2;
/// Longest a search waits for one of [`SEARCHES`] slots; then it is refused `unavailable`.
const SEARCH_WAIT: Duration = Duration::from_secs(3);

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
        // A reaction changes no body; a room event has none; an end-to-end encrypted
        // message's body is ciphertext (the server cannot read it, nor can search).
        if payload.react_to.is_some()
            || payload.unreact_to.is_some()
            || payload.event.is_some()
            || payload.mls.is_some()
        {
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

/// The worker's index of every partition; cheap to clone.
#[derive(Clone)]
pub struct Indexes {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    partitions: u32,
    index: Mutex<Option<MessageIndex>>,
    /// What waits for the next commit. Locked briefly, never across a write: the send path
    /// appends here while a commit runs.
    waiting: Mutex<Waiting>,
    commit_after: Duration,
    tick: Duration,
    /// Searches running at once ([`SEARCHES`]).
    searching: Arc<tokio::sync::Semaphore>,
}

/// Documents not yet handed to the index, in stream order per partition.
#[derive(Default)]
struct Waiting {
    docs: Vec<Change>,
    /// Per partition, the highest stream seq they cover (0: none).
    high: Vec<u64>,
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
    /// The index of `partitions` partitions in `dir` (opened when first used), committed
    /// at the pace of `config`.
    pub fn new(dir: &Path, partitions: u32, config: &SearchConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                partitions,
                index: Mutex::new(None),
                waiting: Mutex::new(Waiting {
                    high: vec![0; partitions as usize],
                    ..Waiting::default()
                }),
                commit_after: Duration::from_millis(config.commit_ms),
                tick: Duration::from_secs(1) / config.commits_per_second.max(1),
                searching: Arc::new(tokio::sync::Semaphore::new(SEARCHES)),
            }),
        }
    }

    /// Runs `f` on the index (opened if need be) on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut MessageIndex) -> Result<T, SearchError> + Send + 'static,
    ) -> Result<T, SearchError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = lock(&inner.index);
            if guard.is_none() {
                *guard = Some(open(&inner.dir, inner.partitions)?);
            }
            let index = guard.as_mut().ok_or(SearchError::Cancelled)?;
            f(index)
        })
        .await
        .map_err(|_| SearchError::Cancelled)?
    }

    /// How many partitions there are.
    pub fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    /// The highest stream seq of partition `p` the index covers (committed).
    pub async fn covered(&self, p: u32) -> Result<u64, SearchError> {
        self.with(move |index| Ok(index.committed(p))).await
    }

    /// What [`covered`](Self::covered) says once it reaches `seq`, or when that takes longer
    /// than a commit should (`commit_ms`, two commit ticks and 2 s more): what the index
    /// committed of partition `p` by then.
    pub async fn covered_up_to(&self, p: u32, seq: u64) -> Result<u64, SearchError> {
        let deadline = tokio::time::Instant::now()
            + self.inner.commit_after
            + 2 * self.inner.tick
            + Duration::from_secs(2);
        loop {
            let covered = self.covered(p).await?;
            if covered >= seq || tokio::time::Instant::now() >= deadline {
                return Ok(covered);
            }
            tokio::time::sleep(self.inner.tick).await;
        }
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
                } => Change::Add {
                    p,
                    seq,
                    doc: Doc {
                        room,
                        from,
                        ts,
                        body,
                    },
                },
                IndexOp::Refresh { room, seq } => {
                    let now = model.message(&room, seq).await?;
                    let doc = now.filter(StoredMessage::is_searchable).map(|m| Doc {
                        room: room.clone(),
                        from: m.from,
                        ts: m.ts,
                        body: m.body,
                    });
                    Change::Replace { room, seq, doc }
                }
            });
        }
        self.enqueue(p, high, docs).await
    }

    /// Indexes stored messages of `room` as they are now (each replaces its document, if
    /// any; what search would not find, as a reaction or ciphertext, is left out): what an
    /// import brought in ([`reindex`]).
    pub async fn put(
        &self,
        room: &str,
        msgs: Vec<(u64, StoredMessage)>,
    ) -> Result<(), SearchError> {
        let docs = msgs
            .into_iter()
            .filter(|(_, m)| m.is_searchable() && m.event.is_none() && m.mls.is_none())
            .map(|(seq, m)| Change::Replace {
                room: room.to_owned(),
                seq,
                doc: Some(Doc {
                    room: room.to_owned(),
                    from: m.from,
                    ts: m.ts,
                    body: m.body,
                }),
            })
            .collect();
        self.enqueue(0, 0, docs).await
    }

    /// Removes the documents of messages (room, seq) the store no longer holds (retention, a
    /// deleted room, stale hits).
    pub async fn remove(&self, messages: Vec<(String, u64)>) -> Result<(), SearchError> {
        let docs = messages
            .into_iter()
            .map(|(room, seq)| Change::Replace {
                room,
                seq,
                doc: None,
            })
            .collect();
        self.enqueue(0, 0, docs).await
    }

    /// Adds `docs` of partition `p` to what the next commit writes; past [`MAX_WAITING`]
    /// they are handed to the index writer now.
    async fn enqueue(&self, p: u32, high: u64, mut docs: Vec<Change>) -> Result<(), SearchError> {
        let full = {
            let mut waiting = lock(&self.inner.waiting);
            waiting.docs.append(&mut docs);
            if let Some(h) = waiting.high.get_mut(p as usize) {
                *h = (*h).max(high);
            }
            waiting.since.get_or_insert_with(Instant::now);
            waiting.docs.len() >= MAX_WAITING
        };
        if full {
            let inner = self.inner.clone();
            self.with(move |index| write_waiting(&inner, index)).await?;
        }
        Ok(())
    }

    /// Writes and commits the waiting documents now (what the commit loop does when they
    /// are due).
    pub async fn commit(&self) -> Result<(), SearchError> {
        let inner = self.inner.clone();
        self.with(move |index| {
            write_waiting(&inner, index)?;
            index.commit(false, Instant::now())?;
            // Committed: nothing waits any more but what came in meanwhile, from now.
            let mut w = lock(&inner.waiting);
            w.since = (!w.docs.is_empty()).then(Instant::now);
            Ok(())
        })
        .await
    }

    /// Whether something has waited `commit_ms` (or anything waits, with `all`).
    fn due(&self, now: Instant, all: bool) -> bool {
        lock(&self.inner.waiting)
            .since
            .is_some_and(|since| all || now.duration_since(since) >= self.inner.commit_after)
    }

    /// Answers a search (of rooms the gateway checked), once one of the [`SEARCHES`] slots
    /// is free (waiting at most [`SEARCH_WAIT`]: then [`SearchError::Busy`]). The slot is
    /// held by the blocking search itself, which runs on when its caller gives up: a flood
    /// of costly queries holds at most those threads, not the service's every slot.
    pub async fn search(&self, req: SearchRequest) -> Result<SearchResults, SearchError> {
        let slot = tokio::time::timeout(SEARCH_WAIT, self.inner.searching.clone().acquire_owned())
            .await
            .map_err(|_| SearchError::Busy)?
            .map_err(|_| SearchError::Cancelled)?;
        let snapshot = self.with(|index| Ok(index.snapshot())).await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            snapshot.search(&req)
        })
        .await
        .map_err(|_| SearchError::Cancelled)?
    }

    /// Commits what is due, checking every tick (`1 / commits_per_second`), and closes the
    /// writer when idle, until `stop`; then commits whatever waits.
    pub async fn run(self, stop: CancellationToken) {
        let mut last_sweep = Instant::now();
        loop {
            let stopped = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(self.inner.tick) => false,
            };
            if stopped {
                if self.due(Instant::now(), true) {
                    // What stays uncommitted on a failure is caught up from the stream at
                    // the next start.
                    self.commit_logged().await;
                }
                // The writer's lock goes with it, even while clones of these indexes live on.
                let open = lock(&self.inner.index).is_some();
                let closed = match open {
                    true => self.with(MessageIndex::close).await,
                    false => Ok(()),
                };
                if let Err(e) = closed {
                    warn!(error = %chatmesh_protocol::error::Chain(&e), "closing the search index writer failed");
                }
                return;
            }
            if self.due(Instant::now(), false) {
                self.commit_logged().await;
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                self.close_idle().await;
            }
        }
    }

    /// [`Indexes::commit`], a failure counted and logged: whether it committed.
    async fn commit_logged(&self) -> bool {
        let Err(e) = self.commit().await else {
            return true;
        };
        counter!(m::SEARCH_ERRORS).increment(1);
        warn!(error = %chatmesh_protocol::error::Chain(&e), "committing the search index failed");
        false
    }

    /// Closes the writer when it had nothing to write for [`IDLE_CLOSE`].
    async fn close_idle(&self) {
        let open = lock(&self.inner.index)
            .as_ref()
            .is_some_and(MessageIndex::writing);
        if !open || lock(&self.inner.waiting).since.is_some() {
            return;
        }
        let done = self
            .with(move |index| index.commit(true, Instant::now()))
            .await;
        if let Err(e) = done {
            warn!(error = %chatmesh_protocol::error::Chain(&e), "closing an idle search index writer failed");
        }
    }
}

/// Opens the index in `dir/all`, first moving into it the per-partition indexes an older
/// chatmesh kept (`dir/p<N>`), which are then deleted.
fn open(dir: &Path, partitions: u32) -> Result<MessageIndex, SearchError> {
    let mut index = MessageIndex::open(&dir.join("all"), partitions)?;
    for p in 0..partitions {
        let old = dir.join(format!("p{p}"));
        if !old.is_dir() {
            continue;
        }
        let moved = index.adopt(p, &old)?;
        std::fs::remove_dir_all(&old).map_err(index::io_fail("deleting an old partition index"))?;
        info!(
            partition = p,
            documents = moved,
            "search: moved a partition's own index into the worker's one index"
        );
    }
    Ok(index)
}

/// Hands the waiting documents to the index writer (under the index's lock, so writes stay
/// in stream order). They stay due (`since`) until a commit: a failed commit is tried again
/// by the loop.
fn write_waiting(inner: &Inner, index: &mut MessageIndex) -> Result<(), SearchError> {
    let (docs, high) = {
        let mut w = lock(&inner.waiting);
        let zeros = vec![0; w.high.len()];
        (
            std::mem::take(&mut w.docs),
            std::mem::replace(&mut w.high, zeros),
        )
    };
    if docs.is_empty() && high.iter().all(|h| *h == 0) {
        return Ok(());
    }
    index.write(&high, docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An end-to-end encrypted message is not indexed (its body is ciphertext), nor are
    /// reactions and room events; a plain message and an edit are.
    #[test]
    fn what_is_indexed() {
        use chatmesh_protocol::e2ee::{encode, Mls, MlsKind};
        let plain = Payload {
            body: "hello".into(),
            ..Payload::default()
        };
        assert!(matches!(
            IndexOp::of(1, "r", &plain),
            Some(IndexOp::Add { .. })
        ));
        let edit = Payload {
            edit_of: Some(1),
            ..plain.clone()
        };
        assert!(matches!(
            IndexOp::of(2, "r", &edit),
            Some(IndexOp::Refresh { seq: 1, .. })
        ));
        let sealed = Payload {
            mls: Some(Mls {
                kind: MlsKind::App,
                epoch: 1,
                data: encode(b"ciphertext"),
                file: None,
            }),
            ..plain.clone()
        };
        assert!(IndexOp::of(3, "r", &sealed).is_none());
        let reaction = Payload {
            react_to: Some(1),
            ..plain
        };
        assert!(IndexOp::of(4, "r", &reaction).is_none());
    }

    /// Message `seq` of partition `p` in `room`, as sent.
    fn add(p: u32, seq: u64, room: &str, body: &str) -> Change {
        Change::Add {
            p,
            seq,
            doc: Doc {
                room: room.into(),
                from: "ann".into(),
                ts: 1,
                body: body.into(),
            },
        }
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

    /// Stored documents wait in memory until they are due (`commit_ms`); one commit
    /// covers every partition's, each partition's covered seq its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn documents_wait_for_their_commit_and_one_commit_covers_all_partitions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = indexes(dir.path(), 60_000, 4);
        idx.enqueue(1, 5, vec![add(1, 5, "b", "first words")])
            .await
            .expect("enqueue");
        idx.enqueue(0, 7, vec![add(0, 7, "a", "later words")])
            .await
            .expect("enqueue");
        assert!(!idx.due(Instant::now(), false), "not waited yet");
        let later = Instant::now() + Duration::from_secs(61);
        assert!(idx.due(later, false));
        assert_eq!(idx.covered(1).await.expect("covered"), 0);
        let hits = idx.search(ask("words", "b")).await.expect("search");
        assert!(hits.hits.is_empty(), "not searchable before the commit");

        idx.commit().await.expect("commit");
        assert_eq!(idx.covered(1).await.expect("covered"), 5);
        assert_eq!(idx.covered(0).await.expect("covered"), 7);
        assert_eq!(idx.covered(2).await.expect("covered"), 0);
        let hits = idx.search(ask("words", "b")).await.expect("search");
        assert_eq!(hits.hits.iter().map(|h| h.seq).collect::<Vec<_>>(), [5]);
        assert!(!idx.due(later, false), "nothing waits");

        // Retention's removals cover nothing new.
        idx.remove(vec![("b".to_owned(), 5)]).await.expect("remove");
        idx.commit().await.expect("commit");
        assert!(idx
            .search(ask("words", "b"))
            .await
            .expect("search")
            .hits
            .is_empty());
        assert_eq!(idx.covered(1).await.expect("covered"), 5);
    }

    /// While every search slot is held (searches still running on their threads, their
    /// callers gone or not), another search waits at most SEARCH_WAIT and is refused busy;
    /// a freed slot lets the next one run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn searches_beyond_the_slots_wait_then_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = indexes(dir.path(), 60_000, 4);
        let held = idx
            .inner
            .searching
            .clone()
            .acquire_many_owned(SEARCHES as u32)
            .await
            .expect("slots");
        let asked = Instant::now();
        let busy = idx.search(ask("words", "a")).await;
        assert!(matches!(busy, Err(SearchError::Busy)), "{busy:?}");
        assert!(asked.elapsed() >= SEARCH_WAIT, "it waited for a slot");
        drop(held);
        assert!(idx.search(ask("words", "a")).await.is_ok());
    }

    /// Past MAX_WAITING documents the send path hands them to the index writer itself;
    /// they stay due until committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_written_at_once_and_stays_due() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = indexes(dir.path(), 60_000, 4);
        let docs: Vec<_> = (1..=MAX_WAITING as u64)
            .map(|seq| add(2, seq, "a", "bulk"))
            .collect();
        idx.enqueue(2, MAX_WAITING as u64, docs)
            .await
            .expect("enqueue");
        assert!(lock(&idx.inner.waiting).docs.is_empty(), "written");
        assert!(idx.due(Instant::now(), true), "still due");
        assert_eq!(idx.covered(2).await.expect("covered"), 0, "not committed");
        idx.commit().await.expect("commit");
        assert_eq!(idx.covered(2).await.expect("covered"), MAX_WAITING as u64);
        assert!(!idx.due(Instant::now(), true));
    }

    /// The loop commits what is due within its pace, and everything when stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_loop_commits_what_is_due_and_everything_at_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = indexes(dir.path(), 100, 100);
        let stop = CancellationToken::new();
        let running = tokio::spawn(idx.clone().run(stop.clone()));
        idx.enqueue(0, 3, vec![add(0, 3, "a", "soon")])
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
        idx.enqueue(1, 9, vec![add(1, 9, "b", "late")])
            .await
            .expect("enqueue");
        stop.cancel();
        running.await.expect("loop ends");
        assert_eq!(idx.covered(1).await.expect("covered"), 9);
    }

    /// The per-partition indexes of older versions are moved into the one index when it
    /// is opened, and deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn old_partition_indexes_are_moved_in_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // An old layout: partition 1's own index, its payload the covered seq alone.
            let mut old = MessageIndex::open(&dir.path().join("p1"), 1).expect("old");
            old.write(&[0], vec![add(0, 6, "b", "kept words")])
                .expect("write");
            old.commit(false, Instant::now()).expect("commit");
        }
        overwrite_payload(&dir.path().join("p1"), "6");
        let idx = indexes(dir.path(), 60_000, 4);
        assert_eq!(idx.covered(1).await.expect("covered"), 6);
        let hits = idx.search(ask("kept", "b")).await.expect("search");
        assert_eq!(hits.hits.iter().map(|h| h.seq).collect::<Vec<_>>(), [6]);
        assert!(!dir.path().join("p1").exists(), "the old index is deleted");
    }

    /// Rewrites an index's commit payload (as an older version wrote it).
    fn overwrite_payload(dir: &Path, payload: &str) {
        let meta = dir.join("meta.json");
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta).expect("meta")).expect("json");
        json["payload"] = payload.into();
        std::fs::write(&meta, json.to_string()).expect("write meta");
    }
}
