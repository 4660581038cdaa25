//! A chat message as stored in JetStream, kept by workers and sent to clients.
//!
//! JetStream holds the [`Payload`] (`id`, `from`, `ts`, `body`, `attachments`, `edit_of`,
//! `delete_of`, `react_to` or `unreact_to` for a change of an earlier message, `reply_to` and
//! `thread_root` for a reply, `event` for a room event, `mls` in an `e2ee` room); the stream assigns `seq`, and
//! the republished copy carries `prev` in `Nats-Last-Sequence`. A gateway builds the client
//! frame by splicing the payload behind a `{"type":"message","room",..,"seq","prev",` prefix,
//! so a message is never parsed on the fan-out path.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::e2ee::Mls;
use crate::files::Attachment;
use crate::mentions::Mentions;
use crate::moderation::RoomEvent;
use crate::reactions::Reaction;
use crate::threads::ThreadSummary;

/// What a gateway publishes to JetStream for one `send`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub id: String,
    pub from: String,
    /// Milliseconds since the Unix epoch, set by the gateway that accepted the send.
    pub ts: u64,
    pub body: String,
    /// Files the message carries (extension; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Who the body mentions (extension; absent when nobody).
    #[serde(default, skip_serializing_if = "Mentions::is_empty")]
    pub mentions: Mentions,
    /// This message replaces the body of the message with this seq (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_of: Option<u64>,
    /// This message deletes the message with this seq (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_of: Option<u64>,
    /// This message adds the reaction `body` to the message with this seq (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub react_to: Option<u64>,
    /// This message takes the sender's reaction `body` off the message with this seq
    /// (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreact_to: Option<u64>,
    /// This message replies to the message with this seq (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// The root of the thread this reply belongs to (`reply_to`, or its root if that is a
    /// reply itself); set by the gateway that accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_root: Option<u64>,
    /// This message is a room event (moderation, topic, name; extension): empty body, `from`
    /// the user who acted. Only a gateway publishes one, never a client's `send`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<RoomEvent>,
    /// The MLS message of an `e2ee` room (extension; the body is then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mls: Option<Mls>,
}

impl Payload {
    /// What this message does to an earlier one, if it is an edit, a delete or a reaction.
    pub fn change(&self) -> Option<Change> {
        change_of(self.edit_of, self.delete_of, self.react_to, self.unreact_to)
    }
}

/// An edit, a delete or a reaction: a message of the room's order that refers to an earlier
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Replaces the body of the target.
    Edit(u64),
    /// Deletes the target (its body and attachments are erased from the store).
    Delete(u64),
    /// Adds the sender's reaction (the body) to the target.
    React(u64),
    /// Takes the sender's reaction (the body) off the target.
    Unreact(u64),
}

impl Change {
    /// The seq of the message this one changes.
    pub fn target(self) -> u64 {
        match self {
            Change::Edit(t) | Change::Delete(t) | Change::React(t) | Change::Unreact(t) => t,
        }
    }

    /// A reaction or the removal of one.
    pub fn is_reaction(self) -> bool {
        matches!(self, Change::React(_) | Change::Unreact(_))
    }
}

/// The change `edit_of` / `delete_of` / `react_to` / `unreact_to` describe (the first one
/// set wins if a malformed message has several).
pub fn change_of(
    edit_of: Option<u64>,
    delete_of: Option<u64>,
    react_to: Option<u64>,
    unreact_to: Option<u64>,
) -> Option<Change> {
    edit_of
        .map(Change::Edit)
        .or(delete_of.map(Change::Delete))
        .or(react_to.map(Change::React))
        .or(unreact_to.map(Change::Unreact))
}

/// The latest edit of a message: the edit's seq and ts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edited {
    pub seq: u64,
    pub ts: u64,
}

/// A message as clients see it (a `message` frame without `type`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub room: String,
    pub seq: u64,
    pub prev: u64,
    pub id: String,
    pub from: String,
    pub ts: u64,
    pub body: String,
    /// Files the message carries (extension; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Who the body mentions (extension; absent when nobody).
    #[serde(default, skip_serializing_if = "Mentions::is_empty")]
    pub mentions: Mentions,
    /// See [`Payload::edit_of`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_of: Option<u64>,
    /// See [`Payload::delete_of`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_of: Option<u64>,
    /// See [`Payload::react_to`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub react_to: Option<u64>,
    /// See [`Payload::unreact_to`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreact_to: Option<u64>,
    /// See [`Payload::reply_to`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// See [`Payload::thread_root`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_root: Option<u64>,
    /// See [`Payload::event`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<RoomEvent>,
    /// See [`Payload::mls`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mls: Option<Mls>,
    /// History only: the message was edited; `body` is the latest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<Edited>,
    /// History only: the message was deleted (a tombstone: empty body, no attachments).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// History only: an edit or delete the worker refused when it stored it (it changed
    /// nothing; it keeps its seq so the `prev` chain holds).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub void: bool,
    /// History only: the reactions on this message, by key in order of first use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// History only: this message is the root of a thread with these replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadSummary>,
}

impl Message {
    /// What this message does to an earlier one, if it is an edit, a delete or a reaction.
    pub fn change(&self) -> Option<Change> {
        change_of(self.edit_of, self.delete_of, self.react_to, self.unreact_to)
    }

    pub fn from_payload(room: &str, seq: u64, prev: u64, p: Payload) -> Self {
        Self {
            room: room.to_owned(),
            seq,
            prev,
            id: p.id,
            from: p.from,
            ts: p.ts,
            body: p.body,
            attachments: p.attachments,
            mentions: p.mentions,
            edit_of: p.edit_of,
            delete_of: p.delete_of,
            react_to: p.react_to,
            unreact_to: p.unreact_to,
            reply_to: p.reply_to,
            thread_root: p.thread_root,
            event: p.event,
            mls: p.mls,
            ..Default::default()
        }
    }
}

/// Builds the `message` frame for `payload` (a JSON object) without parsing it.
/// Returns `None` if the payload is not a JSON object.
pub fn encode_message_frame(room: &str, seq: u64, prev: u64, payload: &[u8]) -> Option<Bytes> {
    let rest = payload.strip_prefix(b"{")?;
    if !payload.ends_with(b"}") || rest.len() < 2 {
        return None;
    }
    let mut buf = BytesMut::with_capacity(48 + room.len() + payload.len());
    buf.put_slice(b"{\"type\":\"message\",\"room\":\"");
    // Room ids are validated to [A-Za-z0-9_-], so they need no escaping.
    buf.put_slice(room.as_bytes());
    buf.put_slice(b"\",\"seq\":");
    buf.put_slice(itoa(seq).as_bytes());
    buf.put_slice(b",\"prev\":");
    buf.put_slice(itoa(prev).as_bytes());
    buf.put_u8(b',');
    buf.put_slice(rest);
    Some(buf.freeze())
}

fn itoa(n: u64) -> String {
    n.to_string()
}

/// The user a stored payload bans, if it is a ban's event message. Costs a compare of its
/// first bytes for any other message (an event's id is first and starts with
/// [`crate::moderation::EVENT_ID_PREFIX`]); only users' sends whose own id starts so are parsed in vain.
/// Users' sends never carry `event` (the gateway builds their payloads).
pub fn ban_in(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct EventOnly {
        event: Option<RoomEvent>,
    }
    const HEAD: &[u8] = b"{\"id\":\"";
    let id = payload.strip_prefix(HEAD)?;
    if !id.starts_with(crate::moderation::EVENT_ID_PREFIX.as_bytes()) {
        return None;
    }
    match serde_json::from_slice::<EventOnly>(payload).ok()?.event? {
        RoomEvent::Ban { user, .. } => Some(user),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spliced_frame_is_the_full_message() {
        let p = Payload {
            id: "m\"1".into(),
            from: "ann".into(),
            ts: 17,
            body: "<b>hi</b> \u{1F600}".into(),
            attachments: Vec::new(),
            mentions: Mentions::parse("hi @bob"),
            edit_of: Some(3),
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&p).unwrap();
        let frame = encode_message_frame("general", 9, 4, &bytes).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(v["type"], "message");
        let m: Message = serde_json::from_value(v).unwrap();
        assert_eq!(m, Message::from_payload("general", 9, 4, p));
    }

    #[test]
    fn refuses_non_objects() {
        assert!(encode_message_frame("r", 1, 0, b"[1]").is_none());
        assert!(encode_message_frame("r", 1, 0, b"{}").is_none());
        assert!(encode_message_frame("r", 1, 0, b"").is_none());
    }

    /// A ban's event message as the gateway stores it names its user; nothing else does:
    /// other events, a user's send whose id looks like an event's, or whose body spells one.
    #[test]
    fn only_a_bans_event_message_names_a_banned_user() {
        let event = |id: &str, event: Option<RoomEvent>, body: &str| {
            let payload = Payload {
                id: id.into(),
                from: "ann".into(),
                ts: 1,
                body: body.into(),
                event,
                ..Payload::default()
            };
            serde_json::to_vec(&payload).unwrap()
        };
        let ban = RoomEvent::Ban {
            user: "bob".into(),
            reason: Some("spam".into()),
        };
        assert_eq!(
            ban_in(&event("evt-gw1-a", Some(ban.clone()), "")),
            Some("bob".into())
        );
        let mute = RoomEvent::Mute {
            user: "bob".into(),
            until: None,
        };
        assert_eq!(ban_in(&event("evt-gw1-b", Some(mute), "")), None);
        let spelled = r#"{"event":{"ban":{"user":"bob"}}}"#;
        assert_eq!(ban_in(&event("evt-mine", None, spelled)), None);
        assert_eq!(ban_in(&event("m1", None, spelled)), None);
        // The id is first in what the gateway stores: the compare that skips every other
        // message relies on it.
        let stored = event("evt-gw1-c", Some(ban), "");
        assert!(stored.starts_with(br#"{"id":"evt-"#));
        assert_eq!(ban_in(b"{\"id\":\"evt-"), None);
    }
}
