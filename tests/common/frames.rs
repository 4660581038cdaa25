//! The protocol's typed frames as the tests use them: short builders for the client frames
//! ([`frame`]) and readers that take one field out of a server frame or fail the test with
//! the frame that was there instead.

use chatmesh_client::Page;
use chatmesh_protocol::frames::ServerFrame;
use chatmesh_protocol::ErrorCode;

/// Client frames, by name: `c.request(frame::join("general"))`.
pub mod frame {
    use chatmesh_protocol::frames::{ClientFrame, DEFAULT_HISTORY_LIMIT};
    use chatmesh_protocol::message::Change;

    pub fn hello(token: &str) -> ClientFrame {
        ClientFrame::Hello {
            token: token.into(),
        }
    }

    pub fn join(room: &str) -> ClientFrame {
        ClientFrame::Join {
            room: room.into(),
            since: None,
        }
    }

    pub fn join_since(room: &str, since: u64) -> ClientFrame {
        ClientFrame::Join {
            room: room.into(),
            since: Some(since),
        }
    }

    pub fn leave(room: &str) -> ClientFrame {
        ClientFrame::Leave { room: room.into() }
    }

    pub fn send(room: &str, id: &str, body: &str) -> ClientFrame {
        ClientFrame::send(room, id, body)
    }

    /// An edit of message `seq`: a send with `edit_of`.
    pub fn edit(room: &str, id: &str, seq: u64, body: &str) -> ClientFrame {
        ClientFrame::send_change(room, id, body, Change::Edit(seq))
    }

    /// A delete of message `seq`: a send with `delete_of` and no body.
    pub fn delete(room: &str, id: &str, seq: u64) -> ClientFrame {
        ClientFrame::send_change(room, id, "", Change::Delete(seq))
    }

    /// The latest page at the server's default size (a frame without `limit`).
    /// A reaction (`unreact`: its removal) with `key` on message `seq`.
    pub fn react(room: &str, id: &str, seq: u64, key: &str, unreact: bool) -> ClientFrame {
        let change = if unreact {
            Change::Unreact(seq)
        } else {
            Change::React(seq)
        };
        ClientFrame::send_change(room, id, key, change)
    }

    /// A reply to message `seq`.
    pub fn reply(room: &str, id: &str, seq: u64, body: &str) -> ClientFrame {
        ClientFrame::send_reply(room, id, seq, body)
    }

    pub fn history(room: &str) -> ClientFrame {
        history_before(room, None, DEFAULT_HISTORY_LIMIT)
    }

    pub fn history_before(room: &str, before: Option<u64>, limit: u32) -> ClientFrame {
        ClientFrame::History {
            room: room.into(),
            before,
            limit,
        }
    }

    pub fn typing(room: &str) -> ClientFrame {
        ClientFrame::Typing { room: room.into() }
    }

    pub fn read(room: &str, seq: u64) -> ClientFrame {
        ClientFrame::Read {
            room: room.into(),
            seq,
        }
    }

    pub fn presence(room: &str) -> ClientFrame {
        ClientFrame::Presence { room: room.into() }
    }

    pub fn ping() -> ClientFrame {
        ClientFrame::Ping
    }
}

/// Reads one server frame; a text the protocol cannot read (or a type it does not know)
/// is a protocol break and fails the test here, with the text.
pub fn decode(text: &str) -> ServerFrame<'static> {
    match ServerFrame::decode(text) {
        Ok(ServerFrame::Unknown) => panic!("protocol break: a frame of unknown type: {text}"),
        Ok(f) => f.into_owned(),
        Err(e) => panic!("protocol break: {e}: {text}"),
    }
}

/// What an `ack` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub room: String,
    pub id: String,
    pub seq: u64,
    pub ts: u64,
}

/// The `ack` in `f`.
#[track_caller]
pub fn acked(f: &ServerFrame) -> Acked {
    match f {
        ServerFrame::Ack {
            room, id, seq, ts, ..
        } => Acked {
            room: room.to_string(),
            id: id.to_string(),
            seq: *seq,
            ts: *ts,
        },
        other => panic!("expected ack, got {other:?}"),
    }
}

/// The `last_seq` of the `joined` in `f`.
#[track_caller]
pub fn joined(f: &ServerFrame) -> u64 {
    match f {
        ServerFrame::Joined { last_seq, .. } => *last_seq,
        other => panic!("expected joined, got {other:?}"),
    }
}

/// The code of the `error` in `f`, `None` if `f` is not an error.
pub fn error_code(f: &ServerFrame) -> Option<ErrorCode> {
    match f {
        ServerFrame::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// The page of the `history` in `f`.
#[track_caller]
pub fn page(f: &ServerFrame) -> Page {
    match f {
        ServerFrame::History { messages, more, .. } => Page {
            messages: messages.to_vec(),
            more: *more,
        },
        other => panic!("expected history, got {other:?}"),
    }
}

/// The users online in the `presence` in `f`.
#[track_caller]
pub fn online(f: &ServerFrame) -> Vec<String> {
    match f {
        ServerFrame::Presence { online, .. } => online.iter().map(|u| u.to_string()).collect(),
        other => panic!("expected presence, got {other:?}"),
    }
}

/// Whether `f` answers the request with `ref` `r`.
pub fn replies_to(f: &ServerFrame, r: impl Into<serde_json::Value>) -> bool {
    f.reply_to() == Some(&r.into())
}
