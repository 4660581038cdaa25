//! Bad input gets a clear error frame or close code, never a panic and never a lost
//! message: each case of issue 2 item 7 against a real mesh.

mod common;

use anyhow::Result;
use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Invalid JSON, non-objects and unknown types get `bad_request`; the connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_bad_request_and_the_session_lives() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    // Raw text on purpose: none of these is a client frame the protocol crate can write.
    for raw in [
        "{not json",
        "[1,2]",
        "42",
        "{\"type\":\"teleport\"}",
        "{\"type\":\"send\"}",
        "{\"room\":\"x\"}",
    ] {
        a.send_raw(WsMessage::text(raw)).await?;
        let e = a.next().await?;
        assert_eq!(error_code(&e), Some(ErrorCode::BadRequest), "{raw}: {e:?}");
    }
    // Raw JSON on purpose: a type the protocol does not have.
    let e = a.request_json(json!({"type":"teleport"})).await?;
    assert_eq!(
        error_code(&e),
        Some(ErrorCode::BadRequest),
        "ref is echoed on errors"
    );
    // Raw on purpose: protocol v1 frames are text, a binary message is not one.
    a.send_raw(WsMessage::binary(vec![1, 2, 3])).await?;
    assert_eq!(error_code(&a.next().await?), Some(ErrorCode::BadRequest));
    let pong = a.request(frame::ping()).await?;
    assert_eq!(pong.frame_type(), FrameType::Pong);
    mesh.stop().await
}

/// Room and user names that could reach a NATS subject (dots, `*`, `>`, spaces, 65
/// characters) are refused with `bad_request`, on the WebSocket and over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let long = "x".repeat(65);
    for bad in ["a.b", "*", ">", "a b", "chat.in.>", long.as_str(), ""] {
        // Well-formed frames with bad names: encoding does not validate, the gateway does.
        for f in [
            frame::join(bad),
            frame::send(bad, "1", "x"),
            frame::history(bad),
        ] {
            let e = a.request(f.clone()).await?;
            assert_eq!(error_code(&e), Some(ErrorCode::BadRequest), "{f:?} → {e:?}");
        }
        let (s, v) = api
            .call(
                "POST",
                "/v1/rooms",
                Some(&ann),
                Some(json!({"room":bad,"kind":"public"})),
            )
            .await?;
        assert_eq!(s, 400, "{bad:?}: {v}");
        assert_eq!(http_error(&v), Some(ErrorCode::BadRequest));
        let (s, _) = api
            .call(
                "POST",
                "/v1/auth/register",
                None,
                Some(credentials(bad, "long enough")),
            )
            .await?;
        assert_eq!(s, 400, "{bad:?}");
    }
    let e = a.request(frame::send("ok", &"x".repeat(65), "x")).await?;
    assert_eq!(
        error_code(&e),
        Some(ErrorCode::BadRequest),
        "message id over 64 chars"
    );
    mesh.stop().await
}

/// A body over `max_body_bytes` gets `too_large` and is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_body_is_too_large() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "r", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let welcome_limit = 16 * 1024;
    a.request(frame::join("r")).await?;
    let e = a
        .request(frame::send("r", "big", &"x".repeat(welcome_limit + 1)))
        .await?;
    assert_eq!(error_code(&e), Some(ErrorCode::TooLarge));
    let ok = a
        .request(frame::send("r", "fits", &"x".repeat(welcome_limit)))
        .await?;
    assert_eq!(ok.frame_type(), FrameType::Ack);
    let m = a.messages("r", 1).await?;
    assert_eq!(m[0].id, "fits");
    mesh.stop().await
}

/// A frame, or a message reassembled from fragments, over 64 KiB closes with 1009.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frames_and_messages_close_with_1009() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    // Raw on purpose: a text message over the frame limit, not a protocol frame.
    a.send_raw(WsMessage::text("x".repeat(64 * 1024 + 1)))
        .await?;
    assert_eq!(a.ended().await, Ended::Closed(1009));

    let mut b = Client::login(&mesh.ws_url(), &ann).await?;
    let chunk = "y".repeat(40 * 1024);
    use tokio_tungstenite::tungstenite::protocol::frame::{
        coding::{Data, OpCode},
        Frame, FrameHeader,
    };
    let frag = |op: OpCode, fin: bool| {
        let header = FrameHeader {
            is_final: fin,
            opcode: op,
            ..FrameHeader::default()
        };
        WsMessage::Frame(Frame::from_payload(
            header,
            chunk.clone().into_bytes().into(),
        ))
    };
    // Raw on purpose: WebSocket fragments whose message is over the limit.
    b.send_raw(frag(OpCode::Data(Data::Text), false)).await?;
    b.send_raw(frag(OpCode::Data(Data::Continue), true)).await?;
    assert_eq!(b.ended().await, Ended::Closed(1009));

    // A 64 KiB message in fragments is fine (it is just invalid JSON here: raw on purpose).
    let mut c = Client::login(&mesh.ws_url(), &ann).await?;
    let half = "z".repeat(32 * 1024);
    for (op, fin) in [
        (OpCode::Data(Data::Text), false),
        (OpCode::Data(Data::Continue), true),
    ] {
        let header = FrameHeader {
            is_final: fin,
            opcode: op,
            ..FrameHeader::default()
        };
        c.send_raw(WsMessage::Frame(Frame::from_payload(
            header,
            half.clone().into_bytes().into(),
        )))
        .await?;
    }
    assert_eq!(error_code(&c.next().await?), Some(ErrorCode::BadRequest));
    mesh.stop().await
}

/// Missing, forged and expired tokens, and requests before `hello`, get `unauthorized`
/// then close 4001; bad bearer tokens get HTTP 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_close_with_4001() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.limits.hello_timeout_secs = 1;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;

    let secret = mesh.config.gateway.jwt_secret.clone();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub":"ann","iss":"chatmesh","iat":1000,"exp":2000}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?;
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub":"ann","iss":"chatmesh","iat":1000,"exp":4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"not the secret not the secret !!"),
    )?;
    for token in ["", "garbage", expired.as_str(), forged.as_str()] {
        let mut c = Client::connect(&mesh.ws_url()).await?;
        let e = c.request(frame::hello(token)).await?;
        assert_eq!(error_code(&e), Some(ErrorCode::Unauthorized), "{token}");
        assert_eq!(c.ended().await, Ended::Closed(4001));
    }
    let mut c = Client::connect(&mesh.ws_url()).await?;
    let e = c.request(frame::join("r")).await?;
    assert_eq!(error_code(&e), Some(ErrorCode::Unauthorized));
    assert_eq!(c.ended().await, Ended::Closed(4001));
    // hello missing entirely: closed after the hello timeout.
    let mut c = Client::connect(&mesh.ws_url()).await?;
    assert_eq!(c.ended().await, Ended::Closed(4001));

    for token in [Some("garbage"), Some(expired.as_str()), None] {
        let (s, v) = api.call("GET", "/v1/rooms", token, None).await?;
        assert_eq!(s, 401, "{v}");
        assert_eq!(http_error(&v), Some(ErrorCode::Unauthorized));
    }
    let (s, _) = api.call("GET", "/v1/rooms", Some(&ann), None).await?;
    assert_eq!(s, 200);
    mesh.stop().await
}

/// A non-member cannot join, post to or read a private room (`forbidden`, HTTP 403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_rooms_are_forbidden_to_non_members() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, eve) = (api.user("ann").await?, api.user("eve").await?);
    api.room(&ann, "secret", "private").await?;
    let mut e = Client::login(&mesh.ws_url(), &eve).await?;
    for f in [
        frame::join("secret"),
        frame::join_since("secret", 0),
        frame::history("secret"),
        frame::send("secret", "1", "let me in"),
    ] {
        let r = e.request(f.clone()).await?;
        assert_eq!(error_code(&r), Some(ErrorCode::Forbidden), "{f:?}");
    }
    let (s, v) = api
        .call("GET", "/v1/rooms/secret/messages", Some(&eve), None)
        .await?;
    assert_eq!((s, http_error(&v)), (403, Some(ErrorCode::Forbidden)));
    let r = e.request(frame::join("nowhere")).await?;
    assert_eq!(error_code(&r), Some(ErrorCode::NotFound));
    // A member added by the owner may then join.
    let (s, _) = api
        .call(
            "POST",
            "/v1/rooms/secret/members",
            Some(&ann),
            Some(json!({"user":"eve","role":"member"})),
        )
        .await?;
    assert_eq!(s, 204);
    let r = e.request(frame::join("secret")).await?;
    assert_eq!(r.frame_type(), FrameType::Joined);
    mesh.stop().await
}

/// A send flood gets `rate_limited`, and a flood that goes on is closed with 4008; every
/// send that was acked is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_rate_limited_then_closed_with_4008() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), chatmesh::Config::default()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "flood", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.request(frame::join("flood")).await?;
    for i in 0..400 {
        let send = frame::send("flood", &format!("f{i}"), "spam");
        if a.send_with_ref(send, i).await.is_err() {
            break;
        }
    }
    assert_eq!(a.ended().await, Ended::Closed(4008));
    let frames: Vec<_> = a.backlog.drain(..).collect();
    let limited = frames
        .iter()
        .filter(|f| error_code(f) == Some(ErrorCode::RateLimited))
        .count();
    let acks: Vec<Acked> = frames
        .iter()
        .filter(|f| f.frame_type() == FrameType::Ack)
        .map(acked)
        .collect();
    assert!(limited > 0, "some sends were rate limited");
    // The burst (50) went through and was stored exactly once; acks still in flight when
    // the session closed are not lost messages: a resend with the same id gets the seq.
    let mut b = Client::login(&mesh.ws_url(), &ann).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    let stored = loop {
        let h = b.request(frame::history_before("flood", None, 100)).await?;
        let stored = page(&h).messages;
        if stored.len() >= 50 || tokio::time::Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(stored.len() >= 50, "the burst was stored: {}", stored.len());
    let mut ids: Vec<_> = stored.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), stored.len(), "no message stored twice");
    for ack in &acks {
        assert!(ids.contains(&ack.id), "acked {} is stored", ack.id);
    }
    b.request(frame::join("flood")).await?;
    let resend = acked(&b.request(frame::send("flood", "f0", "spam")).await?);
    let original = stored.iter().find(|m| m.id == "f0").expect("f0 stored");
    assert_eq!(
        resend.seq, original.seq,
        "a resend after the close gets the original seq"
    );
    mesh.stop().await
}

/// A session whose token expires is closed with 4001; a `hello` with a fresh token before
/// then keeps it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_close_with_4001_when_the_token_expires() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    // `exp` is whole seconds (now + TTL), so a token lives between TTL − 1 and TTL seconds:
    // with 3 s the first token outlives the 1.2 s before `b`'s new hello however the
    // second falls (with 2 s it could already be over, and `b` closed before the hello).
    config.gateway.token_ttl_secs = 3;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let first = api.user("ann").await?;
    let mut a = Client::login(&mesh.ws_url(), &first).await?;
    let mut b = Client::login(&mesh.ws_url(), &first).await?;
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let fresh = api.user("ann").await?;
    let w = b.request(frame::hello(&fresh)).await?;
    assert_eq!(w.frame_type(), FrameType::Welcome);
    assert_eq!(a.ended().await, Ended::Closed(4001));
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "not before the expiry"
    );
    // b was extended: still alive after a's token ran out.
    assert_eq!(
        b.request(frame::ping()).await?.frame_type(),
        FrameType::Pong
    );
    assert_eq!(
        b.ended().await,
        Ended::Closed(4001),
        "and closed when the new token runs out"
    );
    mesh.stop().await
}
