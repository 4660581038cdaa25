//! Partition leases: key `p<N>` in the KV bucket `CHAT_LEASES` (`CHAT_LEASES_<region>` for a
//! region's own workers), holding the owner's id, with
//! a TTL. Taking and renewing are compare-and-set on the key's last sequence
//! (`Nats-Expected-Last-Subject-Sequence`), so at most one worker holds a lease; a holder
//! that dies stops renewing and its lease expires.

use std::time::Duration;

use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use tracing::debug;

use super::registry::ensure_bucket;
use crate::error::WorkerError;

use super::Scope;

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Extended; the new revision.
    Renewed(u64),
    /// Another worker wrote the lease: it is theirs now.
    Lost,
    /// NATS did not answer; the lease may still be ours until its TTL runs out.
    Unreachable,
}

/// What an attempt to take a lease found.
enum Take {
    Taken(u64),
    /// Another worker's id is on it.
    Held,
    /// NATS did not answer.
    Failed,
}

/// The lease table, as seen by one worker.
pub struct Leases {
    js: jetstream::Context,
    bucket: String,
    stream: jetstream::stream::Stream<()>,
    me: String,
    ttl: Duration,
}

impl Leases {
    pub async fn open(
        js: &jetstream::Context,
        scope: &Scope,
        me: &str,
        ttl: Duration,
    ) -> Result<Self, WorkerError> {
        let bucket = scope.buckets.leases.clone();
        ensure_bucket(js, &bucket, scope, None).await?;
        let stream = js
            .get_stream_no_info(format!("KV_{bucket}"))
            .await
            .map_err(|e| WorkerError::stream("lease bucket", e))?;
        Ok(Self {
            js: js.clone(),
            bucket,
            stream,
            me: me.to_owned(),
            ttl,
        })
    }

    fn subject(&self, p: u32) -> String {
        format!("$KV.{}.p{p}", self.bucket)
    }

    /// Takes partition `p`'s lease if it is free (never held, released, expired, or already
    /// ours); returns its revision.
    pub async fn acquire(&self, p: u32) -> Option<u64> {
        match self.take(p).await {
            Take::Taken(seq) => Some(seq),
            Take::Held | Take::Failed => None,
        }
    }

    async fn take(&self, p: u32) -> Take {
        let expect = match self
            .stream
            .direct_get_last_for_subject(self.subject(p))
            .await
        {
            Ok(last) if last.payload.is_empty() || last.payload == self.me.as_bytes() => {
                last.sequence
            }
            Ok(_) => return Take::Held,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => 0,
            Err(e) => {
                debug!(partition = p, error = %chatmesh_protocol::error::Chain(&e), "lease read failed");
                return Take::Failed;
            }
        };
        match self.write(p, expect, self.me.clone()).await {
            Some(seq) => Take::Taken(seq),
            // Someone wrote between the read and the CAS: theirs.
            None => Take::Held,
        }
    }

    /// Extends a held lease. A renewal that finds the key changed is not yet a loss: a
    /// process that was starved (or a renewal whose ack was lost) finds its own lease expired
    /// (an expiry marker) or already extended (its own id at a newer revision). Unless
    /// another worker's id is there, the lease is taken again at once and kept.
    pub async fn renew(&self, p: u32, revision: u64) -> Renewal {
        let put = natskit::put_ttl(
            &self.js,
            self.subject(p),
            self.me.clone().into(),
            self.ttl,
            natskit::Expect::LastSeq(revision),
        );
        match put.await {
            Ok(seq) => Renewal::Renewed(seq),
            Err(natskit::Error::WrongLastSequence) => match self.take(p).await {
                Take::Taken(seq) => {
                    metrics::counter!("chatmesh_partition_lease_retaken_total").increment(1);
                    Renewal::Renewed(seq)
                }
                Take::Held => Renewal::Lost,
                Take::Failed => Renewal::Unreachable,
            },
            Err(e) => {
                debug!(partition = p, error = %chatmesh_protocol::error::Chain(&e), "lease renewal failed");
                Renewal::Unreachable
            }
        }
    }

    /// Gives a held lease up at once; `false` when the write was refused or not answered.
    pub async fn release(&self, p: u32, revision: u64) -> bool {
        self.write(p, revision, String::new()).await.is_some()
    }

    async fn write(&self, p: u32, expect: u64, holder: String) -> Option<u64> {
        let put = natskit::put_ttl(
            &self.js,
            self.subject(p),
            holder.into(),
            self.ttl,
            natskit::Expect::LastSeq(expect),
        );
        match put.await {
            Ok(seq) => Some(seq),
            Err(e) => {
                debug!(partition = p, error = %chatmesh_protocol::error::Chain(&e), "lease write refused");
                None
            }
        }
    }
}
