//! Server → client frames: encoded by gateways, decoded by clients.
//!
//! One type for both directions, so a renamed field is a compile error on both sides. Fields
//! are `Cow`: a gateway encodes frames that borrow its data, a client decodes frames that
//! borrow the text they came in (strings without escapes are not copied).
//!
//! `message` frames are not encoded here on the fan-out path: a gateway splices the stored
//! payload behind a prefix without parsing it ([`crate::message::encode_message_frame`]);
//! the golden tests check that the splice and [`ServerFrame::Message`] write the same text.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Ref;
use crate::error::{ApiError, ErrorCode};
use crate::limits::Limits;
use crate::message::Message;
use crate::service::Role;

/// A server → client frame. Each encodes to one JSON text frame.
// `Message` is the large variant and also the common one: boxing it would cost every
// message frame an allocation to spare the rare small frames some stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Welcome {
        #[serde(rename = "ref", default, skip_serializing_if = "no_ref")]
        r#ref: Cow<'a, Ref>,
        #[serde(borrow)]
        user: Cow<'a, str>,
        #[serde(borrow)]
        session: Cow<'a, str>,
        limits: Cow<'a, Limits>,
    },
    Joined {
        #[serde(rename = "ref", default, skip_serializing_if = "no_ref")]
        r#ref: Cow<'a, Ref>,
        #[serde(borrow)]
        room: Cow<'a, str>,
        last_seq: u64,
    },
    /// The answer to `leave`, or (without `ref`) the user's membership was removed.
    Left {
        #[serde(rename = "ref", default, skip_serializing_if = "no_ref")]
        r#ref: Cow<'a, Ref>,
        #[serde(borrow)]
        room: Cow<'a, str>,
    },
    Ack {
        #[serde(rename = "ref", default, skip_serializing_if = "no_ref")]
        r#ref: Cow<'a, Ref>,
        #[serde(borrow)]
        room: Cow<'a, str>,
        #[serde(borrow)]
        id: Cow<'a, str>,
        seq: u64,
        ts: u64,
    },
    /// A live or replayed message of a joined room.
    Message(Message),
    History {
        #[serde(rename = "ref", default, skip_serializing_if = "no_ref")]
        r#ref: Cow<'a, Ref>,
        #[serde(borrow)]
        room: Cow<'a, str>,
        messages: Cow<'a, [Message]>,
        more: bool,
    },
    Gap {
        #[serde(borrow)]
        room: Cow<'a, str>,
        from: u64,
        to: u64,
    },
    Presence {
        #[serde(rename = "ref", default, skip_serializing_if = "no_ref")]
        r#ref: Cow<'a, Ref>,
        #[serde(borrow)]
        room: Cow<'a, str>,
        #[serde(borrow)]
        online: Vec<Cow<'a, str>>,
    },
    PresenceDiff {
        #[serde(borrow)]
        room: Cow<'a, str>,
        #[serde(borrow)]
        joined: Vec<Cow<'a, str>>,
        #[serde(borrow)]
        left: Vec<Cow<'a, str>>,
    },
    Typing {
        #[serde(borrow)]
        room: Cow<'a, str>,
        #[serde(borrow)]
        user: Cow<'a, str>,
    },
    Receipt {
        #[serde(borrow)]
        room: Cow<'a, str>,
        #[serde(borrow)]
        user: Cow<'a, str>,
        seq: u64,
    },
    /// The user's membership of `room` changed (added, invited, a DM opened, a role
    /// changed; `role` null: removed), sent to every session of the user.
    Membership {
        #[serde(borrow)]
        room: Cow<'a, str>,
        role: Option<Role>,
    },
    /// `by` invited the user to `room` with `role` (invitations extension: the user takes
    /// invitations instead of adds), sent to every session of the user.
    Invitation {
        #[serde(borrow)]
        room: Cow<'a, str>,
        #[serde(borrow)]
        by: Cow<'a, str>,
        role: Role,
    },
    /// The room's topic was set (`topic` null: cleared) by `by`; sent to the sessions that
    /// joined the room.
    Topic {
        #[serde(borrow)]
        room: Cow<'a, str>,
        #[serde(borrow, default)]
        topic: Option<Cow<'a, str>>,
        #[serde(borrow)]
        by: Cow<'a, str>,
    },
    Pong {
        #[serde(rename = "ref", default, skip_serializing_if = "no_ref")]
        r#ref: Cow<'a, Ref>,
    },
    Error {
        #[serde(rename = "ref", default, skip_serializing_if = "no_ref")]
        r#ref: Cow<'a, Ref>,
        code: ErrorCode,
        #[serde(borrow)]
        message: Cow<'a, str>,
    },
    /// A frame type this version does not know (sent by a newer server): clients skip it.
    /// Never sent.
    #[serde(other)]
    Unknown,
}

// serde's `skip_serializing_if` passes the field itself.
#[allow(clippy::ptr_arg)]
fn no_ref(r: &Cow<'_, Ref>) -> bool {
    r.is_none()
}

/// Why a server frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("not a protocol v1 server frame: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

impl<'a> ServerFrame<'a> {
    /// The frame as JSON text.
    pub fn encode(&self) -> String {
        // Strings, numbers and plain structs: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Reads one frame, borrowing from `text` where it can.
    pub fn decode(text: &'a str) -> Result<Self, DecodeError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The frame with nothing borrowed, to keep beyond its text.
    pub fn into_owned(self) -> ServerFrame<'static> {
        fn own(s: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(s.into_owned())
        }
        fn own_all(v: Vec<Cow<'_, str>>) -> Vec<Cow<'static, str>> {
            v.into_iter().map(own).collect()
        }
        fn own_ref(r: Cow<'_, Ref>) -> Cow<'static, Ref> {
            Cow::Owned(r.into_owned())
        }
        match self {
            Self::Welcome {
                r#ref,
                user,
                session,
                limits,
            } => ServerFrame::Welcome {
                r#ref: own_ref(r#ref),
                user: own(user),
                session: own(session),
                limits: Cow::Owned(limits.into_owned()),
            },
            Self::Joined {
                r#ref,
                room,
                last_seq,
            } => ServerFrame::Joined {
                r#ref: own_ref(r#ref),
                room: own(room),
                last_seq,
            },
            Self::Left { r#ref, room } => ServerFrame::Left {
                r#ref: own_ref(r#ref),
                room: own(room),
            },
            Self::Ack {
                r#ref,
                room,
                id,
                seq,
                ts,
            } => ServerFrame::Ack {
                r#ref: own_ref(r#ref),
                room: own(room),
                id: own(id),
                seq,
                ts,
            },
            Self::Message(m) => ServerFrame::Message(m),
            Self::History {
                r#ref,
                room,
                messages,
                more,
            } => ServerFrame::History {
                r#ref: own_ref(r#ref),
                room: own(room),
                messages: Cow::Owned(messages.into_owned()),
                more,
            },
            Self::Gap { room, from, to } => ServerFrame::Gap {
                room: own(room),
                from,
                to,
            },
            Self::Presence {
                r#ref,
                room,
                online,
            } => ServerFrame::Presence {
                r#ref: own_ref(r#ref),
                room: own(room),
                online: own_all(online),
            },
            Self::PresenceDiff { room, joined, left } => ServerFrame::PresenceDiff {
                room: own(room),
                joined: own_all(joined),
                left: own_all(left),
            },
            Self::Typing { room, user } => ServerFrame::Typing {
                room: own(room),
                user: own(user),
            },
            Self::Receipt { room, user, seq } => ServerFrame::Receipt {
                room: own(room),
                user: own(user),
                seq,
            },
            Self::Membership { room, role } => ServerFrame::Membership {
                room: own(room),
                role,
            },
            Self::Invitation { room, by, role } => ServerFrame::Invitation {
                room: own(room),
                by: own(by),
                role,
            },
            Self::Topic { room, topic, by } => ServerFrame::Topic {
                room: own(room),
                topic: topic.map(own),
                by: own(by),
            },
            Self::Pong { r#ref } => ServerFrame::Pong {
                r#ref: own_ref(r#ref),
            },
            Self::Error {
                r#ref,
                code,
                message,
            } => ServerFrame::Error {
                r#ref: own_ref(r#ref),
                code,
                message: own(message),
            },
            Self::Unknown => ServerFrame::Unknown,
        }
    }

    /// The `ref` of a reply (`None` for events and replies to requests without one).
    pub fn reply_to(&self) -> Option<&serde_json::Value> {
        match self {
            Self::Welcome { r#ref, .. }
            | Self::Joined { r#ref, .. }
            | Self::Left { r#ref, .. }
            | Self::Ack { r#ref, .. }
            | Self::History { r#ref, .. }
            | Self::Presence { r#ref, .. }
            | Self::Pong { r#ref }
            | Self::Error { r#ref, .. } => r#ref.as_ref().as_ref(),
            _ => None,
        }
    }
}

/// Encodes an `error` frame.
pub fn error_frame(r#ref: &Ref, error: &ApiError) -> String {
    ServerFrame::Error {
        r#ref: Cow::Borrowed(r#ref),
        code: error.code,
        message: Cow::Borrowed(&error.message),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_with_and_without_ref() {
        let s = ServerFrame::Pong {
            r#ref: Cow::Owned(None),
        }
        .encode();
        assert_eq!(s, r#"{"type":"pong"}"#);
        let r = Some(json!("a"));
        let s = error_frame(&r, &ApiError::forbidden("no"));
        assert_eq!(
            s,
            r#"{"type":"error","ref":"a","code":"forbidden","message":"no"}"#
        );
    }

    #[test]
    fn decodes_borrowing_plain_strings() {
        let text = r#"{"type":"ack","ref":1,"room":"general","id":"m\"1","seq":4,"ts":9}"#;
        let ServerFrame::Ack { room, id, .. } = ServerFrame::decode(text).unwrap() else {
            panic!("not an ack");
        };
        assert!(matches!(room, Cow::Borrowed("general")));
        assert_eq!(
            id, "m\"1",
            "an escaped string is unescaped into its own copy"
        );
    }

    #[test]
    fn unknown_types_are_skippable_and_broken_frames_are_errors() {
        assert_eq!(
            ServerFrame::decode(r#"{"type":"from_a_newer_server","x":1}"#).unwrap(),
            ServerFrame::Unknown
        );
        assert!(ServerFrame::decode(r#"{"type":"ack","room":"r"}"#).is_err());
        assert!(ServerFrame::decode("[]").is_err());
    }
}
