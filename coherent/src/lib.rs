//! A moka cache keyed by (room, user) that never serves a value older than the last change
//! made through [`Coherent::changed`], even when a load raced that change. The worker keeps
//! roles in one (changed when it stores a membership change), each gateway keeps access
//! answers in one (changed when a membership event arrives).
//!
//! `try_get_with` loads a cold key once however many requests want it, but it inserts what
//! its loader read even if the value changed meanwhile (moka's `invalidate` does not cancel a
//! load in flight). So each value carries the epoch of its key's stripe read before the load,
//! a change bumps the epoch after it is stored, and a value whose epoch is behind is dropped
//! and loaded again.
//!
//! Beside it, [`Buckets`]: token buckets by key in the same kind of bounded cache.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatmesh_protocol::subjects::fnv1a32;
use moka::future::Cache;

pub mod buckets;
pub use buckets::Buckets;

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
        Self::with_cache(Cache::new(capacity))
    }

    /// At most `capacity` entries, each kept at most `ttl` (for changes this process may
    /// not hear of).
    pub fn with_ttl(capacity: u64, ttl: Duration) -> Self {
        Self::with_cache(
            Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        )
    }

    fn with_cache(cache: Cache<(String, String), Stamped<V>>) -> Self {
        Self {
            cache,
            epochs: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn epoch(&self, a: &str, b: &str) -> &AtomicU64 {
        let h = fnv1a32(a.as_bytes()) ^ fnv1a32(b.as_bytes()).rotate_left(16);
        &self.epochs[h as usize % STRIPES]
    }

    /// The value of (a, b), loaded with `load` (at most once at a time per key) when cold.
    pub async fn get_or_load<F, Fut, E>(&self, a: &str, b: &str, load: F) -> Result<V, Arc<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        Ok(self.lookup(a, b, load).await?.0)
    }

    /// [`Coherent::get_or_load`], also telling whether the value came from the cache (a hit)
    /// rather than from `load`.
    /// Errors are shared (`Arc`) by every request that waited for the same load.
    pub async fn lookup<F, Fut, E>(&self, a: &str, b: &str, load: F) -> Result<(V, bool), Arc<E>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        let key = (a.to_owned(), b.to_owned());
        let epoch = self.epoch(a, b);
        for attempt in 0..ATTEMPTS {
            let got = self
                .cache
                .entry_by_ref(&key)
                .or_try_insert_with(async {
                    let stamp = epoch.load(Ordering::Acquire);
                    Ok::<_, E>(Stamped {
                        value: load().await?,
                        stamp,
                    })
                })
                .await?;
            let hit = attempt == 0 && !got.is_fresh();
            let got = got.into_value();
            if got.stamp == epoch.load(Ordering::Acquire) {
                return Ok((got.value, hit));
            }
            self.cache.invalidate(&key).await;
        }
        // The stripe keeps changing under us: read through.
        Ok((load().await.map_err(Arc::new)?, false))
    }

    /// Call after a change of (a, b) is stored: later reads see it.
    pub async fn changed(&self, a: &str, b: &str) {
        self.epoch(a, b).fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate(&(a.to_owned(), b.to_owned())).await;
    }

    /// [`Coherent::changed`] for a caller that cannot wait: the value cached now is no
    /// longer served (the next read finds its stamp behind and loads again), nor is one
    /// loading now kept; the entry itself goes at that read.
    pub fn changed_now(&self, a: &str, b: &str) {
        self.epoch(a, b).fetch_add(1, Ordering::AcqRel);
    }

    /// Call when changes may have been missed (their announcements lost): every later read
    /// loads again, and no load in flight now is kept.
    pub fn changed_all(&self) {
        for epoch in &self.epochs {
            epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.cache.invalidate_all();
    }
}

impl<V> std::fmt::Debug for Coherent<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coherent")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A load that read the old value while a change was stored and announced is not kept:
    /// the next read loads again and sees the change.
    #[tokio::test]
    async fn a_load_racing_a_change_is_not_kept() {
        let cache: Arc<Coherent<&'static str>> = Arc::new(Coherent::new(100));
        let store = Arc::new(std::sync::Mutex::new("member"));
        let loads = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let slow = {
            let (cache, store, loads) = (cache.clone(), store.clone(), loads.clone());
            let gates = std::sync::Mutex::new(Some((started_tx, release_rx)));
            tokio::spawn(async move {
                cache
                    .get_or_load("room", "ann", || {
                        let value = *store.lock().unwrap();
                        let gate = gates.lock().unwrap().take();
                        loads.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if let Some((started, release)) = gate {
                                let _ = started.send(());
                                let _ = release.await;
                            }
                            Ok::<_, ()>(value)
                        }
                    })
                    .await
            })
        };
        started_rx.await.unwrap();
        // The change is stored and announced while the load holds the old value.
        *store.lock().unwrap() = "removed";
        cache.changed("room", "ann").await;
        release_tx.send(()).unwrap();
        let first = slow.await.unwrap().unwrap();
        assert_eq!(
            first, "removed",
            "the racing load was dropped and loaded again"
        );
        let load = || {
            let value = *store.lock().unwrap();
            async move { Ok::<_, ()>(value) }
        };
        assert_eq!(
            cache.get_or_load("room", "ann", load).await.unwrap(),
            "removed"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    /// After [`Coherent::changed_now`] (no await) the cached value is not served again.
    #[tokio::test]
    async fn changed_now_drops_the_cached_value() {
        let cache: Coherent<&'static str> = Coherent::new(100);
        let value = std::sync::Mutex::new("member");
        let load = || {
            let v = *value.lock().unwrap();
            async move { Ok::<_, ()>(v) }
        };
        assert_eq!(
            cache.get_or_load("room", "ann", load).await.unwrap(),
            "member"
        );
        *value.lock().unwrap() = "banned";
        assert_eq!(
            cache.get_or_load("room", "ann", load).await.unwrap(),
            "member"
        );
        cache.changed_now("room", "ann");
        assert_eq!(
            cache.get_or_load("room", "ann", load).await.unwrap(),
            "banned"
        );
    }

    /// After [`Coherent::changed_all`] every key is loaded again.
    #[tokio::test]
    async fn changed_all_drops_every_value() {
        let cache: Coherent<u32> = Coherent::new(100);
        for user in ["ann", "bob"] {
            let (v, hit) = cache
                .lookup("room", user, || async { Ok::<_, ()>(1) })
                .await
                .unwrap();
            assert_eq!((v, hit), (1, false));
            let (v, hit) = cache
                .lookup("room", user, || async { Ok::<_, ()>(2) })
                .await
                .unwrap();
            assert_eq!((v, hit), (1, true));
        }
        cache.changed_all();
        for user in ["ann", "bob"] {
            let (v, hit) = cache
                .lookup("room", user, || async { Ok::<_, ()>(3) })
                .await
                .unwrap();
            assert_eq!((v, hit), (3, false), "{user} was loaded again");
        }
    }
}
