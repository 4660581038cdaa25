//! The send path: publish a message to JetStream with `Nats-Msg-Id` dedupe and wait for the
//! PubAck. A failed publish (no leader during an election, a broken connection) is retried
//! with the SAME id until the deadline, so a retry that did land is answered with the
//! original sequence and never stored twice.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use chatmesh_protocol::{ApiError, ErrorCode};

/// Publishes `payload` to `subject` with dedupe id `msg_id`, retrying until `deadline`.
pub async fn publish_with_retry(
    js: &async_nats::jetstream::Context,
    subject: String,
    msg_id: &str,
    payload: Bytes,
    deadline: Duration,
) -> Result<PublishAck, ApiError> {
    let give_up = tokio::time::Instant::now() + deadline;
    let mut backoff = Duration::from_millis(25);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let msg = PublishMessage::build()
            .payload(payload.clone())
            .message_id(msg_id);
        let err = match js.send_publish(subject.clone(), msg).await {
            Ok(ack) => match ack.await {
                Ok(ack) => {
                    metrics::histogram!("chatmesh_publish_attempts").record(f64::from(attempt));
                    return Ok(ack);
                }
                Err(e) => e.kind(),
            },
            Err(e) => e.kind(),
        };
        if err == PublishErrorKind::MaxPayloadExceeded {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                "message exceeds the server's limit",
            ));
        }
        metrics::counter!("chatmesh_publish_retries_total", "kind" => format!("{err:?}"))
            .increment(1);
        let now = tokio::time::Instant::now();
        if now + backoff > give_up {
            tracing::warn!(?err, attempt, "publish failed until the deadline");
            return Err(ApiError::unavailable(
                "message not stored; resend it with the same id",
            ));
        }
        tracing::debug!(?err, attempt, "publish failed, retrying with the same id");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(1000));
    }
}
