//! Client → server frames (parsed) and server → client frames (encoded) of protocol v1.
//!
//! Parsing first reads the frame as a JSON object to recover `type` and `ref`, so that even a
//! frame with bad fields gets an `error` that carries the client's `ref`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};
use crate::limits::Limits;
use crate::message::Message;
use crate::names::{validate_msg_id, validate_name};

/// A request's `ref`: echoed verbatim in its reply (a string or a number).
pub type Ref = Option<Value>;

/// Largest `history` page.
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// `history` page size when none is given.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// A validated client request.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Hello {
        token: String,
    },
    Join {
        room: String,
        since: Option<u64>,
    },
    Leave {
        room: String,
    },
    Send {
        room: String,
        id: String,
        body: String,
    },
    History {
        room: String,
        before: Option<u64>,
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

/// Why a frame was refused, with the `ref` to answer to.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub r#ref: Ref,
    pub error: ApiError,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Raw {
    Hello {
        token: String,
    },
    Join {
        room: String,
        since: Option<u64>,
    },
    Leave {
        room: String,
    },
    Send {
        room: String,
        id: String,
        body: String,
    },
    History {
        room: String,
        before: Option<u64>,
        limit: Option<u32>,
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
    Ping {},
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
    let raw: Raw = serde_json::from_value(value).map_err(|e| bad(&r#ref, e.to_string()))?;
    let room_ok = |room: &str| validate_name("room", room).map_err(|e| bad(&r#ref, e.to_string()));
    let frame = match raw {
        Raw::Hello { token } => ClientFrame::Hello { token },
        Raw::Join { room, since } => {
            room_ok(&room)?;
            ClientFrame::Join { room, since }
        }
        Raw::Leave { room } => {
            room_ok(&room)?;
            ClientFrame::Leave { room }
        }
        Raw::Send { room, id, body } => {
            room_ok(&room)?;
            validate_msg_id(&id).map_err(|e| bad(&r#ref, e.to_string()))?;
            if body.len() > limits.max_body_bytes {
                return Err(FrameError {
                    r#ref,
                    error: ApiError::new(
                        ErrorCode::TooLarge,
                        format!("body is larger than {} bytes", limits.max_body_bytes),
                    ),
                });
            }
            ClientFrame::Send { room, id, body }
        }
        Raw::History {
            room,
            before,
            limit,
        } => {
            room_ok(&room)?;
            let limit = limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
            if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
                return Err(bad(&r#ref, "limit must be between 1 and 100".into()));
            }
            ClientFrame::History {
                room,
                before,
                limit,
            }
        }
        Raw::Typing { room } => {
            room_ok(&room)?;
            ClientFrame::Typing { room }
        }
        Raw::Read { room, seq } => {
            room_ok(&room)?;
            ClientFrame::Read { room, seq }
        }
        Raw::Presence { room } => {
            room_ok(&room)?;
            ClientFrame::Presence { room }
        }
        Raw::Ping {} => ClientFrame::Ping,
    };
    Ok((r#ref, frame))
}

/// A server → client frame. Each encodes to one JSON text frame.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Welcome {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: &'a Ref,
        user: &'a str,
        session: &'a str,
        limits: &'a Limits,
    },
    Joined {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: &'a Ref,
        room: &'a str,
        last_seq: u64,
    },
    Left {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: &'a Ref,
        room: &'a str,
    },
    Ack {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: &'a Ref,
        room: &'a str,
        id: &'a str,
        seq: u64,
        ts: u64,
    },
    History {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: &'a Ref,
        room: &'a str,
        messages: &'a [Message],
        more: bool,
    },
    Gap {
        room: &'a str,
        from: u64,
        to: u64,
    },
    Presence {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: &'a Ref,
        room: &'a str,
        online: &'a [&'a str],
    },
    PresenceDiff {
        room: &'a str,
        joined: &'a [&'a str],
        left: &'a [&'a str],
    },
    Typing {
        room: &'a str,
        user: &'a str,
    },
    Receipt {
        room: &'a str,
        user: &'a str,
        seq: u64,
    },
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: &'a Ref,
    },
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        r#ref: &'a Ref,
        code: ErrorCode,
        message: &'a str,
    },
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub fn encode(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Encodes an `error` frame.
pub fn error_frame(r#ref: &Ref, error: &ApiError) -> String {
    ServerFrame::Error {
        r#ref,
        code: error.code,
        message: &error.message,
    }
    .encode()
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
                body: "hi".into()
            }
        );
        assert_eq!(parse(json!({"type":"ping"})).unwrap().1, ClientFrame::Ping);
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
    fn oversize_body_is_too_large() {
        let body = "x".repeat(16 * 1024 + 1);
        let e = parse(json!({"type":"send","room":"r","id":"1","body":body})).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::TooLarge);
    }

    #[test]
    fn history_limit_is_bounded() {
        assert!(parse(json!({"type":"history","room":"r","limit":0})).is_err());
        assert!(parse(json!({"type":"history","room":"r","limit":101})).is_err());
    }

    #[test]
    fn encodes_with_and_without_ref() {
        let s = ServerFrame::Pong { r#ref: &None }.encode();
        assert_eq!(s, r#"{"type":"pong"}"#);
        let r = Some(json!("a"));
        let s = error_frame(&r, &ApiError::forbidden("no"));
        assert_eq!(
            s,
            r#"{"type":"error","ref":"a","code":"forbidden","message":"no"}"#
        );
    }
}
