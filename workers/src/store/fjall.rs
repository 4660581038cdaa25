//! The embedded backend: one fjall 3 database with one keyspace. A [`WriteBatch`] becomes one
//! fjall batch, committed on the blocking pool with `PersistMode::SyncData` (or buffered, per
//! [`FsyncPolicy`]), so every batch costs at most one fsync however many keys it holds.
//! Point reads and small scans run inline: they are served from memtables and the block
//! cache in microseconds, and a hop to the blocking pool would cost more than they do.
//!
//! Reads go through a snapshot: fjall's plain `Keyspace::get`/`range` read at the newest
//! sequence number and can see half of a batch that is being applied, a snapshot cannot.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use tokio::sync::watch;

use super::{BatchOp, Direction, FsyncPolicy, KvPair, KvStore, StoreError, WriteBatch};

/// Scans asking for more pairs than this run on the blocking pool.
const INLINE_SCAN_LIMIT: usize = 256;
/// Keys deleted per atomic chunk by `delete_range`.
const DELETE_CHUNK: usize = 4096;
const KEYSPACE: &str = "chat";
/// The file fjall locks (`fjall::file::LOCK_FILE`, not exported) while a database is open.
const LOCK_FILE: &str = "lock";

/// Memory a fjall database may hold: the block cache, and the active memtable that a flush
/// turns into a table file. The memtable is the store's share of a worker's steady RSS:
/// fjall's 64 MiB default takes ~35 minutes to fill at 100 sends/s, so memory looks like it
/// leaks for that long before it levels off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FjallMemory {
    /// Block cache, bytes.
    pub cache_bytes: u64,
    /// Largest memtable before it is flushed, bytes.
    pub memtable_bytes: u64,
}

impl Default for FjallMemory {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            memtable_bytes: 16 << 20,
        }
    }
}

/// A fjall database and its one keyspace. Clones share them.
#[derive(Clone)]
pub struct FjallStore {
    db: Database,
    ks: Keyspace,
    persist: Option<PersistMode>,
    /// Set by the first write that failed for good (fjall poisons itself after a failed
    /// journal write or fsync and refuses every later write).
    failed: Arc<watch::Sender<Option<String>>>,
}

impl FjallStore {
    /// Opens (or creates) the database in `dir`. Blocks: call it from `spawn_blocking`.
    pub fn open(dir: &Path, fsync: FsyncPolicy, memory: FjallMemory) -> Result<Self, StoreError> {
        let open_err = |detail: String| StoreError::Open {
            path: dir.display().to_string(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let db = Database::builder(dir)
            .cache_size(memory.cache_bytes)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => StoreError::Locked {
                    path: dir.display().to_string(),
                },
                e => open_err(e.to_string()),
            })?;
        let ks = db
            .keyspace(KEYSPACE, || {
                KeyspaceCreateOptions::default().max_memtable_size(memory.memtable_bytes)
            })
            .map_err(|e| open_err(e.to_string()))?;
        let persist = match fsync {
            FsyncPolicy::SyncData => Some(PersistMode::SyncData),
            FsyncPolicy::Buffered => Some(PersistMode::Buffer),
        };
        Ok(Self {
            db,
            ks,
            persist,
            failed: Arc::new(watch::channel(None).0),
        })
    }

    /// Makes every commit so far survive a power loss: nothing to do with `sync_data` (each
    /// commit synced), one fsync with `buffered`.
    pub async fn durable(&self) -> Result<(), StoreError> {
        match self.persist {
            Some(PersistMode::Buffer) => self.flush().await,
            _ => Ok(()),
        }
    }

    /// Resolves once a write failed for good (see the field `failed`).
    pub async fn failed(&self) -> StoreError {
        let mut rx = self.failed.subscribe();
        // The sender lives as long as the store, and this clone holds it.
        let why = rx
            .wait_for(Option::is_some)
            .await
            .map(|why| why.clone().unwrap_or_default())
            .unwrap_or_default();
        StoreError::Fatal(why)
    }

    /// Whether another opener (this process or another) holds the database in `dir` now: a
    /// probe of fjall's lock file that opens nothing (no recovery, no log lines), for a
    /// standby that asks every 250 ms. False when no database exists there yet. A hint
    /// only: [`FjallStore::open`] decides, and says [`StoreError::Locked`] itself.
    pub fn held_elsewhere(dir: &Path) -> bool {
        let Ok(file) = std::fs::File::open(dir.join(LOCK_FILE)) else {
            return false;
        };
        // fjall 3 itself needs Rust 1.90 (File::try_lock is 1.89).
        #[allow(clippy::incompatible_msrv)]
        let probe = file.try_lock();
        // On success the lock is released when `file` closes, here.
        matches!(probe, Err(std::fs::TryLockError::WouldBlock))
    }

    /// Table files on disk: each memtable flush writes one (compactions merge them).
    pub fn table_count(&self) -> usize {
        self.ks.table_count()
    }

    fn commit(&self, ops: Vec<BatchOp>) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(self.persist);
        for op in ops {
            match op {
                BatchOp::Put(k, v) => batch.insert(&self.ks, k, v),
                BatchOp::Delete(k) => batch.remove(&self.ks, k),
            }
        }
        batch.commit().map_err(|e| {
            // The write that failed (EIO, ENOSPC) poisons the database: it is the cause;
            // every later write only says `Poisoned`.
            if matches!(e, fjall::Error::Poisoned | fjall::Error::Io(_)) {
                let why = e.to_string();
                self.failed.send_if_modified(|failed| {
                    let first = failed.is_none();
                    failed.get_or_insert(why);
                    first
                });
            }
            StoreError::from(e)
        })
    }

    fn scan_blocking(
        &self,
        range: Range<Vec<u8>>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        if range.start >= range.end || limit == 0 {
            return Ok(Vec::new());
        }
        let iter = self.db.snapshot().range(&self.ks, range);
        let iter: Box<dyn Iterator<Item = fjall::Guard>> = match dir {
            Direction::Forward => Box::new(iter),
            Direction::Reverse => Box::new(iter.rev()),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for guard in iter.take(limit) {
            let (k, v) = guard.into_inner()?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn delete_range_blocking(&self, range: Range<Vec<u8>>) -> Result<u64, StoreError> {
        let mut start = range.start;
        let mut total = 0u64;
        while start < range.end {
            let mut keys = Vec::with_capacity(DELETE_CHUNK);
            for guard in self
                .ks
                .range(start.clone()..range.end.clone())
                .take(DELETE_CHUNK)
            {
                keys.push(guard.key()?.to_vec());
            }
            let Some(last) = keys.last().cloned() else {
                break;
            };
            let n = keys.len();
            self.commit(keys.into_iter().map(BatchOp::Delete).collect())?;
            total += n as u64;
            if n < DELETE_CHUNK {
                break;
            }
            // The smallest key above `last`.
            start = last;
            start.push(0);
        }
        Ok(total)
    }
}

/// Runs blocking fjall work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StoreError::Task)?
}

impl KvStore for FjallStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.snapshot().get(&self.ks, key)?.map(|v| v.to_vec()))
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        blocking(move || this.commit(batch.into_ops())).await
    }

    async fn scan(
        &self,
        range: Range<Vec<u8>>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        if limit <= INLINE_SCAN_LIMIT {
            return self.scan_blocking(range, dir, limit);
        }
        let this = self.clone();
        blocking(move || this.scan_blocking(range, dir, limit)).await
    }

    async fn delete_range(&self, range: Range<Vec<u8>>) -> Result<u64, StoreError> {
        let this = self.clone();
        blocking(move || this.delete_range_blocking(range)).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        blocking(move || Ok(db.persist(PersistMode::SyncAll)?)).await
    }
}
