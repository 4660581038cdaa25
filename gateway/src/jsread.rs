//! Reads a room's retained messages straight from the JetStream stream: the last sequence of
//! a room, and batches of messages after a sequence (a batch direct get, which needs no
//! consumer, so resumes and gap fills cost no server state).
//!
//! Each room's reads go to its home region's stream (`CHAT` or `CHAT_<region>`,
//! docs/REGIONS.md); a mirror of it in this gateway's region answers direct gets when there
//! is one, so reads stay local.
//!
//! async-nats 0.51 has no API for batch direct get (server ≥ 2.11): see [`natskit`].

use std::time::Duration;

use async_nats::jetstream::stream::DirectGetErrorKind;
use bytes::Bytes;
use chatmesh_protocol::subjects::{room_of, stream_of};

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
    js: async_nats::jetstream::Context,
    timeout: Duration,
}

impl JsReader {
    pub async fn new(
        nats: async_nats::Client,
        js: &async_nats::jetstream::Context,
        timeout: Duration,
    ) -> Result<Self, GatewayError> {
        Ok(Self {
            nats,
            js: js.clone(),
            timeout,
        })
    }

    /// The stream of `room` (no request: direct gets need no stream info).
    async fn stream(
        &self,
        room: &str,
    ) -> Result<async_nats::jetstream::stream::Stream<()>, GatewayError> {
        self.js
            .get_stream_no_info(stream_of(room))
            .await
            .map_err(|e| GatewayError::jetstream("opening the message stream", e))
    }

    /// The seq of the last retained message on `subject`, 0 if there is none.
    pub async fn last_seq(&self, subject: &str) -> Result<u64, GatewayError> {
        let stream = self.stream(room_of(subject).unwrap_or_default()).await?;
        match stream.direct_get_last_for_subject(subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(0),
            Err(e) => Err(GatewayError::jetstream("reading a room's last message", e)),
        }
    }

    /// Up to `batch` retained messages on `subject` with seq ≥ `from`, in order.
    pub async fn batch(
        &self,
        subject: &str,
        from: u64,
        batch: usize,
    ) -> Result<Vec<Retained>, GatewayError> {
        let ask = natskit::Batch::Next {
            subject,
            from,
            batch,
        };
        let stream = stream_of(room_of(subject).unwrap_or_default());
        let entries = natskit::direct_batch(&self.nats, &stream, ask, self.timeout)
            .await
            .map_err(|e| GatewayError::jetstream("reading messages", e))?;
        Ok(entries
            .into_iter()
            .map(|e| Retained {
                seq: e.seq,
                payload: e.payload,
            })
            .collect())
    }

    /// Whether the stream still holds the message at `seq` on `subject` (`false` when the
    /// read fails, and for 0).
    pub async fn holds(&self, subject: &str, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        match self.batch(subject, seq, 1).await {
            Ok(batch) => batch.first().is_some_and(|r| r.seq == seq),
            Err(_) => false,
        }
    }

    /// The payload of `room`'s message with stream sequence `seq`.
    pub async fn get(&self, room: &str, seq: u64) -> Result<Bytes, GatewayError> {
        self.stream(room)
            .await?
            .direct_get(seq)
            .await
            .map(|m| m.payload)
            .map_err(|e| GatewayError::jetstream("reading a message", e))
    }
}
