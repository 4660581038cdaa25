//! The send path: publish a message to JetStream with `Nats-Msg-Id` dedupe and wait for the
//! PubAck. A failed publish (no leader during an election, a broken connection) is retried
//! with the SAME id until the deadline, so a retry that did land is answered with the
//! original sequence and never stored twice.
//!
//! [`Publish::send`] is awaited in the session's read order (it only queues the message on
//! the connection), so one sender's messages are stored in the order they were sent; only
//! the wait for the PubAck ([`Publish::acked`]) runs concurrently.
//!
//! A room's subject holds at most `stream_max_msgs_per_room` messages and the stream refuses
//! one more rather than drop an old one. On that refusal the room's worker is asked to trim
//! what it has stored of the room (`room_trim`), and the publish is retried as any other
//! failure, until the deadline: a worker that is behind holds its rooms' sends back, it never
//! loses acked messages it has not read.

use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::HeaderMap;
use bytes::Bytes;
use chatmesh_protocol::backoff::Backoff;
use chatmesh_protocol::service::{TrimRequest, TrimRoom};
use chatmesh_protocol::subjects::room_of;
use chatmesh_protocol::{ApiError, ErrorCode};

use crate::services::Services;

/// Queues `msg` on the connection, waiting until `until` at most for a PubAck permit.
async fn queue(
    js: &async_nats::jetstream::Context,
    subject: &str,
    msg: PublishMessage,
    until: tokio::time::Instant,
) -> Result<PublishAckFuture, PublishErrorKind> {
    match tokio::time::timeout_at(until, js.send_publish(subject.to_owned(), msg)).await {
        Ok(sent) => sent.map_err(|e| e.kind()),
        Err(_) => Err(PublishErrorKind::TimedOut),
    }
}

/// How long the stream of a room homed in another region may have no responder before a
/// send to it is refused: longer than a gateway link's reconnect.
const REMOTE_UNREACHABLE: Duration = Duration::from_secs(2);
/// Longest wait of a first attempt for one of the context's PubAck permits (admission keeps
/// sends below them; this bounds the wait should anything else hold them): then it is retried
/// as a timed-out publish until the deadline.
const PERMIT_WAIT: Duration = Duration::from_secs(5);

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
        let first = queue(
            js,
            &subject,
            message(&msg_id, &payload, trace.as_ref()),
            tokio::time::Instant::now() + PERMIT_WAIT,
        )
        .await;
        Self {
            subject,
            msg_id,
            payload,
            trace,
            first: Some(first),
        }
    }

    /// Waits for the PubAck, retrying with the same id until `deadline`. `services` asks the
    /// room's worker to trim the room when the stream refuses it as full.
    pub async fn acked(
        mut self,
        js: &async_nats::jetstream::Context,
        deadline: Duration,
        services: &Services,
    ) -> Result<PublishAck, ApiError> {
        let give_up = tokio::time::Instant::now() + deadline;
        let mut backoff = Backoff::new(Duration::from_millis(25), Duration::from_millis(1000));
        let mut attempt = 0u32;
        let mut full = false;
        let mut unreachable_since = None;
        loop {
            attempt += 1;
            let sent = match self.first.take() {
                Some(first) => first,
                None => {
                    let msg = message(&self.msg_id, &self.payload, self.trace.as_ref());
                    queue(js, &self.subject, msg, give_up).await
                }
            };
            let (err, room_full) = match sent {
                Ok(ack) => match ack.await {
                    Ok(ack) => {
                        metrics::histogram!("chatmesh_publish_attempts").record(f64::from(attempt));
                        return Ok(ack);
                    }
                    Err(e) => (e.kind(), is_room_full(&e)),
                },
                Err(kind) => (kind, false),
            };
            if err == PublishErrorKind::MaxPayloadExceeded {
                return Err(ApiError::new(
                    ErrorCode::TooLarge,
                    "message exceeds the server's limit",
                ));
            }
            // No server answers for the stream of a room homed in another region: that region
            // is cut off (docs/REGIONS.md). Refused once it stays so for a moment, not after
            // the whole deadline, which is sized for a leader election.
            let elsewhere = || room_of(&self.subject).is_some_and(|r| services.homed_elsewhere(r));
            if err == PublishErrorKind::StreamNotFound && elsewhere() {
                let since = *unreachable_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= REMOTE_UNREACHABLE {
                    metrics::counter!("chatmesh_publish_home_unreachable_total").increment(1);
                    return Err(ApiError::unavailable(
                        "message not stored: the room's home region is not reachable; resend it with the same id",
                    ));
                }
            } else {
                unreachable_since = None;
            }
            if room_full {
                full = true;
                metrics::counter!("chatmesh_publish_room_full_total").increment(1);
                self.trim(services, give_up).await;
            } else {
                metrics::counter!("chatmesh_publish_retries_total", "kind" => format!("{err:?}"))
                    .increment(1);
            }
            let pause = backoff.next_delay();
            if tokio::time::Instant::now() + pause > give_up {
                tracing::warn!(
                    ?err,
                    attempt,
                    room_full = full,
                    "publish failed until the deadline"
                );
                return Err(ApiError::unavailable(if full {
                    "message not stored: the room's backlog is full until its worker stores it; resend it with the same id"
                } else {
                    "message not stored; resend it with the same id"
                }));
            }
            tracing::debug!(
                ?err,
                attempt,
                room_full,
                "publish failed, retrying with the same id"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// Asks the room's worker to purge what it stored of the room, within `give_up`. A worker
    /// that does not answer leaves the room full: the retries go on until the deadline.
    async fn trim(&self, services: &Services, give_up: tokio::time::Instant) {
        let Some(room) = room_of(&self.subject) else {
            return;
        };
        let req = TrimRequest {
            room: room.to_owned(),
        };
        let asked = tokio::time::timeout_at(give_up, services.call::<TrimRoom>(room, &req)).await;
        match asked {
            Ok(Ok(Ok(done))) => {
                tracing::debug!(
                    room,
                    below = done.below,
                    purged = done.purged,
                    "full room trimmed"
                )
            }
            Ok(Ok(Err(e))) => tracing::debug!(room, error = %e.message, "trim refused"),
            Ok(Err(e)) => {
                tracing::debug!(room, error = %chatmesh_protocol::error::Chain(&e), "trim not answered")
            }
            Err(_) => tracing::debug!(room, "trim not answered before the publish deadline"),
        }
    }
}

/// The stream refused the message because its room's subject holds the most it may
/// (`stream_max_msgs_per_room` with "discard new per subject").
fn is_room_full(e: &PublishError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|j| {
            j.error_code() == async_nats::jetstream::ErrorCode::STREAM_STORE_FAILED
                && j.to_string().contains("maximum messages per subject")
        })
}

fn message(msg_id: &str, payload: &Bytes, trace: Option<&HeaderMap>) -> PublishMessage {
    let build = PublishMessage::build().payload(payload.clone());
    let build = match trace {
        Some(headers) => build.headers(headers.clone()),
        None => build,
    };
    build.message_id(msg_id)
}
