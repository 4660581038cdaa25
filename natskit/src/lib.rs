//! JetStream client helpers that async-nats 0.51 has no API for, used by gateways and
//! workers alike:
//! - [`direct_batch`]: a batch direct get (server ≥ 2.11) — `next_by_subj` from a sequence,
//!   or `multi_last` over a subject filter — answered on our own inbox and ended by a
//!   `204 EOB` status, with no consumer created;
//! - [`ensure_ttl_bucket`]: a KV bucket whose keys carry their own TTL, republishing every
//!   change and expiry marker to core NATS when asked;
//! - [`put_ttl`]: a KV write with a per-key TTL (`Nats-TTL`, on a bucket with
//!   `limit_markers`), optionally compare-and-set on the key's last sequence, or a delete;
//! - [`trace`]: W3C trace context in message headers (a send is one trace across processes);
//! - [`lossy`]: when core NATS may have lost messages (reconnects, slow-consumer drops);
//! - [`deadline`]: when the caller of a service request stops waiting for its answer.

pub mod deadline;
pub mod lossy;
pub mod trace;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

/// The source of a NATS failure: async-nats's error types differ per call.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong talking to JetStream here. Failures keep the error that caused them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("NATS: {what}")]
    Nats {
        what: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("direct get timed out")]
    TimedOut,
    #[error("direct get: status {status} {description}")]
    Status { status: u16, description: String },
    #[error("direct get reply without {0}")]
    MissingHeader(&'static str),
    #[error("write refused")]
    Refused(#[source] BoxError),
    /// A compare-and-set write found another last sequence: someone else wrote the key.
    #[error("the key changed since the expected sequence")]
    WrongLastSequence,
}

fn nats_error(what: &'static str, e: impl Into<BoxError>) -> Error {
    Error::Nats {
        what,
        source: e.into(),
    }
}

/// One message of a batch direct get.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stream sequence.
    pub seq: u64,
    /// The message's own subject.
    pub subject: String,
    pub payload: Bytes,
}

/// What a batch direct get asks for.
#[derive(Debug, Clone, Copy)]
pub enum Batch<'a> {
    /// Up to `batch` messages on `subject` with sequence ≥ `from`, in order.
    Next {
        subject: &'a str,
        from: u64,
        batch: usize,
    },
    /// The last message of every subject matching `filter` (at most `batch`).
    Last { filter: &'a str, batch: usize },
}

/// Runs a batch direct get on `stream`; returns the messages in the order served.
pub async fn direct_batch(
    nats: &async_nats::Client,
    stream: &str,
    ask: Batch<'_>,
    timeout: Duration,
) -> Result<Vec<Entry>, Error> {
    let (request, limit) = match ask {
        Batch::Next {
            subject,
            from,
            batch,
        } => (
            serde_json::json!({ "seq": from.max(1), "next_by_subj": subject, "batch": batch }),
            batch,
        ),
        Batch::Last { filter, batch } => (
            serde_json::json!({ "multi_last": [filter], "batch": batch }),
            batch,
        ),
    };
    let inbox = nats.new_inbox();
    let mut sub = nats
        .subscribe(inbox.clone())
        .await
        .map_err(|e| nats_error("subscribing to the direct get inbox", e))?;
    nats.publish_with_reply(
        format!("$JS.API.DIRECT.GET.{stream}"),
        inbox,
        request.to_string().into(),
    )
    .await
    .map_err(|e| nats_error("publishing the direct get", e))?;
    let mut out = Vec::with_capacity(limit.min(128));
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < limit {
        let msg = match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(_) => return Err(Error::TimedOut),
        };
        match msg.status.map(|s| s.as_u16()) {
            // 404: nothing matches; 204: end of the batch.
            Some(404) | Some(204) => break,
            Some(status) if status != 200 => {
                return Err(Error::Status {
                    status,
                    description: msg.description.unwrap_or_default(),
                })
            }
            _ => {}
        }
        let header = |name: &'static str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .ok_or(Error::MissingHeader(name))
        };
        let seq = header("Nats-Sequence")?
            .parse()
            .map_err(|_| Error::MissingHeader("Nats-Sequence"))?;
        let subject = header("Nats-Subject")?;
        out.push(Entry {
            seq,
            subject,
            payload: msg.payload,
        });
    }
    Ok(out)
}

/// How a [`put_ttl`] may land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever the key holds.
    Any,
    /// Only if the key's last sequence is this (0: the key has no message).
    LastSeq(u64),
}

/// Writes `value` to `subject` (a KV key's `$KV.<bucket>.<key>`) with a TTL; an empty value
/// is written as a delete. Returns the new sequence (with [`Expect::Any`] the write is a
/// core publish, not awaited: `Ok(0)`).
pub async fn put_ttl(
    js: &async_nats::jetstream::Context,
    subject: String,
    value: Bytes,
    ttl: Duration,
    expect: Expect,
) -> Result<u64, Error> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-TTL", format!("{}s", ttl.as_secs().max(1)).as_str());
    if value.is_empty() {
        headers.insert("KV-Operation", "DEL");
    }
    if let Expect::LastSeq(seq) = expect {
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            seq.to_string().as_str(),
        );
    }
    if expect == Expect::Any {
        // Nothing waits for its ack: a core publish, which takes none of the context's
        // PubAck permits (a JetStream publish whose ack future is dropped keeps its permit
        // until async-nats gives up on the ack, 30 s when the bucket does not answer, and
        // such writes would take the permits that awaited publishes need).
        js.client()
            .publish_with_headers(subject, headers, value)
            .await
            .map_err(|e| nats_error("publishing a KV write", e))?;
        return Ok(0);
    }
    let ack = js
        .publish_with_headers(subject, headers, value)
        .await
        .map_err(|e| nats_error("publishing a KV write", e))?;
    ack.await.map(|a| a.sequence).map_err(|e| {
        if e.kind() == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence {
            Error::WrongLastSequence
        } else {
            Error::Refused(e.into())
        }
    })
}

/// Creates (or updates) KV bucket `bucket` for per-key TTLs (`limit_markers`), on file
/// storage so a restarted single server keeps it; with `republish_to`, every change and every
/// expiry marker (an empty payload) is republished on `<republish_to>.<key>`. With `cluster`,
/// the bucket is placed in that NATS cluster (a region's, in a supercluster).
pub async fn ensure_ttl_bucket(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    replicas: usize,
    republish_to: Option<&str>,
    cluster: Option<&str>,
) -> Result<(), Error> {
    use async_nats::jetstream::{kv, stream};
    let config = kv::Config {
        bucket: bucket.into(),
        history: 1,
        num_replicas: replicas,
        placement: cluster.map(|c| stream::Placement {
            cluster: Some(c.to_owned()),
            ..Default::default()
        }),
        storage: stream::StorageType::File,
        limit_markers: Some(Duration::from_secs(1)),
        republish: republish_to.map(|dest| stream::Republish {
            source: format!("$KV.{bucket}.>"),
            destination: format!("{dest}.>"),
            headers_only: false,
        }),
        ..Default::default()
    };
    match js.create_key_value(config.clone()).await {
        Ok(_) => Ok(()),
        Err(_) => js
            .update_key_value(config)
            .await
            .map(|_| ())
            .map_err(|e| nats_error("creating or updating a KV bucket", e)),
    }
}
