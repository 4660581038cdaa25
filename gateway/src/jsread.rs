//! Reads a room's retained messages straight from the JetStream stream: the last sequence of
//! a room, and batches of messages after a sequence (a batch direct get, which needs no
//! consumer, so resumes and gap fills cost no server state).
//!
//! async-nats 0.51 has no API for batch direct get (server ≥ 2.11), so the request goes to
//! `$JS.API.DIRECT.GET.<stream>` on our own inbox; the batch ends with a `204 EOB` status.

use std::time::Duration;

use async_nats::jetstream::stream::DirectGetErrorKind;
use bytes::Bytes;
use chatmesh_protocol::subjects::STREAM;
use futures::StreamExt;

use crate::error::GatewayError;

/// One retained message.
#[derive(Debug, Clone)]
pub struct Retained {
    pub seq: u64,
    pub payload: Bytes,
}

/// Reader of retained messages.
#[derive(Debug, Clone)]
pub struct JsReader {
    nats: async_nats::Client,
    stream: async_nats::jetstream::stream::Stream<()>,
    timeout: Duration,
}

impl JsReader {
    pub async fn new(
        nats: async_nats::Client,
        js: &async_nats::jetstream::Context,
        timeout: Duration,
    ) -> Result<Self, GatewayError> {
        let stream = js
            .get_stream_no_info(STREAM)
            .await
            .map_err(|e| GatewayError::JetStream(e.to_string()))?;
        Ok(Self {
            nats,
            stream,
            timeout,
        })
    }

    /// The seq of the last retained message on `subject`, 0 if there is none.
    pub async fn last_seq(&self, subject: &str) -> Result<u64, GatewayError> {
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(0),
            Err(e) => Err(GatewayError::JetStream(e.to_string())),
        }
    }

    /// Up to `batch` retained messages on `subject` with seq ≥ `from`, in order.
    pub async fn batch(
        &self,
        subject: &str,
        from: u64,
        batch: usize,
    ) -> Result<Vec<Retained>, GatewayError> {
        let inbox = self.nats.new_inbox();
        let mut sub = self
            .nats
            .subscribe(inbox.clone())
            .await
            .map_err(|e| GatewayError::Nats(e.to_string()))?;
        let req =
            serde_json::json!({ "seq": from.max(1), "next_by_subj": subject, "batch": batch });
        self.nats
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{STREAM}"),
                inbox,
                req.to_string().into(),
            )
            .await
            .map_err(|e| GatewayError::Nats(e.to_string()))?;
        let mut out = Vec::with_capacity(batch.min(128));
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let msg = match tokio::time::timeout_at(deadline, sub.next()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(_) => return Err(GatewayError::JetStream("direct get timed out".into())),
            };
            match msg.status.map(|s| s.as_u16()) {
                // 404: nothing at or after `from`; 204: end of the batch.
                Some(404) | Some(204) => break,
                Some(status) if status != 200 => {
                    return Err(GatewayError::JetStream(format!(
                        "direct get: {status} {}",
                        msg.description.unwrap_or_default()
                    )))
                }
                _ => {}
            }
            let seq = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Sequence"))
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .ok_or_else(|| {
                    GatewayError::JetStream("direct get reply without sequence".into())
                })?;
            out.push(Retained {
                seq,
                payload: msg.payload,
            });
            if out.len() >= batch {
                break;
            }
        }
        Ok(out)
    }

    /// The payload of the message with stream sequence `seq`.
    pub async fn get(&self, seq: u64) -> Result<Bytes, GatewayError> {
        self.stream
            .direct_get(seq)
            .await
            .map(|m| m.payload)
            .map_err(|e| GatewayError::JetStream(e.to_string()))
    }
}
