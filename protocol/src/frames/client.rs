//! Client → server frames: parsed and validated by gateways, encoded by clients.
//!
//! Parsing first reads the frame as a JSON object to recover `type` and `ref`, so that even a
//! frame with bad fields gets an `error` that carries the client's `ref`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Ref, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
use crate::e2ee::Mls;
use crate::error::{ApiError, ErrorCode};
use crate::files::{validate_file_id, MAX_ATTACHMENTS};
use crate::limits::Limits;
use crate::message::Change;
use crate::names::{validate_msg_id, validate_name};

/// A client request. [`parse_client_frame`] reads and validates one; [`ClientFrame::encode`]
/// writes one.
// A frame lives from its parse to its handling, one at a time per session: `send`'s many
// optional fields cost nothing kept, and boxing them would cost an allocation per send.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Hello {
        token: String,
    },
    Join {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    Leave {
        room: String,
    },
    Send {
        room: String,
        id: String,
        body: String,
        /// Ids of files of the room the message carries (extension; at most
        /// [`MAX_ATTACHMENTS`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<String>,
        /// Replace the body of this earlier message of the sender (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edit_of: Option<u64>,
        /// Delete this earlier message (extension; `body` must be empty).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delete_of: Option<u64>,
        /// Add the reaction `body` to this earlier message (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        react_to: Option<u64>,
        /// Take the sender's reaction `body` off this earlier message (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unreact_to: Option<u64>,
        /// Reply to this earlier message (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        /// The MLS message of a send to an `e2ee` room (extension; `body` must be empty).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mls: Option<Mls>,
        /// This `id` may have been sent already (a connection broke before its ack), when the
        /// sender had seen the room up to this seq: the room's stored messages after it are
        /// looked through for it, so a resend is recognised after the stream's duplicate
        /// window too (extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resend_after: Option<u64>,
    },
    History {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        #[serde(default = "default_limit")]
        limit: u32,
    },
    Typing {
        room: String,
    },
    Read {
        room: String,
        seq: u64,
    },
    Presence {
        room: String,
    },
    Ping,
}

fn default_limit() -> u32 {
    DEFAULT_HISTORY_LIMIT
}

/// A client frame with its `ref`, as it is written (`type` first, `ref` last).
#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(flatten)]
    frame: &'a ClientFrame,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    r#ref: &'a Ref,
}

impl ClientFrame {
    /// A `send` of a plain message: no files, no change, no reply, no MLS.
    pub fn send(room: impl Into<String>, id: impl Into<String>, body: impl Into<String>) -> Self {
        Self::Send {
            room: room.into(),
            id: id.into(),
            body: body.into(),
            attachments: Vec::new(),
            edit_of: None,
            delete_of: None,
            react_to: None,
            unreact_to: None,
            reply_to: None,
            mls: None,
            resend_after: None,
        }
    }

    /// A `send` that changes message `change.target()`: an edit (`body` the new text), a
    /// delete (`body` empty), a reaction or its removal (`body` the reaction's key).
    pub fn send_change(
        room: impl Into<String>,
        id: impl Into<String>,
        body: impl Into<String>,
        change: Change,
    ) -> Self {
        let mut frame = Self::send(room, id, body);
        if let Self::Send {
            edit_of,
            delete_of,
            react_to,
            unreact_to,
            ..
        } = &mut frame
        {
            match change {
                Change::Edit(seq) => *edit_of = Some(seq),
                Change::Delete(seq) => *delete_of = Some(seq),
                Change::React(seq) => *react_to = Some(seq),
                Change::Unreact(seq) => *unreact_to = Some(seq),
            }
        }
        frame
    }

    /// A `send` of `body` with the room's files `attachments`.
    pub fn send_files(
        room: impl Into<String>,
        id: impl Into<String>,
        body: impl Into<String>,
        files: Vec<String>,
    ) -> Self {
        let mut frame = Self::send(room, id, body);
        if let Self::Send { attachments, .. } = &mut frame {
            *attachments = files;
        }
        frame
    }

    /// A `send` of `body` as a reply to message `seq`.
    pub fn send_reply(
        room: impl Into<String>,
        id: impl Into<String>,
        seq: u64,
        body: impl Into<String>,
    ) -> Self {
        let mut frame = Self::send(room, id, body);
        if let Self::Send { reply_to, .. } = &mut frame {
            *reply_to = Some(seq);
        }
        frame
    }

    /// A `send` of an MLS message to an `e2ee` room (its body empty).
    pub fn send_mls(room: impl Into<String>, id: impl Into<String>, message: Mls) -> Self {
        let mut frame = Self::send(room, id, String::new());
        if let Self::Send { mls, .. } = &mut frame {
            *mls = Some(message);
        }
        frame
    }

    /// The frame as JSON text, with `ref` when one is given.
    pub fn encode(&self, r#ref: &Ref) -> String {
        // Plain strings and numbers: serialising cannot fail.
        serde_json::to_string(&Outgoing { frame: self, r#ref }).unwrap_or_else(|_| "{}".into())
    }
}

/// Why a frame was refused, with the `ref` to answer to.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub r#ref: Ref,
    pub error: ApiError,
}

/// Only the `ref` of a frame (`None` if it has none or is not a JSON object): for answering a
/// frame that is refused before it is parsed (the flood guard). Nothing else is kept.
pub fn peek_ref(text: &[u8]) -> Ref {
    #[derive(Deserialize)]
    struct OnlyRef {
        #[serde(rename = "ref", default)]
        r#ref: Option<Value>,
    }
    // A struct also deserializes from a JSON array: only objects have a `ref`.
    if text.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    match serde_json::from_slice::<OnlyRef>(text) {
        Ok(OnlyRef {
            r#ref: Some(v @ (Value::String(_) | Value::Number(_))),
        }) => Some(v),
        _ => None,
    }
}

/// Parses and validates one text frame. `limits` bounds the body of `send`.
pub fn parse_client_frame(text: &[u8], limits: &Limits) -> Result<(Ref, ClientFrame), FrameError> {
    let bad = |r: &Ref, msg: String| FrameError {
        r#ref: r.clone(),
        error: ApiError::bad_request(msg),
    };
    let mut value: Value = serde_json::from_slice(text).map_err(|e| FrameError {
        r#ref: None,
        error: ApiError::bad_request(format!("invalid JSON: {e}")),
    })?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| bad(&None, "a frame must be a JSON object".into()))?;
    let r#ref = match obj.remove("ref") {
        None | Some(Value::Null) => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v),
        Some(_) => return Err(bad(&None, "ref must be a string or a number".into())),
    };
    match obj.get("type") {
        Some(Value::String(_)) => {}
        Some(_) => return Err(bad(&r#ref, "type must be a string".into())),
        None => return Err(bad(&r#ref, "missing type".into())),
    }
    let frame: ClientFrame =
        serde_json::from_value(value).map_err(|e| bad(&r#ref, e.to_string()))?;
    if let Err(message) = frame.validate(limits) {
        return Err(FrameError {
            r#ref,
            error: message,
        });
    }
    Ok((r#ref, frame))
}

impl ClientFrame {
    /// The checks beyond the JSON shape: names, ids, sizes, bounds.
    pub fn validate(&self, limits: &Limits) -> Result<(), ApiError> {
        let room = |room: &str| {
            validate_name("room", room).map_err(|e| ApiError::bad_request(e.to_string()))
        };
        match self {
            Self::Hello { .. } | Self::Ping => Ok(()),
            Self::Join { room: r, .. }
            | Self::Leave { room: r }
            | Self::Typing { room: r }
            | Self::Read { room: r, .. }
            | Self::Presence { room: r } => room(r),
            Self::Send {
                room: r,
                id,
                body,
                attachments,
                edit_of,
                delete_of,
                react_to,
                unreact_to,
                reply_to,
                mls,
                resend_after: _,
            } => {
                room(r)?;
                validate_msg_id(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
                if let Some(mls) = mls {
                    let plain = body.is_empty()
                        && attachments.is_empty()
                        && [edit_of, delete_of, react_to, unreact_to, reply_to]
                            .iter()
                            .all(|t| t.is_none());
                    if !plain {
                        return Err(ApiError::bad_request(
                            "a send with mls has an empty body and no files, edit, delete, reaction or reply",
                        ));
                    }
                    return mls.validate();
                }
                let change = Targets {
                    edit_of: *edit_of,
                    delete_of: *delete_of,
                    react_to: *react_to,
                    unreact_to: *unreact_to,
                    reply_to: *reply_to,
                };
                validate_change(body, attachments, change)?;
                if attachments.len() > MAX_ATTACHMENTS {
                    return Err(ApiError::bad_request(format!(
                        "a message carries at most {MAX_ATTACHMENTS} files"
                    )));
                }
                for (i, file) in attachments.iter().enumerate() {
                    validate_file_id(file)?;
                    if attachments[..i].contains(file) {
                        return Err(ApiError::bad_request("a file is attached twice"));
                    }
                }
                if body.len() > limits.max_body_bytes {
                    return Err(ApiError::new(
                        ErrorCode::TooLarge,
                        format!("body is larger than {} bytes", limits.max_body_bytes),
                    ));
                }
                Ok(())
            }
            Self::History { room: r, limit, .. } => {
                room(r)?;
                if !(1..=MAX_HISTORY_LIMIT).contains(limit) {
                    return Err(ApiError::bad_request("limit must be between 1 and 100"));
                }
                Ok(())
            }
        }
    }
}

/// The earlier messages a send refers to.
struct Targets {
    edit_of: Option<u64>,
    delete_of: Option<u64>,
    react_to: Option<u64>,
    unreact_to: Option<u64>,
    reply_to: Option<u64>,
}

/// The shape of a change (edit, delete, reaction) or a reply: one target (a seq ≥ 1); a
/// change carries no files and is not a reply; an edit has a body, a delete none, a reaction
/// a valid key. Whether the target may be changed is decided where the room's messages are.
fn validate_change(body: &str, attachments: &[String], t: Targets) -> Result<(), ApiError> {
    let changes = [t.edit_of, t.delete_of, t.react_to, t.unreact_to];
    let set: Vec<u64> = changes.iter().flatten().copied().collect();
    if set.len() > 1 {
        return Err(ApiError::bad_request(
            "a send carries at most one of edit_of, delete_of, react_to, unreact_to",
        ));
    }
    if t.reply_to == Some(0) || set.contains(&0) {
        return Err(ApiError::bad_request("no message has seq 0"));
    }
    if set.is_empty() {
        return Ok(());
    }
    if t.reply_to.is_some() {
        return Err(ApiError::bad_request(
            "an edit, a delete or a reaction is not a reply",
        ));
    }
    if !attachments.is_empty() {
        return Err(ApiError::bad_request(
            "an edit, a delete or a reaction carries no attachments",
        ));
    }
    if t.delete_of.is_some() && !body.is_empty() {
        return Err(ApiError::bad_request("a delete has an empty body"));
    }
    if t.edit_of.is_some() && body.is_empty() {
        return Err(ApiError::bad_request(
            "an edit needs a body (use delete_of to delete)",
        ));
    }
    if t.react_to.is_some() || t.unreact_to.is_some() {
        crate::reactions::validate_key(body)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<(Ref, ClientFrame), FrameError> {
        parse_client_frame(v.to_string().as_bytes(), &Limits::default())
    }

    #[test]
    fn parses_every_request_type() {
        let (r, f) =
            parse(json!({"type":"send","ref":7,"room":"r1","id":"a","body":"hi"})).unwrap();
        assert_eq!(r, Some(json!(7)));
        assert_eq!(
            f,
            ClientFrame::Send {
                room: "r1".into(),
                id: "a".into(),
                body: "hi".into(),
                attachments: Vec::new(),
                edit_of: None,
                delete_of: None,
                react_to: None,
                unreact_to: None,
                reply_to: None,
                mls: None,
                resend_after: None,
            }
        );
        let (_, f) =
            parse(json!({"type":"send","room":"r1","id":"b","body":"new","edit_of":3})).unwrap();
        assert!(matches!(
            f,
            ClientFrame::Send {
                edit_of: Some(3),
                delete_of: None,
                ..
            }
        ));
        let (_, f) =
            parse(json!({"type":"send","room":"r1","id":"c","body":"","delete_of":3})).unwrap();
        assert!(matches!(
            f,
            ClientFrame::Send {
                edit_of: None,
                delete_of: Some(3),
                ..
            }
        ));
        assert_eq!(parse(json!({"type":"ping"})).unwrap().1, ClientFrame::Ping);
        assert_eq!(
            parse(json!({"type":"ping","extra":1})).unwrap().1,
            ClientFrame::Ping,
            "unknown fields are ignored, as in every frame"
        );
        assert_eq!(
            parse(json!({"type":"join","room":"r","since":5}))
                .unwrap()
                .1,
            ClientFrame::Join {
                room: "r".into(),
                since: Some(5)
            }
        );
        assert_eq!(
            parse(json!({"type":"history","room":"r"})).unwrap().1,
            ClientFrame::History {
                room: "r".into(),
                before: None,
                limit: 50
            }
        );
    }

    #[test]
    fn errors_keep_the_ref() {
        let e = parse(json!({"type":"join","ref":"x","room":"a.b"})).unwrap_err();
        assert_eq!(e.r#ref, Some(json!("x")));
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        let e = parse(json!({"type":"nope","ref":"y"})).unwrap_err();
        assert_eq!(e.r#ref, Some(json!("y")));
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "",
            "nul",
            "[1]",
            "{\"type\":3}",
            "{}",
            "{\"type\":\"send\"}",
        ] {
            let e = parse_client_frame(text.as_bytes(), &Limits::default()).unwrap_err();
            assert_eq!(e.error.code, ErrorCode::BadRequest, "{text}");
        }
    }

    #[test]
    fn peek_ref_reads_only_a_valid_ref() {
        assert_eq!(
            peek_ref(br#"{"type":"send","ref":"a","body":"x"}"#),
            Some(json!("a"))
        );
        assert_eq!(peek_ref(br#"{"ref":7}"#), Some(json!(7)));
        assert_eq!(peek_ref(br#"{"ref":{"x":1}}"#), None);
        assert_eq!(peek_ref(b"[1]"), None);
        assert_eq!(peek_ref(b"not json"), None);
    }

    #[test]
    fn oversize_body_is_too_large() {
        let body = "x".repeat(16 * 1024 + 1);
        let e = parse(json!({"type":"send","room":"r","id":"1","body":body})).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::TooLarge);
    }

    #[test]
    fn edits_and_deletes_have_one_target_and_no_files() {
        for bad in [
            json!({"type":"send","room":"r","id":"1","body":"x","edit_of":1,"delete_of":1}),
            json!({"type":"send","room":"r","id":"1","body":"x","edit_of":0}),
            json!({"type":"send","room":"r","id":"1","body":"","edit_of":2}),
            json!({"type":"send","room":"r","id":"1","body":"x","delete_of":2}),
            json!({"type":"send","room":"r","id":"1","body":"x","edit_of":2,
                   "attachments":["f00000000000000000000000000000000"]}),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert_eq!(e.error.code, ErrorCode::BadRequest, "{bad}");
        }
        let body = "x".repeat(16 * 1024 + 1);
        let e =
            parse(json!({"type":"send","room":"r","id":"1","body":body,"edit_of":2})).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::TooLarge);
        for bad in [
            json!({"type":"send","room":"r","id":"1","body":"👍","react_to":1,"edit_of":1}),
            json!({"type":"send","room":"r","id":"1","body":"👍","react_to":1,"unreact_to":1}),
            json!({"type":"send","room":"r","id":"1","body":"","react_to":1}),
            json!({"type":"send","room":"r","id":"1","body":"a b","unreact_to":1}),
            json!({"type":"send","room":"r","id":"1","body":"👍","react_to":0}),
            json!({"type":"send","room":"r","id":"1","body":"👍","react_to":1,"reply_to":1}),
            json!({"type":"send","room":"r","id":"1","body":"x","reply_to":0}),
            json!({"type":"send","room":"r","id":"1","body":"x","edit_of":1,"reply_to":1}),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert_eq!(e.error.code, ErrorCode::BadRequest, "{bad}");
        }
        let (_, f) =
            parse(json!({"type":"send","room":"r","id":"1","body":"👍","react_to":4})).unwrap();
        assert!(matches!(
            f,
            ClientFrame::Send {
                react_to: Some(4),
                ..
            }
        ));
        let (_, f) = parse(
            json!({"type":"send","room":"r","id":"1","body":"x","reply_to":4,
                                  "attachments":["f00000000000000000000000000000000"]}),
        )
        .unwrap();
        assert!(matches!(
            f,
            ClientFrame::Send {
                reply_to: Some(4),
                ..
            }
        ));
        let e =
            parse(json!({"type":"send","room":"r","id":"1","body":body,"edit_of":2})).unwrap_err();
        assert_eq!(
            e.error.code,
            ErrorCode::TooLarge,
            "an edit obeys the body limit"
        );
    }

    #[test]
    fn history_limit_is_bounded() {
        assert!(parse(json!({"type":"history","room":"r","limit":0})).is_err());
        assert!(parse(json!({"type":"history","room":"r","limit":101})).is_err());
    }

    #[test]
    fn encodes_with_and_without_ref() {
        assert_eq!(ClientFrame::Ping.encode(&None), r#"{"type":"ping"}"#);
        let send = ClientFrame::Send {
            room: "r".into(),
            id: "1".into(),
            body: "hi".into(),
            attachments: Vec::new(),
            edit_of: None,
            delete_of: None,
            react_to: None,
            unreact_to: None,
            reply_to: None,
            mls: None,
            resend_after: None,
        };
        assert_eq!(
            send.encode(&Some(json!(3))),
            r#"{"type":"send","room":"r","id":"1","body":"hi","ref":3}"#
        );
    }
}
