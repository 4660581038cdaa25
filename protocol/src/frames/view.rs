//! A flat, borrowed view of any server frame, for clients that read many frames and need a
//! few fields of each: the load harness reads every delivery of a run through it.
//!
//! [`ServerFrame::decode`] is the full decode: its `type` tag makes serde buffer the frame
//! before it picks the variant, and a `message` owns its strings. [`FrameView::peek`] reads
//! the frame in one pass into one struct whose strings borrow from the text (unless they
//! hold escapes), with no allocation for a plain `message` or `ack`. [`ServerFrame::frame_type`]
//! is an exhaustive match, so a new server frame cannot be added without its [`FrameType`];
//! `protocol/tests/wire.rs` checks that the view of every encoded frame agrees with it.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

use super::{DecodeError, Ref, ServerFrame};

/// The `type` of a server frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameType {
    Welcome,
    Joined,
    Left,
    Ack,
    Message,
    History,
    Gap,
    Presence,
    PresenceDiff,
    Typing,
    Receipt,
    Membership,
    Invitation,
    Topic,
    Pong,
    Error,
    /// A type this version does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

/// The scalar fields of a server frame; those its type does not have are `None`. Lists
/// (`messages`, `online`, ...), `limits`, and the fields whose JSON type differs between
/// frames (a message's `from` is a user, a gap's a seq) are skipped: decode the frame in
/// full with [`FrameView::full`] when they are needed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FrameView<'a> {
    #[serde(rename = "type")]
    pub kind: FrameType,
    #[serde(default, rename = "ref")]
    pub r#ref: Ref,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub room: Option<Cow<'a, str>>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub prev: Option<u64>,
    #[serde(default)]
    pub last_seq: Option<u64>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub ts: Option<u64>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub body: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub user: Option<Cow<'a, str>>,
    /// An `error`'s code as sent (a newer server may send a code this version lacks).
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub code: Option<Cow<'a, str>>,
}

/// An optional string that borrows from the text when it can: serde's own `Option<Cow>`
/// always copies (its `borrow` attribute only reaches a `Cow` that is the field itself).
fn borrowed<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

impl<'a> FrameView<'a> {
    /// Reads the scalar fields of one frame, borrowing from `text` where it can.
    pub fn peek(text: &'a str) -> Result<Self, DecodeError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The same text decoded in full.
    pub fn full(text: &'a str) -> Result<ServerFrame<'a>, DecodeError> {
        ServerFrame::decode(text)
    }
}

impl ServerFrame<'_> {
    /// The frame's `type`.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Welcome { .. } => FrameType::Welcome,
            Self::Joined { .. } => FrameType::Joined,
            Self::Left { .. } => FrameType::Left,
            Self::Ack { .. } => FrameType::Ack,
            Self::Message(_) => FrameType::Message,
            Self::History { .. } => FrameType::History,
            Self::Gap { .. } => FrameType::Gap,
            Self::Presence { .. } => FrameType::Presence,
            Self::PresenceDiff { .. } => FrameType::PresenceDiff,
            Self::Typing { .. } => FrameType::Typing,
            Self::Receipt { .. } => FrameType::Receipt,
            Self::Membership { .. } => FrameType::Membership,
            Self::Invitation { .. } => FrameType::Invitation,
            Self::Topic { .. } => FrameType::Topic,
            Self::Pong { .. } => FrameType::Pong,
            Self::Error { .. } => FrameType::Error,
            Self::Unknown => FrameType::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_message_is_read_without_copies() {
        let text = r#"{"type":"ack","room":"r","id":"a\"b","seq":1,"ts":2}"#;
        let v = FrameView::peek(text).unwrap();
        assert!(matches!(v.room, Some(Cow::Borrowed("r"))));
        assert!(
            matches!(v.id.as_ref(), Some(Cow::Owned(id)) if id == "a\"b"),
            "an escaped string is unescaped into its own copy"
        );
        let text = r#"{"type":"message","room":"r","seq":9,"prev":4,"id":"k3","from":"a","ts":1,"body":"3 77 xx"}"#;
        let v = FrameView::peek(text).unwrap();
        assert_eq!(v.kind, FrameType::Message);
        assert_eq!((v.seq, v.prev, v.ts), (Some(9), Some(4), Some(1)));
        assert!(matches!(v.body, Some(Cow::Borrowed("3 77 xx"))));
        assert!(matches!(v.room, Some(Cow::Borrowed("r"))));
    }

    #[test]
    fn unknown_types_and_codes_are_read_and_broken_frames_are_errors() {
        let v = FrameView::peek(r#"{"type":"from_a_newer_server","x":[1]}"#).unwrap();
        assert_eq!(v.kind, FrameType::Unknown);
        let v =
            FrameView::peek(r#"{"type":"error","ref":2,"code":"new_code","message":"m"}"#).unwrap();
        assert_eq!(v.code.as_deref(), Some("new_code"));
        assert_eq!(v.r#ref, Some(serde_json::json!(2)));
        assert!(FrameView::peek(r#"{"room":"r"}"#).is_err(), "no type");
        assert!(FrameView::peek(r#"{"type":"ack","seq":"x"}"#).is_err());
        assert!(FrameView::peek("[]").is_err());
    }
}
