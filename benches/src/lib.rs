//! Shared fixtures of chatmesh's criterion benches (`benches/benches/*.rs`, one group per
//! file): representative frames, payloads and room names, so every bench measures the same
//! shapes the gateway and workers see.

use chatmesh_protocol::message::Payload;

/// A room id of typical length.
pub const ROOM: &str = "team-platform-general";

/// A `send` frame as a browser sends it, with a 64-byte body.
pub fn send_frame() -> Vec<u8> {
    format!(
        r#"{{"type":"send","ref":17,"room":"{ROOM}","id":"m-1712345678-0042","body":"{}"}}"#,
        body(64)
    )
    .into_bytes()
}

/// A body of `n` printable bytes.
pub fn body(n: usize) -> String {
    "hello world, ".chars().cycle().take(n).collect()
}

/// The JetStream payload of one message with a `n`-byte body.
pub fn payload(n: usize) -> Payload {
    Payload {
        id: "m-1712345678-0042".into(),
        from: "alice_01".into(),
        ts: 1_712_345_678_901,
        body: body(n),
        attachments: Vec::new(),
        mentions: Default::default(),
        ..Default::default()
    }
}

/// Its JSON bytes, as a gateway receives them from the republish subject.
pub fn payload_json(n: usize) -> Vec<u8> {
    serde_json::to_vec(&payload(n)).unwrap_or_default()
}

/// `n` distinct room ids like real ones.
pub fn rooms(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("room-{i:06}-general")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_valid_protocol() {
        let limits = chatmesh_protocol::Limits::default();
        assert!(chatmesh_protocol::frames::parse_client_frame(&send_frame(), &limits).is_ok());
        assert!(chatmesh_protocol::validate_name("room", ROOM).is_ok());
        assert_eq!(body(10).len(), 10);
        assert!(payload_json(64).starts_with(b"{"));
        assert_eq!(rooms(3).len(), 3);
    }
}
