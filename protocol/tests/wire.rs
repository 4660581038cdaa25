//! The wire of protocol v1, pinned: every frame type's JSON is written out here (golden), so
//! an accidental change of a name, an order or an omitted field fails; and every frame type
//! round-trips (encode → decode gives it back) for arbitrary contents (proptest), and the
//! one-pass [`FrameView`] of every encoded frame agrees with the full decode.

use std::borrow::Cow;

use chatmesh_protocol::frames::{
    parse_client_frame, ClientFrame, FrameType, FrameView, Ref, ServerFrame,
};
use chatmesh_protocol::limits::Limits;
use chatmesh_protocol::message::{encode_message_frame, Message, Payload};
use chatmesh_protocol::service::Role;
use chatmesh_protocol::ErrorCode;
use proptest::prelude::*;
use serde_json::json;

fn r(v: serde_json::Value) -> Ref {
    Some(v)
}

/// Every client frame, with and without `ref`, as clients write it.
#[test]
fn client_frames_golden() {
    let cases: Vec<(ClientFrame, Ref, &str)> = vec![
        (
            ClientFrame::Hello {
                token: "t.k.n".into(),
            },
            r(json!(1)),
            r#"{"type":"hello","token":"t.k.n","ref":1}"#,
        ),
        (
            ClientFrame::Join {
                room: "general".into(),
                since: None,
            },
            None,
            r#"{"type":"join","room":"general"}"#,
        ),
        (
            ClientFrame::Join {
                room: "general".into(),
                since: Some(41),
            },
            r(json!("j")),
            r#"{"type":"join","room":"general","since":41,"ref":"j"}"#,
        ),
        (
            ClientFrame::Leave {
                room: "general".into(),
            },
            None,
            r#"{"type":"leave","room":"general"}"#,
        ),
        (
            ClientFrame::Send {
                room: "general".into(),
                id: "m-1".into(),
                body: "hi \"you\"".into(),
                attachments: Vec::new(),
                edit_of: None,
                delete_of: None,
                react_to: None,
                unreact_to: None,
                reply_to: None,
                mls: None,
                resend_after: None,
            },
            r(json!(7)),
            r#"{"type":"send","room":"general","id":"m-1","body":"hi \"you\"","ref":7}"#,
        ),
        (
            ClientFrame::History {
                room: "general".into(),
                before: Some(90),
                limit: 20,
            },
            None,
            r#"{"type":"history","room":"general","before":90,"limit":20}"#,
        ),
        (
            ClientFrame::History {
                room: "general".into(),
                before: None,
                limit: 50,
            },
            None,
            r#"{"type":"history","room":"general","limit":50}"#,
        ),
        (
            ClientFrame::Typing {
                room: "general".into(),
            },
            None,
            r#"{"type":"typing","room":"general"}"#,
        ),
        (
            ClientFrame::Read {
                room: "general".into(),
                seq: 12,
            },
            None,
            r#"{"type":"read","room":"general","seq":12}"#,
        ),
        (
            ClientFrame::Presence {
                room: "general".into(),
            },
            r(json!(2)),
            r#"{"type":"presence","room":"general","ref":2}"#,
        ),
        (ClientFrame::Ping, None, r#"{"type":"ping"}"#),
    ];
    for (frame, r#ref, text) in cases {
        assert_eq!(frame.encode(&r#ref), text);
        let parsed = parse_client_frame(text.as_bytes(), &Limits::default()).expect(text);
        assert_eq!(parsed, (r#ref, frame), "{text}");
    }
}

fn message(room: &str, seq: u64) -> Message {
    Message {
        room: room.into(),
        seq,
        prev: seq.saturating_sub(3),
        id: format!("m-{seq}"),
        from: "ann".into(),
        ts: 1_700_000_000_000 + seq,
        body: format!("hello {seq}"),
        attachments: Vec::new(),
        mentions: Default::default(),
        ..Default::default()
    }
}

/// Every server frame as gateways write it.
#[test]
fn server_frames_golden() {
    let one = r(json!(1));
    let limits = Limits::default();
    let page = [message("general", 4), message("general", 7)];
    let b = |s: &'static str| Cow::Borrowed(s);
    let cases: Vec<(ServerFrame<'_>, String)> = vec![
        (
            ServerFrame::Welcome {
                r#ref: Cow::Borrowed(&one),
                user: b("ann"),
                session: b("1f"),
                limits: Cow::Borrowed(&limits),
            },
            format!(
                r#"{{"type":"welcome","ref":1,"user":"ann","session":"1f","limits":{}}}"#,
                r#"{"max_message_bytes":65536,"max_body_bytes":16384,"sends_per_second":20,"send_burst":50,"max_rooms":1000,"outbound_queue":1024,"hello_timeout_secs":10}"#
            ),
        ),
        (
            ServerFrame::Joined { r#ref: Cow::Owned(None), room: b("general"), last_seq: 9 },
            r#"{"type":"joined","room":"general","last_seq":9}"#.into(),
        ),
        (
            ServerFrame::Left { r#ref: Cow::Owned(None), room: b("general") },
            r#"{"type":"left","room":"general"}"#.into(),
        ),
        (
            ServerFrame::Ack {
                r#ref: Cow::Owned(r(json!("s1"))),
                room: b("general"),
                id: b("m-1"),
                seq: 12,
                ts: 1_700_000_000_123,
            },
            r#"{"type":"ack","ref":"s1","room":"general","id":"m-1","seq":12,"ts":1700000000123}"#
                .into(),
        ),
        (
            ServerFrame::Message(message("general", 7)),
            r#"{"type":"message","room":"general","seq":7,"prev":4,"id":"m-7","from":"ann","ts":1700000000007,"body":"hello 7"}"#.into(),
        ),
        (
            ServerFrame::History {
                r#ref: Cow::Borrowed(&one),
                room: b("general"),
                messages: Cow::Borrowed(&page),
                more: true,
            },
            concat!(
                r#"{"type":"history","ref":1,"room":"general","messages":["#,
                r#"{"room":"general","seq":4,"prev":1,"id":"m-4","from":"ann","ts":1700000000004,"body":"hello 4"},"#,
                r#"{"room":"general","seq":7,"prev":4,"id":"m-7","from":"ann","ts":1700000000007,"body":"hello 7"}"#,
                r#"],"more":true}"#
            )
            .into(),
        ),
        (
            ServerFrame::Gap { room: b("general"), from: 3, to: 8 },
            r#"{"type":"gap","room":"general","from":3,"to":8}"#.into(),
        ),
        (
            ServerFrame::Presence {
                r#ref: Cow::Borrowed(&one),
                room: b("general"),
                online: vec![b("ann"), b("bob")],
            },
            r#"{"type":"presence","ref":1,"room":"general","online":["ann","bob"]}"#.into(),
        ),
        (
            ServerFrame::PresenceDiff { room: b("general"), joined: vec![b("cy")], left: vec![] },
            r#"{"type":"presence_diff","room":"general","joined":["cy"],"left":[]}"#.into(),
        ),
        (
            ServerFrame::Typing { room: b("general"), user: b("bob") },
            r#"{"type":"typing","room":"general","user":"bob"}"#.into(),
        ),
        (
            ServerFrame::Receipt { room: b("general"), user: b("bob"), seq: 7 },
            r#"{"type":"receipt","room":"general","user":"bob","seq":7}"#.into(),
        ),
        (
            ServerFrame::Membership { room: b("general"), role: Some(Role::Admin) },
            r#"{"type":"membership","room":"general","role":"admin"}"#.into(),
        ),
        (
            ServerFrame::Membership { room: b("general"), role: None },
            r#"{"type":"membership","room":"general","role":null}"#.into(),
        ),
        (
            ServerFrame::Invitation { room: b("general"), by: b("ann"), role: Role::Member },
            r#"{"type":"invitation","room":"general","by":"ann","role":"member"}"#.into(),
        ),
        (
            ServerFrame::Topic { room: b("general"), topic: Some(b("Zoë's room")), by: b("ann") },
            r#"{"type":"topic","room":"general","topic":"Zoë's room","by":"ann"}"#.into(),
        ),
        (
            ServerFrame::Topic { room: b("general"), topic: None, by: b("ann") },
            r#"{"type":"topic","room":"general","topic":null,"by":"ann"}"#.into(),
        ),
        (
            ServerFrame::Pong { r#ref: Cow::Owned(None) },
            r#"{"type":"pong"}"#.into(),
        ),
        (
            ServerFrame::Error {
                r#ref: Cow::Owned(r(json!(5))),
                code: ErrorCode::RateLimited,
                message: b("slow down"),
            },
            r#"{"type":"error","ref":5,"code":"rate_limited","message":"slow down"}"#.into(),
        ),
    ];
    for (frame, text) in cases {
        assert_eq!(frame.encode(), text);
        assert_eq!(ServerFrame::decode(&text).expect(&text), frame, "{text}");
    }
}

/// The gateway's spliced `message` frame is the same text as the typed one.
#[test]
fn spliced_message_frames_equal_typed_ones() {
    let payload = Payload {
        id: "m-7".into(),
        from: "ann".into(),
        ts: 1_700_000_000_007,
        body: "hello \"7\" \u{1F600} @bob @room".into(),
        attachments: Vec::new(),
        mentions: chatmesh_protocol::mentions::Mentions::parse("@bob @room"),
        ..Default::default()
    };
    let stored = serde_json::to_vec(&payload).unwrap();
    let spliced = encode_message_frame("general", 7, 4, &stored).unwrap();
    let typed = ServerFrame::Message(Message::from_payload("general", 7, 4, payload)).encode();
    assert_eq!(std::str::from_utf8(&spliced).unwrap(), typed);
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, quotes, backslashes and control characters included.
    any::<String>()
}

fn a_ref() -> impl Strategy<Value = Ref> {
    prop_oneof![
        Just(None),
        any::<i64>().prop_map(|n| Some(json!(n))),
        text().prop_map(|s| Some(json!(s))),
    ]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        text().prop_map(|token| ClientFrame::Hello { token }),
        (name(), any::<Option<u64>>()).prop_map(|(room, since)| ClientFrame::Join { room, since }),
        name().prop_map(|room| ClientFrame::Leave { room }),
        (name(), "[ -~]{1,64}", text(), any::<Option<u64>>()).prop_map(
            |(room, id, body, resend_after)| ClientFrame::Send {
                room,
                id,
                body,
                attachments: Vec::new(),
                edit_of: None,
                delete_of: None,
                react_to: None,
                unreact_to: None,
                reply_to: None,
                mls: None,
                resend_after,
            }
        ),
        (name(), any::<Option<u64>>(), 1u32..=100).prop_map(|(room, before, limit)| {
            ClientFrame::History {
                room,
                before,
                limit,
            }
        }),
        name().prop_map(|room| ClientFrame::Typing { room }),
        (name(), any::<u64>()).prop_map(|(room, seq)| ClientFrame::Read { room, seq }),
        name().prop_map(|room| ClientFrame::Presence { room }),
        Just(ClientFrame::Ping),
    ]
}

fn a_message() -> impl Strategy<Value = Message> {
    (
        name(),
        any::<u64>(),
        any::<u64>(),
        text(),
        text(),
        any::<u64>(),
        text(),
    )
        .prop_map(|(room, seq, prev, id, from, ts, body)| Message {
            room,
            seq,
            prev,
            id,
            from,
            ts,
            mentions: chatmesh_protocol::mentions::Mentions::parse(&body),
            body,
            attachments: Vec::new(),
            ..Default::default()
        })
}

fn code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::BadRequest),
        Just(ErrorCode::Unauthorized),
        Just(ErrorCode::Forbidden),
        Just(ErrorCode::NotFound),
        Just(ErrorCode::Conflict),
        Just(ErrorCode::TooLarge),
        Just(ErrorCode::RateLimited),
        Just(ErrorCode::Unavailable),
        Just(ErrorCode::Internal),
    ]
}

fn server_frame() -> impl Strategy<Value = ServerFrame<'static>> {
    let s = || text().prop_map(Cow::Owned);
    let list = || proptest::collection::vec(text().prop_map(Cow::Owned), 0..4);
    let rf = || a_ref().prop_map(Cow::Owned);
    prop_oneof![
        (
            rf(),
            s(),
            s(),
            any::<(u16, u16, u32, u32, u16, u16, u16)>(),
            any::<Option<u32>>()
        )
            .prop_map(|(r#ref, user, session, (a, b, c, d, e, f, g), fps)| {
                ServerFrame::Welcome {
                    r#ref,
                    user,
                    session,
                    limits: Cow::Owned(Limits {
                        max_message_bytes: a.into(),
                        max_body_bytes: b.into(),
                        sends_per_second: c,
                        send_burst: d,
                        max_rooms: e.into(),
                        outbound_queue: f.into(),
                        hello_timeout_secs: g.into(),
                        frames_per_second: fps,
                    }),
                }
            }),
        (rf(), s(), any::<u64>()).prop_map(|(r#ref, room, last_seq)| ServerFrame::Joined {
            r#ref,
            room,
            last_seq
        }),
        (rf(), s()).prop_map(|(r#ref, room)| ServerFrame::Left { r#ref, room }),
        (rf(), s(), s(), any::<u64>(), any::<u64>()).prop_map(|(r#ref, room, id, seq, ts)| {
            ServerFrame::Ack {
                r#ref,
                room,
                id,
                seq,
                ts,
            }
        }),
        a_message().prop_map(ServerFrame::Message),
        (
            rf(),
            s(),
            proptest::collection::vec(a_message(), 0..3),
            any::<bool>()
        )
            .prop_map(|(r#ref, room, messages, more)| ServerFrame::History {
                r#ref,
                room,
                messages: Cow::Owned(messages),
                more,
            }),
        (s(), any::<u64>(), any::<u64>()).prop_map(|(room, from, to)| ServerFrame::Gap {
            room,
            from,
            to
        }),
        (rf(), s(), list()).prop_map(|(r#ref, room, online)| ServerFrame::Presence {
            r#ref,
            room,
            online
        }),
        (s(), list(), list()).prop_map(|(room, joined, left)| ServerFrame::PresenceDiff {
            room,
            joined,
            left
        }),
        (s(), s()).prop_map(|(room, user)| ServerFrame::Typing { room, user }),
        (s(), s(), any::<u64>()).prop_map(|(room, user, seq)| ServerFrame::Receipt {
            room,
            user,
            seq
        }),
        (
            s(),
            prop_oneof![
                Just(None),
                Just(Some(Role::Member)),
                Just(Some(Role::Admin)),
                Just(Some(Role::Owner))
            ]
        )
            .prop_map(|(room, role)| ServerFrame::Membership { room, role }),
        (s(), s(), prop_oneof![Just(Role::Member), Just(Role::Admin)])
            .prop_map(|(room, by, role)| ServerFrame::Invitation { room, by, role }),
        (s(), prop::option::of(s()), s()).prop_map(|(room, topic, by)| ServerFrame::Topic {
            room,
            topic,
            by
        }),
        rf().prop_map(|r#ref| ServerFrame::Pong { r#ref }),
        (rf(), code(), s()).prop_map(|(r#ref, code, message)| ServerFrame::Error {
            r#ref,
            code,
            message
        }),
    ]
}

proptest! {
    /// Whatever a client encodes, a gateway parses back to the same frame and `ref`
    /// (contents within the protocol's rules: valid names and ids, bodies under the limit).
    #[test]
    fn client_frames_round_trip(frame in client_frame(), r#ref in a_ref()) {
        let limits = Limits { max_body_bytes: usize::MAX, ..Limits::default() };
        let text = frame.encode(&r#ref);
        let parsed = parse_client_frame(text.as_bytes(), &limits);
        prop_assert_eq!(parsed, Ok((r#ref, frame)));
    }

    /// Whatever a gateway encodes, a client decodes back to the same frame.
    #[test]
    fn server_frames_round_trip(frame in server_frame()) {
        let text = frame.encode();
        let decoded = ServerFrame::decode(&text).map(ServerFrame::into_owned);
        prop_assert_eq!(decoded.ok(), Some(frame));
    }

    /// The one-pass view of whatever a gateway encodes has the frame's type and the same
    /// values in the fields the frame has.
    #[test]
    fn the_view_agrees_with_the_full_decode(frame in server_frame()) {
        let text = frame.encode();
        let view = FrameView::peek(&text).expect("every server frame has a view");
        prop_assert_eq!(view.kind, frame.frame_type());
        prop_assert_eq!(view.r#ref.as_ref(), frame.reply_to());
        prop_assert_eq!(view_of(&frame), view_fields(&view));
    }
}

/// The view's fields, owned, as a frame has them.
#[derive(Debug, Default, PartialEq)]
struct Fields {
    room: Option<String>,
    seq: Option<u64>,
    prev: Option<u64>,
    last_seq: Option<u64>,
    id: Option<String>,
    ts: Option<u64>,
    body: Option<String>,
    user: Option<String>,
    code: Option<String>,
}

fn view_fields(v: &FrameView<'_>) -> Fields {
    let s = |c: &Option<Cow<'_, str>>| c.as_deref().map(str::to_owned);
    Fields {
        room: s(&v.room),
        seq: v.seq,
        prev: v.prev,
        last_seq: v.last_seq,
        id: s(&v.id),
        ts: v.ts,
        body: s(&v.body),
        user: s(&v.user),
        code: s(&v.code),
    }
}

fn view_of(frame: &ServerFrame<'_>) -> Fields {
    let s = |c: &str| Some(c.to_owned());
    match frame {
        ServerFrame::Welcome { user, .. } => Fields {
            user: s(user),
            ..Fields::default()
        },
        ServerFrame::Joined { room, last_seq, .. } => Fields {
            room: s(room),
            last_seq: Some(*last_seq),
            ..Fields::default()
        },
        ServerFrame::Ack {
            room, id, seq, ts, ..
        } => Fields {
            room: s(room),
            id: s(id),
            seq: Some(*seq),
            ts: Some(*ts),
            ..Fields::default()
        },
        ServerFrame::Message(m) => Fields {
            room: s(&m.room),
            seq: Some(m.seq),
            prev: Some(m.prev),
            id: s(&m.id),
            ts: Some(m.ts),
            body: s(&m.body),
            ..Fields::default()
        },
        ServerFrame::Typing { room, user } => Fields {
            room: s(room),
            user: s(user),
            ..Fields::default()
        },
        ServerFrame::Receipt { room, user, seq } => Fields {
            room: s(room),
            user: s(user),
            seq: Some(*seq),
            ..Fields::default()
        },
        ServerFrame::Error { code, .. } => Fields {
            code: s(code.as_str()),
            ..Fields::default()
        },
        ServerFrame::Left { room, .. }
        | ServerFrame::History { room, .. }
        | ServerFrame::Gap { room, .. }
        | ServerFrame::Presence { room, .. }
        | ServerFrame::PresenceDiff { room, .. }
        | ServerFrame::Membership { room, .. }
        | ServerFrame::Invitation { room, .. }
        | ServerFrame::Topic { room, .. } => Fields {
            room: s(room),
            ..Fields::default()
        },
        ServerFrame::Pong { .. } | ServerFrame::Unknown => Fields::default(),
    }
}

/// A field name two frames use with different JSON types (a message's `from` is a user, a
/// gap's a seq) must not make either unreadable.
#[test]
fn a_gap_and_a_message_both_have_views() {
    let gap = FrameView::peek(r#"{"type":"gap","room":"r","from":3,"to":8}"#).unwrap();
    assert_eq!((gap.kind, gap.room.as_deref()), (FrameType::Gap, Some("r")));
    let text =
        r#"{"type":"message","room":"r","seq":2,"prev":1,"id":"i","from":"u","ts":1,"body":"b"}"#;
    assert_eq!(FrameView::peek(text).unwrap().kind, FrameType::Message);
}
