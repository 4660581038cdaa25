//! The send path: publish a message to JetStream with `Nats-Msg-Id` dedupe and wait for the
//! PubAck. A failed publish (no leader during an election, a broken connection) is retried
//! with the SAME id until the deadline, so a retry that did land is answered with the
//! original sequence and never stored twice.
//!
//! [`Publish::send`] is awaited in the session's read order (it only queues the message on
//! the connection), so one sender's messages are stored in the order they were sent; only
//! the wait for the PubAck ([`Publish::acked`]) runs concurrently.

use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::HeaderMap;
use bytes::Bytes;
use chatmesh_protocol::backoff::Backoff;
use chatmesh_protocol::{ApiError, ErrorCode};

/// One message on its way to JetStream.
#[derive(Debug)]
pub struct Publish {
    pub subject: String,
    pub msg_id: String,
    pub payload: Bytes,
    /// The sender's trace context (`traceparent`), when traces are exported.
    trace: Option<HeaderMap>,
    first: Option<Result<PublishAckFuture, PublishErrorKind>>,
}

impl Publish {
    /// Queues the first attempt on the NATS connection.
    /// `span` is the send's: its trace context goes with the message when traces are on.
    pub async fn send(
        js: &async_nats::jetstream::Context,
        subject: String,
        msg_id: String,
        payload: Bytes,
        span: &tracing::Span,
    ) -> Self {
        let trace = natskit::trace::enabled().then(|| {
            let mut headers = HeaderMap::new();
            natskit::trace::inject(span, &mut headers);
            headers
        });
        let first = js
            .send_publish(subject.clone(), message(&msg_id, &payload, trace.as_ref()))
            .await
            .map_err(|e| e.kind());
        Self {
            subject,
            msg_id,
            payload,
            trace,
            first: Some(first),
        }
    }

    /// Waits for the PubAck, retrying with the same id until `deadline`.
    pub async fn acked(
        mut self,
        js: &async_nats::jetstream::Context,
        deadline: Duration,
    ) -> Result<PublishAck, ApiError> {
        let give_up = tokio::time::Instant::now() + deadline;
        let mut backoff = Backoff::new(Duration::from_millis(25), Duration::from_millis(1000));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let sent = match self.first.take() {
                Some(first) => first,
                None => js
                    .send_publish(
                        self.subject.clone(),
                        message(&self.msg_id, &self.payload, self.trace.as_ref()),
                    )
                    .await
                    .map_err(|e| e.kind()),
            };
            let err = match sent {
                Ok(ack) => match ack.await {
                    Ok(ack) => {
                        metrics::histogram!("chatmesh_publish_attempts").record(f64::from(attempt));
                        return Ok(ack);
                    }
                    Err(e) => e.kind(),
                },
                Err(kind) => kind,
            };
            if err == PublishErrorKind::MaxPayloadExceeded {
                return Err(ApiError::new(
                    ErrorCode::TooLarge,
                    "message exceeds the server's limit",
                ));
            }
            metrics::counter!("chatmesh_publish_retries_total", "kind" => format!("{err:?}"))
                .increment(1);
            let pause = backoff.next_delay();
            if tokio::time::Instant::now() + pause > give_up {
                tracing::warn!(?err, attempt, "publish failed until the deadline");
                return Err(ApiError::unavailable(
                    "message not stored; resend it with the same id",
                ));
            }
            tracing::debug!(?err, attempt, "publish failed, retrying with the same id");
            tokio::time::sleep(pause).await;
        }
    }
}

fn message(msg_id: &str, payload: &Bytes, trace: Option<&HeaderMap>) -> PublishMessage {
    let build = PublishMessage::build().payload(payload.clone());
    let build = match trace {
        Some(headers) => build.headers(headers.clone()),
        None => build,
    };
    build.message_id(msg_id)
}
