//! Room events (moderation extension): a ban, an unban, a mute, an unmute, a topic or a name
//! change, published into the room's stream as a message with an empty body and `event`,
//! so that it takes its place in the room's one order (a seq and `prev`, fanned out live,
//! replayed on resume, in history) and the store writer applies topics and names in that
//! order. The worker owning the room has decided and stored the change before; the gateway
//! publishes (workers may not publish into the stream: `protocol::bus`).
//!
//! An event's client id is `evt-<gateway>-<n>`, its `Nats-Msg-Id` starts with `!`, which no
//! user name does, so it never collides with a user's sends. Every gateway's fan-out takes
//! a banned user's sessions out of the room when it reaches the ban's event, before it
//! hands that event or anything stored after it to anyone (`fanout::room`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chatmesh_protocol::message::{now_ms, Payload};
use chatmesh_protocol::moderation::{RoomEvent, EVENT_ID_PREFIX};
use chatmesh_protocol::subjects::in_subject;
use chatmesh_protocol::ApiError;

use crate::publish::Publish;
use crate::state::AppState;

/// Events published by this process (part of their ids).
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Publishes `event`, done by `actor`, into `room`'s order; its seq once JetStream stored
/// it (retried with the same id until the publish deadline, as a send is).
pub async fn publish(
    state: &AppState,
    room: &str,
    actor: &str,
    event: RoomEvent,
) -> Result<u64, ApiError> {
    let kind = event.kind();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!("{EVENT_ID_PREFIX}{}-{n:x}", state.gateway);
    let payload = Payload {
        id,
        from: actor.to_owned(),
        ts: now_ms(),
        event: Some(event),
        ..Payload::default()
    };
    let bytes = serde_json::to_vec(&payload).map_err(|_| ApiError::internal())?;
    let subject = in_subject(state.mesh.partitions, room);
    let msg_id = format!("!evt:{room}:{}", payload.id);
    let span = tracing::Span::none();
    let sent = Publish::send(&state.js, subject, msg_id, bytes.into(), &span).await;
    let deadline = Duration::from_millis(state.cfg.publish_deadline_ms);
    let result = sent.acked(&state.js, deadline, &state.services).await;
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    metrics::counter!("chatmesh_room_events_total", "kind" => kind, "outcome" => outcome)
        .increment(1);
    Ok(result?.sequence)
}

/// [`publish`] for a change that is already stored and stands whatever happens to its event:
/// a failure is logged and counted, and the seq is `None`.
pub async fn announce(state: &AppState, room: &str, actor: &str, event: RoomEvent) -> Option<u64> {
    let kind = event.kind();
    match publish(state, room, actor, event).await {
        Ok(seq) => Some(seq),
        Err(e) => {
            tracing::warn!(room, kind, error = %e.message, "a room event could not be published");
            None
        }
    }
}
