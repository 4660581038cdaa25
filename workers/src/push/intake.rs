//! Who a stored message may push: the room's members but the sender, minus those online in
//! the room now, minus those without a target (or whose targets were all registered after
//! the message was stored) or whose settings mute it. (Whether they are
//! still offline, and still want it, is asked again when the window closes: `deliver.rs`.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::Message;
use chatmesh_protocol::e2ee::MlsKind;
use chatmesh_protocol::message::Payload;
use chatmesh_protocol::service::RoomKind;
use chatmesh_protocol::subjects::room_of;
use metrics::counter;

use super::collapse::Incoming;
use super::deliver::wanted;
use super::presence::Presence;
use crate::metrics as m;
use crate::model::Model;
use crate::service::Service;
use crate::store::StoreError;

/// How far the stream's clock (a message's stored time) and the worker's (a target's
/// registration time) may disagree.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// Reads what a message needs to be routed.
#[derive(Debug)]
pub struct Intake {
    pub svc: Service,
    pub model: Model,
    pub presence: Presence,
    pub max_members: usize,
}

/// What a push says of a message of an `e2ee` room.
pub const ENCRYPTED: &str = "🔒 encrypted message";

impl Intake {
    /// The message as the notifier needs it, or `None` if it is not a chat message or an
    /// edit, a delete or a reaction (logged and counted; acked by the caller).
    pub async fn decode(&self, msg: &Message) -> Result<Option<Incoming>, StoreError> {
        let (Some(room), Ok(info)) = (room_of(msg.subject.as_str()), msg.info()) else {
            counter!(m::PUSH_SKIPPED, "why" => "undecodable").increment(1);
            return Ok(None);
        };
        let Ok(payload) = serde_json::from_slice::<Payload>(&msg.payload) else {
            counter!(m::PUSH_SKIPPED, "why" => "undecodable").increment(1);
            return Ok(None);
        };
        let handshake = payload.mls.as_ref().is_some_and(|m| m.kind != MlsKind::App);
        if payload.change().is_some() || payload.event.is_some() || handshake {
            // An edit, a delete, a reaction, a room event or an MLS commit, proposal or
            // welcome is no news: it is not pushed.
            counter!(m::PUSH_SKIPPED, "why" => "change").increment(1);
            return Ok(None);
        }
        let Some(meta) = self.model.room(room).await? else {
            counter!(m::PUSH_SKIPPED, "why" => "no_room").increment(1);
            return Ok(None);
        };
        let nanos = u64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0);
        let body = match (payload.body.is_empty(), payload.attachments.first()) {
            // The server cannot read an end-to-end encrypted message: the push says so.
            _ if payload.mls.is_some() => ENCRYPTED.to_owned(),
            (true, Some(file)) => format!("📎 {}", file.name),
            _ => payload.body,
        };
        Ok(Some(Incoming {
            room: room.to_owned(),
            kind: meta.kind,
            seq: info.stream_sequence,
            from: payload.from,
            mentions: payload.mentions,
            body,
            stored: SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos),
        }))
    }

    /// The users `m` may push. Members without a target cost no store read (remembered by
    /// the service), and presence is read only when someone is left to push.
    pub async fn recipients(&mut self, m: &Incoming) -> Result<Vec<String>, StoreError> {
        let members = self.model.members(&m.room, self.max_members).await?;
        let mut out = Vec::new();
        for (user, _) in members {
            if user == m.from {
                continue;
            }
            // No target, or none yet when the message was stored (a target is pushed only
            // for what came after it was registered; `CLOCK_SLACK` for the two clocks).
            match self.svc.push_targets_since(&user).await? {
                Some(ms) if m.stored + CLOCK_SLACK >= UNIX_EPOCH + Duration::from_millis(ms) => {}
                _ => continue,
            }
            let settings = self.model.push_settings(&user).await?;
            if !wanted(&settings, &m.room, m.kind) {
                counter!(m::PUSH_SKIPPED, "why" => "muted").increment(1);
                continue;
            }
            if settings.mentions_only && m.kind != RoomKind::Dm && !m.mentions.concern(&user) {
                counter!(m::PUSH_SKIPPED, "why" => "not_mentioned").increment(1);
                continue;
            }
            out.push(user);
        }
        if !out.is_empty() {
            let online = self.presence.online(&m.room).await;
            out.retain(|user| {
                let away = !online.contains(user);
                if !away {
                    counter!(m::PUSH_SKIPPED, "why" => "online").increment(1);
                }
                away
            });
        }
        Ok(out)
    }
}
