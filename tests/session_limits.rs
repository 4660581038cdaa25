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
    let until = tokio::time::Instant::now() + window;
    let mut out = Vec::new();
    while let Ok(Ok(v)) = tokio::time::timeout_at(until, c.next()).await {
        if v.frame_type() == kind {
            out.push(v);
        }
    }
    out
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
