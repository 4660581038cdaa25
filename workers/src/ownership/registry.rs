//! The live workers: one key per worker in the KV bucket `CHAT_WORKERS` with a TTL it
//! refreshes. The bucket republishes every change and every expiry marker (an empty payload)
//! on `chat.workers.<id>` (`chat.workers.<region>.<id>` for a region's own workers), so each worker follows the set with one core subscription; the
//! initial set is one batch direct get.
//!
//! Those events are core NATS (at most once): one missed while a worker was cut off from
//! NATS (another worker's expiry marker) would leave that worker in its live set for good,
//! and the partitions it would own unowned by anyone. So every heartbeat reads the whole set
//! again (one batch direct get per lease TTL / 3).

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use tracing::warn;

use crate::error::WorkerError;

use super::Scope;

/// This worker's view of the live workers.
pub struct Registry {
    js: jetstream::Context,
    bucket: String,
    me: String,
    ttl: Duration,
    sub: async_nats::Subscriber,
    live: BTreeSet<String>,
}

impl Registry {
    /// Creates the bucket if needed, registers this worker and reads the live set.
    pub async fn start(
        js: &jetstream::Context,
        nats: &async_nats::Client,
        scope: &Scope,
        me: &str,
        ttl: Duration,
    ) -> Result<Self, WorkerError> {
        let names = &scope.buckets;
        ensure_bucket(js, &names.workers, scope, Some(&names.republish)).await?;
        let sub = nats
            .subscribe(format!("{}.*", names.republish))
            .await
            .map_err(|e| WorkerError::nats("subscribing to the worker registry", e))?;
        nats.flush()
            .await
            .map_err(|e| WorkerError::nats("flush", e))?;
        let mut registry = Self {
            js: js.clone(),
            bucket: names.workers.clone(),
            me: me.to_owned(),
            ttl,
            sub,
            live: BTreeSet::new(),
        };
        registry.register().await;
        registry.live = snapshot(nats, &names.workers, ttl).await?;
        registry.live.insert(me.to_owned());
        Ok(registry)
    }

    /// Refreshes this worker's registration, then reads the live set again (what a missed
    /// event got wrong is put right here; a failed read keeps the set as it was).
    pub async fn heartbeat(&mut self) {
        self.register().await;
        match snapshot(&self.js.client(), &self.bucket, self.ttl / 3).await {
            Ok(mut live) => {
                live.insert(self.me.clone());
                self.live = live;
            }
            Err(e) => {
                warn!(error = %chatmesh_protocol::error::Chain(&e), "cannot read the worker registry");
            }
        }
    }

    async fn register(&self) {
        let subject = format!("$KV.{}.{}", self.bucket, self.me);
        let put = natskit::put_ttl(
            &self.js,
            subject,
            "up".into(),
            self.ttl,
            natskit::Expect::Any,
        );
        if let Err(e) = put.await {
            warn!(error = %chatmesh_protocol::error::Chain(&e), "worker heartbeat failed");
        }
    }

    /// Waits for a change of the live set.
    pub async fn changed(&mut self) -> Result<(), WorkerError> {
        let msg = self
            .sub
            .next()
            .await
            .ok_or_else(|| WorkerError::nats_msg("worker registry subscription ended"))?;
        let Some(id) = msg.subject.as_str().rsplit('.').next() else {
            return Ok(());
        };
        if id == self.me {
            return Ok(());
        }
        if msg.payload.is_empty() {
            self.live.remove(id);
        } else {
            self.live.insert(id.to_owned());
        }
        Ok(())
    }

    /// The live workers, this one included.
    pub fn live(&self) -> &BTreeSet<String> {
        &self.live
    }

    /// Deregisters at once (a graceful stop), so others take over without waiting for the TTL.
    pub async fn leave(&self) {
        let subject = format!("$KV.{}.{}", self.bucket, self.me);
        let _ = natskit::put_ttl(
            &self.js,
            subject,
            bytes::Bytes::new(),
            self.ttl,
            natskit::Expect::Any,
        )
        .await;
    }
}

/// Creates or updates a KV bucket with per-key TTLs (and a republish of its changes),
/// placed in the workers' region (the primary's by default).
pub(super) async fn ensure_bucket(
    js: &jetstream::Context,
    bucket: &str,
    scope: &Scope,
    republish_to: Option<&str>,
) -> Result<(), WorkerError> {
    let cluster = scope.cluster.as_deref();
    natskit::ensure_ttl_bucket(js, bucket, scope.replicas, republish_to, cluster)
        .await
        .map_err(|e| WorkerError::stream(format!("KV bucket {bucket}"), e))
}

/// The workers registered now (keys whose latest value is not a delete or expiry marker).
async fn snapshot(
    nats: &async_nats::Client,
    bucket: &str,
    timeout: Duration,
) -> Result<BTreeSet<String>, WorkerError> {
    let filter = format!("$KV.{bucket}.*");
    let ask = natskit::Batch::Last {
        filter: &filter,
        batch: 10_000,
    };
    let entries = natskit::direct_batch(nats, &format!("KV_{bucket}"), ask, timeout)
        .await
        .map_err(|e| WorkerError::nats("reading the worker registry", e))?;
    Ok(entries
        .into_iter()
        .filter(|e| !e.payload.is_empty())
        .filter_map(|e| e.subject.rsplit('.').next().map(str::to_owned))
        .collect())
}
