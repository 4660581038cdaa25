//! Room moderation (extension): bans, mutes, and the room events that tell a room about
//! them and about topic and name changes.
//!
//! A [`RoomEvent`] is published into the room's stream as a message with an empty body
//! (`"event": {...}`), so every member learns it in the room's one order: acked with a seq,
//! fanned out live, replayed on resume and listed in history. The worker owning the room
//! decides and stores a moderation action, then answers the gateway with the event to
//! publish; workers may not publish into the stream themselves (`crate::bus`).

use serde::{Deserialize, Serialize};

/// Bans a room holds at most unless configured otherwise (`worker.max_bans_per_room`).
pub const DEFAULT_MAX_BANS_PER_ROOM: u64 = 10_000;
/// Largest page of `GET /v1/rooms/{room}/bans`.
pub const MAX_BANS_PAGE: u32 = 200;
/// Default page of `GET /v1/rooms/{room}/bans`.
pub const DEFAULT_BANS_PAGE: u32 = 100;
/// How far ahead a mute's `until` may lie: ten years, in seconds.
pub const MAX_MUTE_SECS: u64 = 10 * 366 * 24 * 3600;
/// How the client id of every event message starts (`evt-<gateway>-<n>`); the id is the
/// first field of a stored payload, so a gateway's fan-out tells an event from a user's
/// message by its first bytes ([`crate::message::ban_in`]).
pub const EVENT_ID_PREFIX: &str = "evt-";

/// What happened to a room, as carried by an event message (`"event": {...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomEvent {
    /// The topic was set (`null`: cleared).
    Topic(Option<String>),
    /// The room's display name was set (`null`: cleared).
    Name(Option<String>),
    /// `user` was banned (and removed, if a member).
    Ban {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `user`'s ban was lifted (it is not re-added).
    Unban { user: String },
    /// `user` may not send until `until` (unix seconds; absent: until unmuted).
    Mute {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<u64>,
    },
    /// `user` may send again.
    Unmute { user: String },
}

impl RoomEvent {
    /// The event's kind, as its JSON key.
    pub fn kind(&self) -> &'static str {
        match self {
            RoomEvent::Topic(_) => "topic",
            RoomEvent::Name(_) => "name",
            RoomEvent::Ban { .. } => "ban",
            RoomEvent::Unban { .. } => "unban",
            RoomEvent::Mute { .. } => "mute",
            RoomEvent::Unmute { .. } => "unmute",
        }
    }
}

/// Bans `user` from `room` (owner or admin; see docs/PROTOCOL.md for who bans whom).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRequest {
    pub room: String,
    pub actor: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Mutes member `user` of `room` until `until` (unix seconds), or until unmuted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuteRequest {
    pub room: String,
    pub actor: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// Lifts a ban or a mute of `user` in `room`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiftRequest {
    pub room: String,
    pub actor: String,
    pub user: String,
}

/// A page of a room's bans, by user name, after `after` (exclusive). Owner and admins only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BansRequest {
    pub room: String,
    pub actor: String,
    pub after: Option<String>,
    pub limit: u32,
}

/// One ban: who, by whom, why, and when (milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    pub user: String,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub ts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanPage {
    pub bans: Vec<BanInfo>,
    /// More bans follow the last one of this page.
    pub more: bool,
}

/// Sets (or, with `None`, clears) a room's display name. Owner or admin only; the name is
/// checked by [`crate::text::clean_room_name`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetNameRequest {
    pub room: String,
    pub actor: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomName {
    pub room: String,
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_one_key_each() {
        let cases = [
            (RoomEvent::Topic(None), r#"{"topic":null}"#),
            (RoomEvent::Name(Some("Den".into())), r#"{"name":"Den"}"#),
            (
                RoomEvent::Ban {
                    user: "bob".into(),
                    reason: None,
                },
                r#"{"ban":{"user":"bob"}}"#,
            ),
            (
                RoomEvent::Mute {
                    user: "bob".into(),
                    until: Some(9),
                },
                r#"{"mute":{"user":"bob","until":9}}"#,
            ),
            (
                RoomEvent::Unmute { user: "bob".into() },
                r#"{"unmute":{"user":"bob"}}"#,
            ),
        ];
        for (event, json) in cases {
            assert_eq!(serde_json::to_string(&event).unwrap(), json);
            assert_eq!(serde_json::from_str::<RoomEvent>(json).unwrap(), event);
        }
    }
}
