//! Who a stored message may push: the room's members but the sender, minus those online in
//! the room now, minus those without a target (or whose targets were all registered after
//! the message was stored: which of them it may push is decided per target when the window
//! closes) or whose settings mute it. (Whether they are
//! still offline, and still want it, is asked again when the window closes: `deliver.rs`.)

use std::time::{Duration, SystemTime};

use async_nats::jetstream::Message;
use chatmesh_protocol::e2ee::MlsKind;
use chatmesh_protocol::message::{Change, Payload};
use chatmesh_protocol::push::preview_of;
use chatmesh_protocol::service::{
    GetAccess, ListMembers, MembersRequest, Role, RoomKind, RoomUserRequest,
};
use chatmesh_protocol::subjects::room_of;
use chatmesh_protocol::{ApiError, ErrorCode};
use metrics::counter;

use super::collapse::{pushed_since, Incoming, Revision};
use super::deliver::wanted;
use super::presence::Presence;
use crate::metrics as m;
use crate::model::Model;
use crate::peers::Peers;
use crate::service::Service;
use crate::store::StoreError;

/// Members asked of a region's workers per page (their `members_list` bound).
const MEMBER_PAGE: u32 = 200;

/// Why a message could not be routed now (it is redelivered).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("store")]
    Store(#[from] StoreError),
    /// The workers of the room's region did not answer or refused.
    #[error("asking the room's region: {0}")]
    Region(ApiError),
}

/// Reads what a message needs to be routed.
#[derive(Debug)]
pub struct Intake {
    pub svc: Service,
    pub model: Model,
    pub presence: Presence,
    pub max_members: usize,
    /// Set for a stream whose rooms are stored by their region's own workers
    /// (`mesh.regional_workers`): their kind and members are asked of them.
    pub remote: Option<Peers>,
}

/// A stored message as the notifier reads it.
#[derive(Debug)]
pub enum Routed {
    /// A chat message: pushed to its recipients.
    New(Incoming),
    /// An edit or a delete: changes the windows holding its target.
    Revision(Revision),
}

/// What a push says of a message of an `e2ee` room.
pub const ENCRYPTED: &str = "🔒 encrypted message";

impl Intake {
    /// The message as the notifier needs it, or `None` if it is neither a chat message nor
    /// an edit or a delete (a reaction, an event, an MLS handshake; counted and acked by the
    /// caller).
    pub async fn decode(&self, msg: &Message) -> Result<Option<Routed>, IntakeError> {
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
            // welcome is no news: it is not pushed. An edit or a delete changes what waits.
            counter!(m::PUSH_SKIPPED, "why" => "change").increment(1);
            let (target, body) = match payload.change() {
                Some(Change::Edit(target)) => (target, Some(push_body(&payload))),
                Some(Change::Delete(target)) => (target, None),
                _ => return Ok(None),
            };
            return Ok(Some(Routed::Revision(Revision {
                room: room.to_owned(),
                target,
                body,
            })));
        }
        let Some(kind) = self.room_kind(room, &payload.from).await? else {
            counter!(m::PUSH_SKIPPED, "why" => "no_room").increment(1);
            return Ok(None);
        };
        let nanos = u64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0);
        let body = push_body(&payload);
        Ok(Some(Routed::New(Incoming {
            room: room.to_owned(),
            kind,
            seq: info.stream_sequence,
            from: payload.from,
            mentions: payload.mentions,
            body,
            stored: SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos),
            remote: self.remote.is_some(),
        })))
    }

    /// The users `m` may push. Members without a target cost no store read (remembered by
    /// the service), and presence is read only when someone is left to push.
    pub async fn recipients(&self, m: &Incoming) -> Result<Vec<String>, IntakeError> {
        let members = self.members(&m.room, &m.from).await?;
        let mut out = Vec::new();
        for (user, _) in members {
            if user == m.from {
                continue;
            }
            // No target, or none yet when the message was stored (a target is pushed only
            // for what came after it was registered, [`pushed_since`]: each target's own
            // registration is checked when the window closes, `deliver.rs`).
            match self.svc.push_targets_since(&user).await? {
                Some(ms) if m.stored >= pushed_since(ms) => {}
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
                    tracing::debug!(user = %user, room = %m.room, seq = m.seq, "not pushed: online when stored");
                }
                away
            });
        }
        Ok(out)
    }
}

impl Intake {
    /// The room's kind: from the store, or asked of the room's region (as its sender, who
    /// was a member when it sent). `None`: no such room.
    pub async fn room_kind(&self, room: &str, from: &str) -> Result<Option<RoomKind>, IntakeError> {
        let Some(peers) = &self.remote else {
            return Ok(self.model.room(room).await?.map(|meta| meta.kind));
        };
        let req = RoomUserRequest {
            room: room.to_owned(),
            user: from.to_owned(),
        };
        let access = peers.ask_found::<GetAccess>(room, &req).await;
        Ok(access.map_err(IntakeError::Region)?.map(|a| a.kind))
    }

    /// Up to `max_members` members of the room: from the store, or asked of the room's
    /// region page by page as its sender (a sender that has left since reads none).
    pub async fn members(
        &self,
        room: &str,
        from: &str,
    ) -> Result<Vec<(String, Role)>, IntakeError> {
        let Some(peers) = &self.remote else {
            return Ok(self.model.members(room, self.max_members).await?);
        };
        let mut out = Vec::new();
        let mut after = None;
        while out.len() < self.max_members {
            let req = MembersRequest {
                room: room.to_owned(),
                actor: from.to_owned(),
                after: after.take(),
                limit: MEMBER_PAGE,
                without_names: true,
            };
            let page = match peers.ask::<ListMembers>(room, &req).await {
                Ok(page) => page,
                Err(e) if matches!(e.code, ErrorCode::Forbidden | ErrorCode::NotFound) => break,
                Err(e) => return Err(IntakeError::Region(e)),
            };
            after = page.members.last().map(|m| m.user.clone());
            out.extend(page.members.into_iter().map(|m| (m.user, m.role)));
            if !page.more || after.is_none() {
                break;
            }
        }
        out.truncate(self.max_members);
        Ok(out)
    }
}

/// What a push may show of a message: its preview (at most
/// [`chatmesh_protocol::push::PREVIEW_CHARS`] characters), never more. The collapse window
/// keeps one per pending recipient, so a whole 16 KiB body each would cost a big room's
/// window gigabytes.
fn push_body(payload: &Payload) -> String {
    match (payload.body.is_empty(), payload.attachments.first()) {
        // The server cannot read an end-to-end encrypted message: the push says so.
        _ if payload.mls.is_some() => ENCRYPTED.to_owned(),
        (true, Some(file)) => preview_of(&format!("📎 {}", file.name)),
        _ => preview_of(&payload.body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_protocol::push::PREVIEW_CHARS;

    #[test]
    fn a_push_keeps_only_the_preview_of_a_body() {
        let payload = Payload {
            body: "é".repeat(16 * 1024),
            ..Payload::default()
        };
        let body = push_body(&payload);
        assert_eq!(
            body.chars().count(),
            PREVIEW_CHARS + 1,
            "the cut and its ellipsis"
        );
        assert_eq!(preview_of(&body), body, "cut once");
        let short = Payload {
            body: "see you".into(),
            ..Payload::default()
        };
        assert_eq!(push_body(&short), "see you");
    }
}
