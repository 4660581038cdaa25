//! The ordered key-value storage the chat model is written against: point reads, atomic write
//! batches, bounded range scans in both directions and range deletes, nothing more.
//!
//! [`KvStore`] is the contract every backend implements and the conformance tests check;
//! [`Store`] is the one place a backend is chosen. Methods are async because the networked
//! backend (TiKV) is; the embedded fjall backend moves commits and large scans to the blocking
//! pool so an fsync never stalls the runtime. Keys compare as raw bytes, so the model encodes
//! numbers big-endian and fixed-width.

pub mod fjall;
mod group;
pub mod reverse;
#[cfg(feature = "tikv")]
pub mod tikv;

use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use self::fjall::{FjallMemory, FjallStore};
pub use self::group::GroupCommit;
#[cfg(feature = "tikv")]
pub use self::tikv::TikvStore;

/// A key and its value, as a scan returns them.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// Why a storage operation failed. Never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("fjall: {0}")]
    Fjall(#[from] ::fjall::Error),
    #[error("opening the store at {path}: {detail}")]
    Open { path: String, detail: String },
    /// A networked backend's operation failed (TiKV: region errors, PD unreachable, ...).
    #[error("{op}: {detail}")]
    Backend { op: &'static str, detail: String },
    /// A networked backend's operation did not finish in time.
    #[error("{op} timed out after {after_ms} ms")]
    Timeout { op: &'static str, after_ms: u64 },
    /// Another process (a running worker) holds the embedded database.
    #[error("the store at {path} is locked by another process (stop the worker first)")]
    Locked { path: String },
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed")]
    Task(#[source] tokio::task::JoinError),
    /// A part of the store (the group committer) stopped before answering.
    #[error("{0} stopped")]
    Stopped(&'static str),
    /// A reverse scan gave up (a bound that keeps one scan from running away).
    #[error("reverse scan gave up: {0}")]
    ScanGaveUp(String),
    #[error("corrupt record at key {key}: {detail}")]
    Corrupt { key: String, detail: String },
    /// An error of a cache loader, shared by every caller that waited for that load.
    #[error("{0}")]
    Shared(Arc<StoreError>),
    /// A write failed in a way that leaves the store refusing every later one (fjall after a
    /// failed journal write or fsync: a full disk, an I/O error).
    #[error("the store can no longer write ({0}): restart the worker (its journal recovers what was committed)")]
    Fatal(String),
}

impl StoreError {
    /// A backend error after which the store takes no more writes.
    pub fn is_fatal(&self) -> bool {
        match self {
            StoreError::Fatal(_) | StoreError::Fjall(::fjall::Error::Poisoned) => true,
            StoreError::Shared(e) => e.is_fatal(),
            _ => false,
        }
    }
}

/// How to reach a TiKV cluster (`[worker.tikv]`, used when `backend = "tikv"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TikvConfig {
    /// PD endpoints, `host:port`.
    pub pd_endpoints: Vec<String>,
    /// API v2 keyspace (TiKV `storage.api-version = 2`); none: API v1 raw keyspace.
    pub keyspace: Option<String>,
    /// Prepended to every key, to share one cluster between deployments.
    pub key_prefix: String,
    /// Connecting to PD at start, ms.
    pub connect_timeout_ms: u64,
    /// Each request (and each page of a scan), ms.
    pub request_timeout_ms: u64,
    /// TLS: CA, client certificate and key (PEM paths); all three or none.
    pub ca_path: Option<PathBuf>,
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
}

impl Default for TikvConfig {
    fn default() -> Self {
        Self {
            pd_endpoints: vec!["127.0.0.1:2379".into()],
            keyspace: None,
            key_prefix: String::new(),
            connect_timeout_ms: 10_000,
            request_timeout_ms: 2_000,
            ca_path: None,
            cert_path: None,
            key_path: None,
        }
    }
}

impl TikvConfig {
    pub(crate) fn problems(&self, out: &mut Vec<String>) {
        if self.pd_endpoints.is_empty() {
            out.push("worker.tikv.pd_endpoints must not be empty".into());
        }
        let tls = [&self.ca_path, &self.cert_path, &self.key_path];
        if tls.iter().any(|p| p.is_some()) && !tls.iter().all(|p| p.is_some()) {
            out.push("worker.tikv: set ca_path, cert_path and key_path together (or none)".into());
        }
        if !(100..=600_000).contains(&self.request_timeout_ms)
            || !(100..=600_000).contains(&self.connect_timeout_ms)
        {
            out.push("worker.tikv timeouts must be between 100 and 600000 ms".into());
        }
        if !cfg!(feature = "tikv") {
            out.push(
                "worker.backend = \"tikv\" needs chatmesh built with `--features tikv`".into(),
            );
        }
    }
}

/// When a committed write batch reaches the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// `fdatasync` once per batch before the commit returns (group commit). Survives power loss.
    #[default]
    SyncData,
    /// Hand the batch to the OS only. Survives a process crash, not a power loss.
    Buffered,
}

/// Direction of a range scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Ascending key order, starting at the range's start.
    Forward,
    /// Descending key order, starting just below the range's end.
    Reverse,
}

/// One operation of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Puts and deletes applied atomically, in order, by [`KvStore::write`].
///
/// A batch may be cut into stages with [`WriteBatch::barrier`]. A backend whose batches are
/// atomic (fjall) ignores them; one whose batches are not (TiKV raw: `batch_put` is split by
/// region and sent concurrently) applies the stages one after the other, so nothing of a
/// later stage is stored before all of the earlier stages are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
    /// Indexes into `ops` where a new stage starts.
    barriers: Vec<usize>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(BatchOp::Put(key, value));
    }
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(BatchOp::Delete(key));
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
    /// Ends the current stage: what was added so far is applied before what comes next.
    pub fn barrier(&mut self) {
        if self.barriers.last() != Some(&self.ops.len()) && !self.ops.is_empty() {
            self.barriers.push(self.ops.len());
        }
    }
    /// One batch of all of `batches`, stage by stage: stage i of the result holds stage i of
    /// every batch, so each batch's order between its stages still holds (a checkpoint is
    /// never applied before the messages it covers, whichever batch they came from).
    pub fn merge(batches: Vec<WriteBatch>) -> WriteBatch {
        if batches.len() == 1 {
            return batches.into_iter().next().unwrap_or_default();
        }
        let mut stages: Vec<Vec<BatchOp>> = Vec::new();
        for batch in batches {
            for (i, stage) in batch.into_stages().into_iter().enumerate() {
                match stages.get_mut(i) {
                    Some(ops) => ops.extend(stage),
                    None => stages.push(stage),
                }
            }
        }
        let mut merged = WriteBatch::new();
        for stage in stages {
            merged.ops.extend(stage);
            merged.barrier();
        }
        merged
    }
    /// One batch of all of `batches` in the order given, each whole (its stages kept): for
    /// backends whose batches are atomic, where the stages mean nothing and a later batch's
    /// write of a key must come after an earlier one's.
    pub fn concat(batches: Vec<WriteBatch>) -> WriteBatch {
        let mut all = WriteBatch::new();
        for batch in batches {
            for stage in batch.into_stages() {
                all.ops.extend(stage);
                all.barrier();
            }
        }
        all
    }
    /// The keys this batch writes or deletes.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.ops.iter().map(|op| match op {
            BatchOp::Put(k, _) | BatchOp::Delete(k) => k.as_slice(),
        })
    }
    /// The operations, stage by stage (no empty stage).
    pub fn into_stages(self) -> Vec<Vec<BatchOp>> {
        let mut stages = Vec::with_capacity(self.barriers.len() + 1);
        let mut ops = self.ops.into_iter();
        let mut at = 0;
        for b in self.barriers {
            stages.push(ops.by_ref().take(b - at).collect());
            at = b;
        }
        let rest: Vec<BatchOp> = ops.collect();
        if !rest.is_empty() {
            stages.push(rest);
        }
        stages
    }
}

/// An ordered key-value store. Ranges are half-open (`start..end`); a range whose start is not
/// below its end is empty.
pub trait KvStore: Send + Sync {
    /// The value of `key`, if any.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// Applies every operation of `batch` or none; durable per the backend's fsync policy
    /// when this returns.
    fn write(&self, batch: WriteBatch) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// At most `limit` pairs of `range`, in `dir` order.
    fn scan(
        &self,
        range: Range<Vec<u8>>,
        dir: Direction,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<KvPair>, StoreError>> + Send;
    /// Deletes every key of `range` and returns how many there were. Atomic per chunk of keys,
    /// not as a whole: a crash midway leaves a prefix of the range deleted.
    fn delete_range(
        &self,
        range: Range<Vec<u8>>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Makes everything written so far durable (used on shutdown).
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The configured storage backend. Cheap to clone; clones share the same database.
#[derive(Clone)]
pub enum Store {
    Fjall(FjallStore),
    #[cfg(feature = "tikv")]
    Tikv(TikvStore),
}

impl Store {
    /// Resolves once a write failed for good ([`StoreError::is_fatal`]): this store takes
    /// no more writes, and a worker on it stops so that its process can be restarted.
    pub async fn failed(&self) -> StoreError {
        match self {
            Store::Fjall(s) => s.failed().await,
            #[cfg(feature = "tikv")]
            Store::Tikv(_) => std::future::pending().await,
        }
    }

    /// Makes every commit so far survive a power loss (fjall with `fsync = "buffered"`: one
    /// fsync; otherwise each commit was already durable). Before messages leave the stream.
    pub async fn durable(&self) -> Result<(), StoreError> {
        match self {
            Store::Fjall(s) => s.durable().await,
            #[cfg(feature = "tikv")]
            Store::Tikv(_) => Ok(()),
        }
    }

    /// Whether a reader can never see part of a [`WriteBatch`] (fjall: yes; TiKV raw: only
    /// stage by stage, see [`WriteBatch::barrier`]).
    pub fn atomic_batches(&self) -> bool {
        match self {
            Store::Fjall(_) => true,
            #[cfg(feature = "tikv")]
            Store::Tikv(_) => false,
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Fjall(_) => f.write_str("Store::Fjall"),
            #[cfg(feature = "tikv")]
            Store::Tikv(_) => f.write_str("Store::Tikv"),
        }
    }
}

impl KvStore for Store {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::Fjall(s) => s.get(key).await,
            #[cfg(feature = "tikv")]
            Store::Tikv(s) => s.get(key).await,
        }
    }
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        match self {
            Store::Fjall(s) => s.write(batch).await,
            #[cfg(feature = "tikv")]
            Store::Tikv(s) => s.write(batch).await,
        }
    }
    async fn scan(
        &self,
        range: Range<Vec<u8>>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        match self {
            Store::Fjall(s) => s.scan(range, dir, limit).await,
            #[cfg(feature = "tikv")]
            Store::Tikv(s) => s.scan(range, dir, limit).await,
        }
    }
    async fn delete_range(&self, range: Range<Vec<u8>>) -> Result<u64, StoreError> {
        match self {
            Store::Fjall(s) => s.delete_range(range).await,
            #[cfg(feature = "tikv")]
            Store::Tikv(s) => s.delete_range(range).await,
        }
    }
    async fn flush(&self) -> Result<(), StoreError> {
        match self {
            Store::Fjall(s) => s.flush().await,
            #[cfg(feature = "tikv")]
            Store::Tikv(s) => s.flush().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(tag: &str, stages: usize) -> WriteBatch {
        let mut b = WriteBatch::new();
        for i in 0..stages {
            b.put(format!("{tag}{i}").into_bytes(), vec![]);
            b.barrier();
        }
        b
    }

    fn keys(stage: &[BatchOp]) -> Vec<String> {
        stage
            .iter()
            .map(|op| match op {
                BatchOp::Put(k, _) | BatchOp::Delete(k) => String::from_utf8_lossy(k).into(),
            })
            .collect()
    }

    #[test]
    fn merge_keeps_every_batch_stage_order() {
        let merged = WriteBatch::merge(vec![staged("a", 2), staged("b", 1), staged("c", 3)]);
        let stages: Vec<_> = merged.into_stages().iter().map(|s| keys(s)).collect();
        assert_eq!(
            stages,
            vec![vec!["a0", "b0", "c0"], vec!["a1", "c1"], vec!["c2"]]
        );
    }

    /// Batches concatenated keep the order they came in, across their stages: a later
    /// batch's delete of a key an earlier batch puts in its second stage comes last.
    #[test]
    fn concat_keeps_the_order_of_the_batches() {
        let mut first = WriteBatch::new();
        first.put(b"m".to_vec(), vec![1]);
        first.barrier();
        first.put(b"stats".to_vec(), vec![1]);
        let mut second = WriteBatch::new();
        second.delete(b"stats".to_vec());
        let all = WriteBatch::concat(vec![first, second]);
        let order: Vec<String> = all.into_stages().iter().flat_map(|s| keys(s)).collect();
        assert_eq!(order, ["m", "stats", "stats"]);
    }

    #[test]
    fn merge_of_one_is_that_batch() {
        assert_eq!(WriteBatch::merge(vec![staged("a", 2)]), staged("a", 2));
        assert!(WriteBatch::merge(vec![]).is_empty());
    }
}
