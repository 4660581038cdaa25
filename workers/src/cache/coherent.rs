//! A moka cache keyed by (room, user) that never serves a value older than the last change
//! made through [`Coherent::changed`], even when a load raced that change.
//!
//! `try_get_with` loads a cold key once however many requests want it, but it inserts what
//! its loader read even if the value changed meanwhile (moka's `invalidate` does not cancel a
//! load in flight). So each value carries the epoch of its key's stripe read before the load,
//! a change bumps the epoch after it is stored, and a value whose epoch is behind is dropped
//! and loaded again.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use chatmesh_protocol::subjects::fnv1a32;
use moka::future::Cache;

use crate::store::StoreError;

const STRIPES: usize = 4096;
const ATTEMPTS: usize = 3;

#[derive(Clone)]
struct Stamped<V> {
    value: V,
    stamp: u64,
}

/// A (room, user) → `V` cache that stays coherent with changes made by this process.
pub struct Coherent<V> {
    cache: Cache<(String, String), Stamped<V>>,
    epochs: Box<[AtomicU64]>,
}

impl<V: Clone + Send + Sync + 'static> Coherent<V> {
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: Cache::new(capacity),
            epochs: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn epoch(&self, a: &str, b: &str) -> &AtomicU64 {
        let h = fnv1a32(a.as_bytes()) ^ fnv1a32(b.as_bytes()).rotate_left(16);
        &self.epochs[h as usize % STRIPES]
    }

    /// The value of (a, b), loaded with `load` (at most once at a time per key) when cold.
    pub async fn get_or_load<F, Fut>(&self, a: &str, b: &str, load: F) -> Result<V, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<V, StoreError>>,
    {
        Ok(self.lookup(a, b, load).await?.0)
    }

    /// [`Coherent::get_or_load`], also telling whether the value came from the cache (a hit)
    /// rather than from `load`.
    pub async fn lookup<F, Fut>(&self, a: &str, b: &str, load: F) -> Result<(V, bool), StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<V, StoreError>>,
    {
        let key = (a.to_owned(), b.to_owned());
        let epoch = self.epoch(a, b);
        for attempt in 0..ATTEMPTS {
            let got = self
                .cache
                .entry_by_ref(&key)
                .or_try_insert_with(async {
                    let stamp = epoch.load(Ordering::Acquire);
                    Ok::<_, StoreError>(Stamped {
                        value: load().await?,
                        stamp,
                    })
                })
                .await
                .map_err(StoreError::Shared)?;
            let hit = attempt == 0 && !got.is_fresh();
            let got = got.into_value();
            if got.stamp == epoch.load(Ordering::Acquire) {
                return Ok((got.value, hit));
            }
            self.cache.invalidate(&key).await;
        }
        // The stripe keeps changing under us: read through.
        Ok((load().await?, false))
    }

    /// Call after a change of (a, b) is stored: later reads see it.
    pub async fn changed(&self, a: &str, b: &str) {
        self.epoch(a, b).fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(&(a.to_owned(), b.to_owned())).await;
    }
}

impl<V> std::fmt::Debug for Coherent<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coherent")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}
