//! Partition leases: key `p<N>` in the KV bucket `CHAT_LEASES`, holding the owner's id, with
//! a TTL. Taking and renewing are compare-and-set on the key's last sequence
//! (`Nats-Expected-Last-Subject-Sequence`), so at most one worker holds a lease; a holder
//! that dies stops renewing and its lease expires.

use std::time::Duration;

use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use tracing::debug;

use super::registry::ensure_bucket;
use crate::error::WorkerError;

use chatmesh_protocol::subjects::LEASES_BUCKET as BUCKET;

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

/// The lease table, as seen by one worker.
pub struct Leases {
    js: jetstream::Context,
    stream: jetstream::stream::Stream<()>,
    me: String,
    ttl: Duration,
}

impl Leases {
    pub async fn open(
        js: &jetstream::Context,
        replicas: usize,
        me: &str,
        ttl: Duration,
    ) -> Result<Self, WorkerError> {
        ensure_bucket(js, BUCKET, replicas, None).await?;
        let stream = js
            .get_stream_no_info(format!("KV_{BUCKET}"))
            .await
            .map_err(|e| WorkerError::Stream(format!("lease bucket: {e}")))?;
        Ok(Self {
            js: js.clone(),
            stream,
            me: me.to_owned(),
            ttl,
        })
    }

    fn subject(p: u32) -> String {
        format!("$KV.{BUCKET}.p{p}")
    }

    /// Takes partition `p`'s lease if it is free (never held, released, expired, or already
    /// ours); returns its revision.
    pub async fn acquire(&self, p: u32) -> Option<u64> {
        let expect = match self
            .stream
            .direct_get_last_for_subject(Self::subject(p))
            .await
        {
            Ok(last) if last.payload.is_empty() || last.payload == self.me.as_bytes() => {
                last.sequence
            }
            Ok(_) => return None,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => 0,
            Err(e) => {
                debug!(partition = p, error = %e, "lease read failed");
                return None;
            }
        };
        self.write(p, expect, self.me.clone()).await
    }

    /// Extends a held lease.
    pub async fn renew(&self, p: u32, revision: u64) -> Renewal {
        let put = natskit::put_ttl(
            &self.js,
            Self::subject(p),
            self.me.clone().into(),
            self.ttl,
            natskit::Expect::LastSeq(revision),
        );
        match put.await {
            Ok(seq) => Renewal::Renewed(seq),
            Err(natskit::Error::WrongLastSequence) => Renewal::Lost,
            Err(e) => {
                debug!(partition = p, error = %e, "lease renewal failed");
                Renewal::Unreachable
            }
        }
    }

    /// Gives a held lease up at once.
    pub async fn release(&self, p: u32, revision: u64) {
        self.write(p, revision, String::new()).await;
    }

    async fn write(&self, p: u32, expect: u64, holder: String) -> Option<u64> {
        let put = natskit::put_ttl(
            &self.js,
            Self::subject(p),
            holder.into(),
            self.ttl,
            natskit::Expect::LastSeq(expect),
        );
        match put.await {
            Ok(seq) => Some(seq),
            Err(e) => {
                debug!(partition = p, error = %e, "lease write refused");
                None
            }
        }
    }
}
