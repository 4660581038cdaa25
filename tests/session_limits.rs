//! Per-session abuse limits on a real mesh: frames that are not requests (binary frames,
//! pings) count toward the flood guard, `read` frames are clamped to the room's last message
//! and coalesced into few receipts and cursor writes, and `typing` is bounded per session.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{
    acked, error_code, fast_config, frame, http_rooms, start_mesh, Api, Client, Ended, ErrorCode,
    FrameType, ServerFrame,
};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Frames of `kind` that arrive within `window`.
async fn count_frames(
    c: &mut Client,
    kind: FrameType,
    window: Duration,
) -> Vec<ServerFrame<'static>> {
    let mut all = count_frames_of(c, window).await;
    all.retain(|v| v.frame_type() == kind);
    all
}

fn strict_config() -> chatmesh::Config {
    let mut config = fast_config();
    config.gateway.frames_per_second = 10;
    config.gateway.rate_limit_strikes = 5;
    config
}

/// A flood of binary frames is rate-limited like text frames and ends with close 4008.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_flood_is_closed_with_4008() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), strict_config()).await?;
    let token = Api::new(&mesh).user("ann").await?;
    let mut c = Client::login(&mesh.ws_url(), &token).await?;
    // Raw on purpose: binary messages are not protocol frames.
    for _ in 0..200 {
        if c.send_raw(WsMessage::binary(vec![0u8; 16])).await.is_err() {
            break;
        }
    }
    assert_eq!(c.ended().await, Ended::Closed(4008));
    mesh.stop().await
}

/// Requests refused by the frame flood guard are answered `rate_limited` with their own
/// `ref`, as every error is (a client must be able to tell which request failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_refusals_carry_the_requests_ref() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = strict_config();
    config.gateway.rate_limit_strikes = 1000;
    let mesh = start_mesh(dir.path(), config).await?;
    let token = Api::new(&mesh).user("ann").await?;
    let mut c = Client::login(&mesh.ws_url(), &token).await?;
    for i in 0..60 {
        c.send_with_ref(frame::presence("nowhere"), format!("r{i}"))
            .await?;
    }
    let limited = count_frames(&mut c, FrameType::Error, Duration::from_secs(2)).await;
    let limited: Vec<&ServerFrame> = limited
        .iter()
        .filter(|v| error_code(v) == Some(ErrorCode::RateLimited))
        .collect();
    assert!(!limited.is_empty(), "the flood guard refused nothing");
    for v in limited {
        assert!(
            v.reply_to()
                .and_then(|r| r.as_str())
                .is_some_and(|r| r.starts_with('r')),
            "{v:?}"
        );
    }
    mesh.stop().await
}

/// A flood of WebSocket pings is counted too: the first ones are answered, the flood is
/// closed with 4008 instead of being answered without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_closed_with_4008() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), strict_config()).await?;
    let token = Api::new(&mesh).user("ann").await?;
    let mut c = Client::login(&mesh.ws_url(), &token).await?;
    // Raw on purpose: WebSocket pings, not protocol `ping` frames.
    for _ in 0..200 {
        if c.send_raw(WsMessage::Ping(vec![1u8; 8].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(c.ended().await, Ended::Closed(4008));
    mesh.stop().await
}

/// Unsolicited pongs count too (they are never answered): a flood of them is closed with
/// 4008 instead of being read without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pong_flood_is_closed_with_4008() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), strict_config()).await?;
    let token = Api::new(&mesh).user("ann").await?;
    let mut c = Client::login(&mesh.ws_url(), &token).await?;
    for _ in 0..200 {
        if c.send_raw(WsMessage::Pong(vec![1u8; 8].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(c.ended().await, Ended::Closed(4008));
    mesh.stop().await
}

/// 180 `read` frames (and one at u64::MAX) make at most two receipts for the other members,
/// the last at the room's real last seq; the reader's unread count is not pinned: a new
/// message counts as unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_clamped_and_coalesced() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join("hall").await?;
    b.join("hall").await?;
    let mut last = 0;
    for i in 0..3 {
        last = a.post("hall", &format!("m{i}"), "hi").await?.seq;
    }
    b.messages("hall", 3).await?;
    for i in 0..180u64 {
        b.send(frame::read("hall", 1 + i % last)).await?;
    }
    b.send(frame::read("hall", u64::MAX)).await?;
    let receipts = count_frames(&mut a, FrameType::Receipt, Duration::from_millis(2500)).await;
    assert!(
        (1..=2).contains(&receipts.len()),
        "{} receipts for 181 reads: {receipts:?}",
        receipts.len()
    );
    assert!(
        matches!(receipts.last().unwrap(), ServerFrame::Receipt { seq, .. } if *seq == last),
        "{receipts:?}"
    );

    acked(&a.request(frame::send("hall", "after", "new")).await?);
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let (_, list) = api.call("GET", "/v1/rooms", Some(&bob), None).await?;
        let hall = http_rooms(&list).and_then(|r| r.into_iter().find(|r| r.room == "hall"));
        if hall.as_ref().is_some_and(|h| h.unread == 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unread stayed {hall:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mesh.stop().await
}

/// `typing` in many rooms at once reaches the members at most at the per-session rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_bounded_per_session() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.typing_per_session_per_second = 3;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    for i in 0..20 {
        let room = format!("r{i}");
        api.room(&ann, &room, "public").await?;
        a.join(&room).await?;
        b.join(&room).await?;
    }
    for i in 0..20 {
        b.send(frame::typing(&format!("r{i}"))).await?;
    }
    let typing = count_frames(&mut a, FrameType::Typing, Duration::from_millis(800)).await;
    assert!(
        (1..=4).contains(&typing.len()),
        "{} typing events from one session in 20 rooms",
        typing.len()
    );
    mesh.stop().await
}

/// Requests that reach the workers count against their user's API budget over WebSocket as
/// over HTTP (`api_per_user_per_minute`, `api_user_burst`): one account's `history` loop,
/// over any number of sessions, is answered `rate_limited` past it (not a strike towards
/// 4008: the sessions stay open), and another user is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_requests_over_websocket_share_the_users_api_budget() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.api_per_user_per_minute = 1;
    config.gateway.api_user_burst = 10;
    config.gateway.rate_limit_strikes = 5;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let greedy = api.user("greedy").await?;
    let ann = api.user("ann").await?;
    api.room(&ann, "hall", "public").await?;
    let mut c = Client::login(&mesh.ws_url(), &greedy).await?;
    let mut d = Client::login(&mesh.ws_url(), &greedy).await?;
    c.join("hall").await?;
    for i in 0..15 {
        c.send_with_ref(frame::history("hall"), format!("c{i}"))
            .await?;
        d.send_with_ref(frame::history("hall"), format!("d{i}"))
            .await?;
    }
    let mut answered = 0;
    let mut limited = 0;
    for s in [&mut c, &mut d] {
        for f in count_frames_of(s, Duration::from_secs(2)).await {
            match f.frame_type() {
                FrameType::History => answered += 1,
                FrameType::Error if error_code(&f) == Some(ErrorCode::RateLimited) => limited += 1,
                _ => {}
            }
        }
    }
    assert!(answered <= 10, "{answered} answered past a burst of 10");
    assert_eq!(answered + limited, 30, "every request answered");
    for s in [&mut c, &mut d] {
        let pong = s.request(frame::ping()).await?;
        assert!(
            matches!(pong, ServerFrame::Pong { .. }),
            "still open: {pong:?}"
        );
    }
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("hall").await?;
    let f = a.request(frame::history("hall")).await?;
    assert_eq!(f.frame_type(), FrameType::History, "another user: {f:?}");
    mesh.stop().await
}

/// `typing` and `send` may come at any rate within the session's own limits, and each that
/// names a room whose access is not cached (here rooms that do not exist: a refusal is not
/// cached) asks a worker: each such lookup is charged to the user's request budget, so past
/// it they are answered `rate_limited` without asking the worker, and the sessions stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_sends_to_rooms_not_cached_share_the_users_api_budget() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.api_per_user_per_minute = 1;
    config.gateway.api_user_burst = 10;
    config.gateway.typing_per_session_per_second = 100;
    config.gateway.rate_limit_strikes = 5;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let greedy = api.user("greedy").await?;
    let mut c = Client::login(&mesh.ws_url(), &greedy).await?;
    for i in 0..15 {
        let room = format!("none-{i}");
        c.send_with_ref(frame::typing(&room), format!("t{i}"))
            .await?;
        c.send_with_ref(frame::send(&room, &format!("m{i}"), "hi"), format!("s{i}"))
            .await?;
    }
    let (mut missing, mut limited) = (0, 0);
    for f in count_frames_of(&mut c, Duration::from_secs(2)).await {
        match error_code(&f) {
            Some(ErrorCode::NotFound) => missing += 1,
            Some(ErrorCode::RateLimited) => limited += 1,
            _ => {}
        }
    }
    assert!(missing <= 10, "{missing} lookups past a burst of 10");
    assert_eq!(missing + limited, 30, "every frame answered");
    let pong = c.request(frame::ping()).await?;
    assert!(matches!(pong, ServerFrame::Pong { .. }), "{pong:?}");
    mesh.stop().await
}

/// Reactions to and replies to a seq that does not exist, and edits of it, ask the room's
/// worker before anything is stored: each is charged to the user's request budget, over all
/// of the user's sessions (before: all 45 were answered `not_found` by the worker, past a
/// budget of 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_and_replies_share_the_users_api_budget() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.api_per_user_per_minute = 1;
    config.gateway.api_user_burst = 10;
    config.gateway.rate_limit_strikes = 5;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let (ann, greedy) = (api.user("ann").await?, api.user("greedy").await?);
    api.room(&ann, "hall", "public").await?;
    api.add(&ann, "hall", "greedy").await?;
    let mut c = Client::login(&mesh.ws_url(), &greedy).await?;
    c.join("hall").await?;
    let mut d = Client::login(&mesh.ws_url(), &greedy).await?;
    d.join("hall").await?;
    for i in 0..15 {
        c.send_with_ref(
            frame::react("hall", &format!("r{i}"), 999_999, "👍", false),
            format!("r{i}"),
        )
        .await?;
        c.send_with_ref(
            frame::reply("hall", &format!("p{i}"), 999_999, "x"),
            format!("p{i}"),
        )
        .await?;
        d.send_with_ref(
            frame::edit("hall", &format!("e{i}"), 999_999, "y"),
            format!("e{i}"),
        )
        .await?;
    }
    let (mut missing, mut limited) = (0, 0);
    let frames = futures::future::join(
        count_frames_of(&mut c, Duration::from_secs(3)),
        count_frames_of(&mut d, Duration::from_secs(3)),
    )
    .await;
    for f in frames.0.iter().chain(&frames.1) {
        match error_code(f) {
            Some(ErrorCode::NotFound) => missing += 1,
            Some(ErrorCode::RateLimited) => limited += 1,
            _ => {}
        }
    }
    assert!(missing <= 10, "{missing} worker checks past a burst of 10");
    assert_eq!(missing + limited, 45, "every frame answered");
    mesh.stop().await
}

/// Every frame that arrives within `window`.
async fn count_frames_of(c: &mut Client, window: Duration) -> Vec<ServerFrame<'static>> {
    let until = tokio::time::Instant::now() + window;
    let mut out = Vec::new();
    while let Ok(Ok(v)) = tokio::time::timeout_at(until, c.next()).await {
        out.push(v);
    }
    out
}

/// A room the session was removed from (evicted: it got `left`) no longer counts towards
/// the session's `max_rooms`: with a limit of two, a session in two rooms that is removed
/// from one may join another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_one_was_removed_from_frees_its_place() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.limits.max_rooms = 2;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    for room in ["one", "two", "three"] {
        api.room(&ann, room, "private").await?;
        api.add(&ann, room, "bob").await?;
    }
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    b.join("one").await?;
    b.join("two").await?;
    let f = b.request(frame::join("three")).await?;
    assert_eq!(error_code(&f), Some(ErrorCode::BadRequest), "{f:?}");
    let (s, v) = api
        .call("DELETE", "/v1/rooms/one/members/bob", Some(&ann), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    b.wait_for(|f| matches!(f, ServerFrame::Left { room, .. } if room == "one"))
        .await?;
    b.join("three").await?;
    mesh.stop().await
}
