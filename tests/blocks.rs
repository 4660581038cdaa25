//! Blocks (extension) over a real mesh: a user blocks another over HTTP; the blocked user
//! can then neither add the blocker to a room nor open a DM with it, and its live session
//! in the DM they share is refused at once (the gateway's cached access is dropped), while
//! the blocker reads on; an unblock undoes it; the list pages; bad input is refused.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use serde_json::{json, Value};

fn code(v: &Value) -> Option<&str> {
    v["error"]["code"].as_str()
}

async fn set_block(api: &Api, token: &str, other: &str, on: bool) -> Result<(u16, Value)> {
    let method = if on { "PUT" } else { "DELETE" };
    api.call(
        method,
        &format!("/v1/users/me/blocks/{other}"),
        Some(token),
        None,
    )
    .await
}

async fn add(api: &Api, token: &str, room: &str, user: &str) -> Result<(u16, Value)> {
    let body = json!({"user": user, "role": "member"});
    api.call(
        "POST",
        &format!("/v1/rooms/{room}/members"),
        Some(token),
        Some(body),
    )
    .await
}

/// The whole of it, in the order a harassed user meets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_user_cannot_add_dm_or_write_to_the_blocker() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let mallory = api.user("mallory").await?;
    let carl = api.user("carl").await?;
    // A DM from before the block, both sessions in it.
    let (s, v) = api.call("POST", "/v1/dm/ann", Some(&mallory), None).await?;
    assert_eq!(s, 200, "{v}");
    let dm = v["room"].as_str().unwrap_or_default().to_owned();
    let mut her = Client::login(&mesh.ws_url(), &ann).await?;
    her.join(&dm).await?;
    let mut him = Client::login(&mesh.ws_url(), &mallory).await?;
    him.join(&dm).await?;
    let hi = him.post(&dm, "m1", "hi").await?;
    her.messages(&dm, 1).await?;
    // Before the block his typing and his receipts reach her.
    him.send(frame::typing(&dm)).await?;
    her.wait_for(|f| matches!(f, ServerFrame::Typing { user, .. } if user == "mallory"))
        .await?;
    him.send(frame::read(&dm, hi.seq)).await?;
    her.wait_for(|f| matches!(f, ServerFrame::Receipt { user, .. } if user == "mallory"))
        .await?;

    let (s, v) = set_block(&api, &ann, "mallory", true).await?;
    assert_eq!(s, 204, "{v}");
    // His live session, whose access the gateway had cached as "may post", is refused.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 0;
    let refusal = loop {
        n += 1;
        let f = him
            .request(frame::send(&dm, &format!("m{}", n + 1), "hello?"))
            .await?;
        match f {
            ServerFrame::Error { code, message, .. } => break (code, message.to_string()),
            _ => {
                assert!(tokio::time::Instant::now() < deadline, "never refused");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(
        refusal,
        (
            ErrorCode::Forbidden,
            "the other member of this DM has blocked you".into()
        )
    );
    // From then on every send of his is refused, and nothing of it reaches her.
    let f = him
        .request(frame::send(&dm, "late", "after the refusal"))
        .await?;
    assert!(matches!(f, ServerFrame::Error { .. }), "{f:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pong = her.request(frame::ping()).await?;
    assert!(matches!(pong, ServerFrame::Pong { .. }));
    let leaked = her.backlog.iter().any(
        |f| matches!(f, ServerFrame::Message(m) if m.room == dm && m.body == "after the refusal"),
    );
    assert!(!leaked, "a refused send was delivered");
    // She still writes to him, and he reads it.
    let note = her.post(&dm, "a1", "stop").await?;
    him.wait_for(|f| matches!(f, ServerFrame::Message(m) if m.seq == note.seq))
        .await?;
    // His typing is refused; his reads move his own cursor but tell her nothing (the first
    // within the receipt interval of his last, the second after it).
    let f = him.request(frame::typing(&dm)).await?;
    assert_eq!(error_code(&f), Some(ErrorCode::Forbidden), "{f:?}");
    him.send(frame::read(&dm, note.seq)).await?;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    him.send(frame::read(&dm, note.seq + 1)).await?;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let pong = her.request(frame::ping()).await?;
    assert!(matches!(pong, ServerFrame::Pong { .. }));
    let reached = her.backlog.iter().filter(|f| {
        matches!(f, ServerFrame::Typing { user, .. } | ServerFrame::Receipt { user, .. } if user == "mallory")
    });
    assert_eq!(reached.count(), 0, "his typing or receipts reached her");
    let (s, v) = api.call("GET", "/v1/rooms", Some(&mallory), None).await?;
    assert_eq!(s, 200, "{v}");
    let listing = http_rooms(&v).unwrap_or_default();
    let unread = listing.iter().find(|r| r.room == dm).map(|r| r.unread);
    assert_eq!(unread, Some(0), "his reads still count for him: {v}");

    // No new DM, no adds; others are not affected.
    let (s, v) = api.call("POST", "/v1/dm/ann", Some(&mallory), None).await?;
    assert_eq!((s, code(&v)), (403, Some("forbidden")), "{v}");
    api.room(&mallory, "lair", "private").await?;
    let (s, v) = add(&api, &mallory, "lair", "ann").await?;
    assert_eq!((s, code(&v)), (403, Some("forbidden")), "{v}");
    assert!(v.to_string().contains("does not accept"), "{v}");
    api.room(&carl, "club", "private").await?;
    let (s, v) = add(&api, &carl, "club", "ann").await?;
    assert_eq!(s, 204, "{v}");

    // Listed; an unblock undoes it all.
    let (s, v) = api
        .call("GET", "/v1/users/me/blocks", Some(&ann), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["blocks"][0]["user"], "mallory", "{v}");
    assert_eq!(v["more"], false);
    let (s, v) = set_block(&api, &ann, "mallory", false).await?;
    assert_eq!(s, 204, "{v}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let f = him.request(frame::send(&dm, "again", "sorry")).await?;
        if matches!(f, ServerFrame::Ack { .. }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = add(&api, &mallory, "lair", "ann").await?;
    assert_eq!(s, 204, "{v}");
    mesh.stop().await
}

/// Bad input: blocking oneself, an unknown user, a bad name; unblocking someone not
/// blocked; a bad page; no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_block_requests_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.user("bob").await?;
    for (other, on, status, c) in [
        ("ann", true, 400, "bad_request"),
        ("nobody", true, 404, "not_found"),
        ("bad.name", true, 400, "bad_request"),
        ("bob", false, 404, "not_found"),
    ] {
        let (s, v) = set_block(&api, &ann, other, on).await?;
        assert_eq!((s, code(&v)), (status, Some(c)), "{other} {on}: {v}");
    }
    for query in ["limit=0", "limit=1001", "after=bad.name", "cursor=1"] {
        let path = format!("/v1/users/me/blocks?{query}");
        let (s, v) = api.call("GET", &path, Some(&ann), None).await?;
        assert_eq!(s, 400, "{query}: {v}");
    }
    let (s, _) = api.call("GET", "/v1/users/me/blocks", None, None).await?;
    assert_eq!(s, 401);
    // The Rust SDK's calls.
    let http = chatmesh_client::Http::new(&mesh.url())?.with_token(ann.clone());
    http.block("bob").await?;
    let page = http.blocks(None, 10).await?;
    let names: Vec<&str> = page.blocks.iter().map(|b| b.user.as_str()).collect();
    assert_eq!((names, page.more), (vec!["bob"], false));
    http.unblock("bob").await?;
    let e = http.unblock("bob").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    assert!(http.blocks(None, 10).await?.blocks.is_empty());
    let (s, _) = api
        .call("POST", "/v1/users/me/blocks/bob", Some(&ann), None)
        .await?;
    assert_eq!(s, 400, "method not allowed");
    mesh.stop().await
}
