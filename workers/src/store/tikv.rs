//! The TiKV backend, on tikv-client 0.4's raw API (`default-features = false`), built with the
//! `tikv` cargo feature. It works around the client's known pitfalls instead of trusting it:
//!
//! - **Batches are not atomic.** `batch_put` is split by region and the pieces are sent
//!   concurrently; a crash, or a reader, can see part of a batch. `write` therefore applies a
//!   [`WriteBatch`]'s stages (see [`WriteBatch::barrier`]) one after the other, and the store
//!   writer puts its messages in a stage before the room stats and the partition checkpoint:
//!   a crash mid-batch leaves messages above the checkpoint, which the redelivery rewrites with
//!   the same value (messages are keyed by room and seq, and their `prev`/`n` come from the
//!   stats that did not move). Multi-key service writes (a member and its mirror) may be seen
//!   half-written until the client retries; the model tolerates that (see docs/STORAGE.md).
//! - **Forward scans wrap around.** A raw forward scan that reaches the last region before
//!   filling its limit restarts at the start of the keyspace: it returns keys outside the asked
//!   range, or loops for ever when the keyspace holds fewer keys than the limit. Every result
//!   here is clamped to the asked range and cut at the first key that does not ascend; each
//!   call asks for at most [`PAGE`] keys, and [`open`](TikvStore::connect) writes a fence of
//!   `PAGE` keys `00 00 xx xx` at the bottom of the keyspace so a wrapped call always fills its
//!   limit and ends; each RPC is bounded by a timeout. An API v2 keyspace avoids the wrap
//!   altogether (its regions never end the cluster) and is used when configured.
//! - **Reverse scans across regions are broken (#512).** They are never sent; reverse scans
//!   are built from forward scans by [`super::reverse`].

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tikv_client::{Config, RawClient};

use super::reverse::{self, ForwardScan};
use super::TikvConfig;
use super::{BatchOp, Direction, KvPair, KvStore, StoreError, WriteBatch};

/// Most keys asked of TiKV in one scan call (and the size of the wrap-around fence).
pub const PAGE: usize = 1024;
/// Most pairs sent in one `batch_put` call.
const PUT_CHUNK: usize = 2048;
/// Most bytes (keys and values) sent in one `batch_put` call; TiKV refuses raft entries of
/// more than 8 MiB by default.
const PUT_CHUNK_BYTES: usize = 2 << 20;
/// The fence's key prefix; no record of the chat model starts with `00`.
const FENCE: [u8; 2] = [0, 0];

/// A TiKV raw client. Clones share its connections.
#[derive(Clone)]
pub struct TikvStore {
    client: RawClient,
    /// Prepended to every key (tests use it to get an empty namespace on a shared cluster).
    prefix: Arc<[u8]>,
    timeout: Duration,
}

fn err(op: &'static str, e: tikv_client::Error) -> StoreError {
    StoreError::Backend {
        op,
        detail: e.to_string(),
    }
}

impl TikvStore {
    /// Connects to the PD endpoints of `cfg` and writes the wrap-around fence.
    pub async fn connect(cfg: &TikvConfig) -> Result<Self, StoreError> {
        let mut config =
            Config::default().with_timeout(Duration::from_millis(cfg.request_timeout_ms));
        if let (Some(ca), Some(cert), Some(key)) = (&cfg.ca_path, &cfg.cert_path, &cfg.key_path) {
            config = config.with_security(ca.clone(), cert.clone(), key.clone());
        }
        if let Some(ks) = &cfg.keyspace {
            config = config.with_keyspace(ks);
        }
        let connect = RawClient::new_with_config(cfg.pd_endpoints.clone(), config);
        let client = tokio::time::timeout(Duration::from_millis(cfg.connect_timeout_ms), connect)
            .await
            .map_err(|_| StoreError::Timeout {
                op: "connect",
                after_ms: cfg.connect_timeout_ms,
            })?
            .map_err(|e| StoreError::Open {
                path: cfg.pd_endpoints.join(","),
                detail: e.to_string(),
            })?;
        let store = Self {
            client,
            prefix: Arc::from(cfg.key_prefix.as_bytes()),
            timeout: Duration::from_millis(cfg.request_timeout_ms),
        };
        store.write_fence().await?;
        Ok(store)
    }

    /// The same cluster with every key under `prefix` (an isolated namespace).
    pub fn with_prefix(&self, prefix: &[u8]) -> Self {
        let mut p = self.prefix.to_vec();
        p.extend_from_slice(prefix);
        Self {
            prefix: Arc::from(p),
            ..self.clone()
        }
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, tikv_client::Error>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| StoreError::Timeout {
                op,
                after_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            })?
            .map_err(|e| err(op, e))
    }

    async fn write_fence(&self) -> Result<(), StoreError> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..PAGE as u16)
            .map(|i| {
                let mut k = FENCE.to_vec();
                k.extend_from_slice(&i.to_be_bytes());
                (k, Vec::new())
            })
            .collect();
        self.bounded("fence", self.client.batch_put(pairs)).await
    }

    fn full(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// One clamped forward scan call of at most [`PAGE`] keys, prefix already applied.
    async fn scan_page(
        &self,
        range: &Range<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        let limit = limit.min(PAGE);
        let raw = self
            .bounded(
                "scan",
                self.client
                    .scan(range.start.clone()..range.end.clone(), limit as u32),
            )
            .await?;
        Ok(clamp(
            raw.into_iter()
                .map(|p| (Vec::from(p.key().clone()), p.into_value())),
            range,
        ))
    }

    async fn put_chunked(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError> {
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        for (k, v) in pairs {
            bytes += k.len() + v.len();
            chunk.push((k, v));
            if chunk.len() >= PUT_CHUNK || bytes >= PUT_CHUNK_BYTES {
                self.bounded(
                    "batch_put",
                    self.client.batch_put(std::mem::take(&mut chunk)),
                )
                .await?;
                bytes = 0;
            }
        }
        if !chunk.is_empty() {
            self.bounded("batch_put", self.client.batch_put(chunk))
                .await?;
        }
        Ok(())
    }

    async fn delete_chunked(&self, keys: Vec<Vec<u8>>) -> Result<(), StoreError> {
        for chunk in keys.chunks(PUT_CHUNK) {
            self.bounded("batch_delete", self.client.batch_delete(chunk.to_vec()))
                .await?;
        }
        Ok(())
    }

    async fn write_stage(&self, ops: Vec<BatchOp>) -> Result<(), StoreError> {
        // The last operation on a key wins, as in an ordered batch.
        let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for op in ops {
            match op {
                BatchOp::Put(k, v) => last.insert(self.full(&k), Some(v)),
                BatchOp::Delete(k) => last.insert(self.full(&k), None),
            };
        }
        let (mut puts, mut deletes) = (Vec::new(), Vec::new());
        for (k, v) in last {
            match v {
                Some(v) => puts.push((k, v)),
                None => deletes.push(k),
            }
        }
        self.delete_chunked(deletes).await?;
        self.put_chunked(puts).await
    }
}

/// The pairs of `raw` inside `range`, up to the first one that is outside it or does not
/// ascend (a wrapped-around scan).
fn clamp(raw: impl Iterator<Item = KvPair>, range: &Range<Vec<u8>>) -> Vec<KvPair> {
    let mut out: Vec<KvPair> = Vec::new();
    for (k, v) in raw {
        let ascends = out.last().is_none_or(|(prev, _)| *prev < k);
        if !ascends || !range.contains(&k) {
            break;
        }
        out.push((k, v));
    }
    out
}

impl ForwardScan for TikvStore {
    /// `range` and the result are without the prefix.
    async fn forward(
        &self,
        range: Range<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        let mut out = Vec::new();
        if range.start >= range.end || limit == 0 {
            return Ok(out);
        }
        let mut at = self.full(&range.start)..self.full(&range.end);
        while out.len() < limit {
            let want = (limit - out.len()).min(PAGE);
            let page = self.scan_page(&at, want).await?;
            let done = page.len() < want;
            if let Some((last, _)) = page.last() {
                at.start = last.clone();
                at.start.push(0);
            }
            let n = self.prefix.len();
            out.extend(page.into_iter().map(|(k, v)| (k[n..].to_vec(), v)));
            if done || at.start >= at.end {
                break;
            }
        }
        Ok(out)
    }
}

impl KvStore for TikvStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.bounded("get", self.client.get(self.full(key))).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        for stage in batch.into_stages() {
            self.write_stage(stage).await?;
        }
        Ok(())
    }

    async fn scan(
        &self,
        range: Range<Vec<u8>>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<KvPair>, StoreError> {
        match dir {
            Direction::Forward => self.forward(range, limit).await,
            Direction::Reverse => reverse::reverse(self, range, limit).await,
        }
    }

    async fn delete_range(&self, range: Range<Vec<u8>>) -> Result<u64, StoreError> {
        let mut total = 0u64;
        let mut start = range.start;
        while start < range.end {
            let page = self.forward(start.clone()..range.end.clone(), PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            start = last.clone();
            start.push(0);
            let n = page.len();
            self.delete_chunked(page.into_iter().map(|(k, _)| self.full(&k)).collect())
                .await?;
            total += n as u64;
            if n < PAGE {
                break;
            }
        }
        Ok(total)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every acknowledged raw write is already replicated by raft.
        Ok(())
    }
}
