//! Token buckets by key in a bounded moka cache: what the gateways' throttles and the
//! workers' per-account login count are made of. An entry idle long enough to be full again
//! is dropped (it carries no information), and eviction under the bound forgets a key, which
//! errs on the side of letting it through. Times use tokio's clock so tests can pause it.

use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache;
use tokio::time::Instant;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key, each refilling at `rate` tokens per second up to `burst`.
#[derive(Debug)]
pub struct Buckets<K: Hash + Eq + Send + Sync + 'static> {
    cache: Cache<K, Arc<Mutex<Bucket>>>,
    rate: f64,
    burst: f64,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Buckets<K> {
    pub fn new(per: Duration, count: u32, burst: u32, entries: u64) -> Self {
        let rate = f64::from(count.max(1)) / per.as_secs_f64();
        let burst = f64::from(burst.max(1));
        // An entry idle long enough to be full again carries no information.
        let refill = Duration::from_secs_f64(burst / rate + 1.0);
        Self {
            cache: Cache::builder()
                .max_capacity(entries)
                .time_to_idle(refill)
                .build(),
            rate,
            burst,
        }
    }

    /// Takes a token (`take`) or only checks that one is there; `Err` is the wait for one.
    pub async fn check(&self, key: K, take: bool) -> Result<(), Duration> {
        let burst = self.burst;
        let bucket = self
            .cache
            .get_with(key, async move {
                Arc::new(Mutex::new(Bucket {
                    tokens: burst,
                    at: Instant::now(),
                }))
            })
            .await;
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            if take {
                b.tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }

    /// Gives back a token taken for something that turned out not to count.
    pub async fn refund(&self, key: &K) {
        if let Some(bucket) = self.cache.get(key).await {
            let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
            b.tokens = (b.tokens + 1.0).min(self.burst);
        }
    }
}
