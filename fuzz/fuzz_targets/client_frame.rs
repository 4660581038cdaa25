//! The client-frame parser on arbitrary bytes: it never panics, and every frame it accepts
//! names only valid rooms (a room id becomes a NATS subject token, so a `.`, `*` or `>` must
//! never get through).
#![no_main]

use chatmesh_protocol::frames::{parse_client_frame, ClientFrame};
use chatmesh_protocol::{validate_name, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok((_, frame)) = parse_client_frame(data, &limits) else {
        return;
    };
    let room = match &frame {
        ClientFrame::Join { room, .. }
        | ClientFrame::Leave { room }
        | ClientFrame::Typing { room }
        | ClientFrame::Read { room, .. }
        | ClientFrame::Presence { room }
        | ClientFrame::History { room, .. } => Some(room.as_str()),
        ClientFrame::Send { room, body, .. } => {
            assert!(body.len() <= limits.max_body_bytes, "body over the limit");
            Some(room.as_str())
        }
        _ => None,
    };
    if let Some(room) = room {
        assert!(validate_name("room", room).is_ok(), "accepted room {room:?}");
        assert!(!room.contains(['.', '*', '>', ' ']), "subject token {room:?}");
    }
});
