//! The worker's moka caches, wrapping the model (never a backend):
//!
//! - room records: immutable once created, so only rooms that exist are cached;
//! - access, the role of (room, user): [`Coherent`], dropped on every membership change;
//! - room stats (last seq, count): inserted ONLY by the store writer, after its batch is
//!   committed, so the writer's `prev` computation never reads a value a racing reader put
//!   back; readers fall back to the store without inserting;
//! - recent pages: loaded on demand, extended by the store writer after each batch, and
//!   checked against the room's last seq on every read, so a page a racing load left behind
//!   is noticed and dropped.
//!
//! Beside them, the one gate between the store writer and retention ([`Caches::writing`]):
//! the writer reads a change's target and writes it back changed; retention deleting that
//! target in between would see it written back, below the messages it kept deleted.
//!
//! Every lookup is counted in `chatmesh_worker_cache_requests_total{cache, result}` (the
//! hit ratio of each cache, named like the gateway's `chatmesh_cache_requests_total`).

mod page;

use std::sync::Arc;

use chatmesh_protocol::message::Message;
use chatmesh_protocol::service::Role;
use moka::future::Cache;

use crate::model::{Model, RoomMeta, RoomStats};
use crate::store::StoreError;

pub use chatmesh_coherent::Coherent;
pub use page::Page;

/// Every cache of one worker.
#[derive(Debug)]
pub struct Caches {
    rooms: Cache<String, Arc<RoomMeta>>,
    access: Coherent<Option<Role>>,
    stats: Cache<String, RoomStats>,
    pages: Cache<String, Arc<Page>>,
    page_len: usize,
    /// Held shared by each store writer over a batch, exclusively by retention over a delete.
    writing: tokio::sync::RwLock<()>,
}

/// Books one lookup of `cache` in `chatmesh_worker_cache_requests_total` (a miss is a load
/// from the store, or a cached value that could not answer).
fn count(cache: &'static str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!(crate::metrics::CACHE_REQUESTS, "cache" => cache, "result" => result)
        .increment(1);
}

enum RoomLoad {
    Missing,
    Store(Arc<StoreError>),
}

/// How big each cache may grow (`[worker]` settings; see `WorkerConfig::cache_sizes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSizes {
    pub page_cache_mb: u64,
    pub room_cache_entries: u64,
    pub access_cache_entries: u64,
    pub stats_cache_entries: u64,
    /// Messages kept per room in its recent page.
    pub recent_page_len: usize,
}

impl Caches {
    pub fn new(cfg: CacheSizes) -> Self {
        let pages = Cache::builder()
            .max_capacity(cfg.page_cache_mb.saturating_mul(1 << 20))
            .weigher(|room: &String, page: &Arc<Page>| {
                page.weight().saturating_add(room.len() as u32)
            })
            .build();
        Self {
            rooms: Cache::new(cfg.room_cache_entries),
            access: Coherent::new(cfg.access_cache_entries),
            stats: Cache::new(cfg.stats_cache_entries),
            pages,
            page_len: cfg.recent_page_len,
            writing: tokio::sync::RwLock::new(()),
        }
    }

    /// Store writer only: held while a batch is read and written (the partitions' writers
    /// share it).
    pub(crate) async fn writing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.writing.read().await
    }

    /// Retention only: held while it reads and deletes a room's oldest messages, so no
    /// store writer reads one of them before and writes it back after.
    pub(crate) async fn trimming(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.writing.write().await
    }

    /// The record of `room`, if it exists.
    pub async fn room(
        &self,
        model: &Model,
        room: &str,
    ) -> Result<Option<Arc<RoomMeta>>, StoreError> {
        let got = self
            .rooms
            .entry_by_ref(room)
            .or_try_insert_with(async {
                match model.room(room).await {
                    Ok(Some(meta)) => Ok(Arc::new(meta)),
                    Ok(None) => Err(RoomLoad::Missing),
                    Err(e) => Err(RoomLoad::Store(Arc::new(e))),
                }
            })
            .await;
        // Rooms that do not exist are not cached: every lookup of one is a miss.
        count("room", matches!(&got, Ok(e) if !e.is_fresh()));
        match got {
            Ok(meta) => Ok(Some(meta.into_value())),
            Err(e) => match &*e {
                RoomLoad::Missing => Ok(None),
                RoomLoad::Store(inner) => Err(StoreError::Shared(inner.clone())),
            },
        }
    }

    /// `user`'s role in `room`, if a member.
    pub async fn role(
        &self,
        model: &Model,
        room: &str,
        user: &str,
    ) -> Result<Option<Role>, StoreError> {
        let (role, hit) = self
            .access
            .lookup(room, user, || model.role(room, user))
            .await
            .map_err(StoreError::Shared)?;
        count("access", hit);
        Ok(role)
    }

    /// Call after a membership change of (room, user) is stored.
    pub async fn role_changed(&self, room: &str, user: &str) {
        self.access.changed(room, user).await;
    }

    /// How far the store writer got in `room`; never caches what it reads from the store.
    pub async fn stats(&self, model: &Model, room: &str) -> Result<RoomStats, StoreError> {
        let cached = self.stats.get(room).await;
        count("stats", cached.is_some());
        match cached {
            Some(s) => Ok(s),
            None => model.stats(room).await,
        }
    }

    /// The recent page of `room` if it holds every message up to `last_seq`.
    pub async fn page(
        &self,
        model: &Model,
        room: &str,
        last_seq: u64,
    ) -> Result<Option<Arc<Page>>, StoreError> {
        let entry = self
            .pages
            .entry_by_ref(room)
            .or_try_insert_with(async {
                model
                    .latest(room, self.page_len)
                    .await
                    .map(|m| Arc::new(Page::new(m)))
            })
            .await
            .map_err(StoreError::Shared);
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                count("page", false);
                return Err(e);
            }
        };
        let fresh = entry.is_fresh();
        let page = entry.into_value();
        if page.last_seq() >= last_seq {
            count("page", !fresh);
            return Ok(Some(page));
        }
        // Loaded before the writer's latest batch: drop it, the next read loads a fresh one.
        count("page", false);
        self.pages.invalidate(room).await;
        Ok(None)
    }

    /// Store writer only: after `new` (oldest first) was committed with `stats`.
    pub(crate) async fn stored(&self, room: &str, stats: RoomStats, new: &[Message]) {
        self.stats.insert(room.to_owned(), stats).await;
        if let Some(page) = self.pages.get(room).await {
            match page.extended(new, self.page_len) {
                Some(p) => self.pages.insert(room.to_owned(), Arc::new(p)).await,
                None => self.pages.invalidate(room).await,
            }
        }
    }

    /// Retention only: old messages of `room` were deleted; its page may hold some of them.
    pub(crate) async fn trimmed(&self, room: &str) {
        self.pages.invalidate(room).await;
    }

    /// Admin API only: `room` was deleted (its record, stats and messages are gone).
    pub(crate) async fn room_deleted(&self, room: &str) {
        self.rooms.invalidate(room).await;
        self.stats.invalidate(room).await;
        self.pages.invalidate(room).await;
    }

    /// Store writer only: a partition came to this worker or left it. Another worker wrote
    /// (or will write) its rooms meanwhile, so nothing cached of them can be trusted: the
    /// stats the writer computes `prev` from, the recent pages, roles and room records. All
    /// are forgotten (every partition's: this is rare, and they load again from the store).
    pub(crate) fn partition_moved(&self) {
        self.rooms.invalidate_all();
        self.access.changed_all();
        self.reset_written();
    }

    /// Store writer only: after a session ended in error (a failed commit, a replaced
    /// consumer), forget every stat and page (the store may hold more than they say).
    pub(crate) fn reset_written(&self) {
        self.stats.invalidate_all();
        self.pages.invalidate_all();
    }
}
