//! History reads against what clients were told: a read after an `ack` includes the acked
//! message, pages stay under NATS's payload limit however large the messages, and re-joins
//! with `since` do not pile up replays.

mod common;

use anyhow::{bail, Result};
use common::*;
use serde_json::{json, Value};

/// `ann`'s token and a client of hers, in room `room` she created (not joined).
async fn owner(mesh: &chatmesh::Mesh, room: &str) -> Result<(Api, String, Client)> {
    let api = Api::new(mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, room, "public").await?;
    let c = Client::login(&mesh.ws_url(), &ann).await?;
    Ok((api, ann, c))
}

/// Sends `bodies` to `room` (pipelined) and returns the acked seqs in order, each with the
/// index of its body.
async fn fill(c: &mut Client, room: &str, bodies: &[String]) -> Result<Vec<(u64, usize)>> {
    for (i, body) in bodies.iter().enumerate() {
        let id = format!("f{i}");
        c.send_json(json!({"type":"send","room":room,"id":id,"body":body,"ref":id}))
            .await?;
    }
    let mut acked = Vec::new();
    while acked.len() < bodies.len() {
        let f = c
            .wait_for(|f| f["type"] == "ack" || f["type"] == "error")
            .await?;
        if f["type"] == "error" {
            bail!("send refused: {f}");
        }
        let i: usize = f["id"].as_str().unwrap_or("f")[1..].parse()?;
        acked.push((f["seq"].as_u64().unwrap_or(0), i));
    }
    acked.sort();
    Ok(acked)
}

/// Checks that `got` (messages, oldest first) is exactly the `acked` messages with their
/// bodies intact.
fn assert_all(got: &[Value], acked: &[(u64, usize)], bodies: &[String], how: &str) {
    let seqs: Vec<u64> = got.iter().filter_map(|m| m["seq"].as_u64()).collect();
    let want: Vec<u64> = acked.iter().map(|a| a.0).collect();
    assert_eq!(seqs, want, "{how}: every message once, in order");
    for (m, (_, i)) in got.iter().zip(acked) {
        assert!(
            m["body"] == bodies[*i].as_str(),
            "{how}: body of {} changed",
            m["seq"]
        );
    }
}

/// Seqs of a page's `messages`.
fn seqs(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .map(|ms| ms.iter().filter_map(|m| m["seq"].as_u64()).collect())
        .unwrap_or_default()
}

/// A client that is acked and reads at once sees its message, over HTTP and WebSocket,
/// every time (before: the worker answered from a store 2–6 ms behind the ack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_right_after_an_ack_includes_the_acked_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let (api, ann, mut c) = owner(&mesh, "now").await?;
    let mut missed = Vec::new();
    for i in 0..60 {
        let ack = c
            .request(json!({"type":"send","room":"now","id":format!("m{i}"),"body":"hi"}))
            .await?;
        let seq = ack["seq"].as_u64().unwrap_or(0);
        let page = if i % 2 == 0 {
            let (s, v) = api
                .call("GET", "/v1/rooms/now/messages?limit=5", Some(&ann), None)
                .await?;
            assert_eq!(s, 200, "{v}");
            v
        } else {
            let v = c
                .request(json!({"type":"history","room":"now","limit":5}))
                .await?;
            assert_eq!(v["type"], "history", "{v}");
            v
        };
        if !seqs(&page).contains(&seq) {
            missed.push(seq);
        }
    }
    assert!(
        missed.is_empty(),
        "acked but missing from history: {missed:?}"
    );
    mesh.stop().await
}

/// A room of 100 bodies at the body limit and 30 of control characters (6 bytes each once
/// JSON-escaped): 3.4 MB of history, over NATS's 1 MiB payload in any page of 100. Paged
/// over HTTP and WebSocket, and replayed by a `join` with `since`, every page answers, is
/// under 1 MiB, holds at least one message, and together they hold each message once
/// (before: the worker's reply was dropped and the client got `unavailable` after 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_large_messages_stay_under_the_payload_limit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = fast_config();
    let max_body = config.gateway.limits.max_body_bytes;
    let mesh = start_mesh(dir.path(), config).await?;
    let (api, ann, mut c) = owner(&mesh, "big").await?;
    // A send frame must stay under max_message_bytes (64 KiB) once escaped itself.
    let control: String = "\u{1}\u{7}\u{1f}\"\\"
        .chars()
        .cycle()
        .take(10_000)
        .collect();
    let bodies: Vec<String> = (0..130)
        .map(|i| match i % 13 {
            0..=2 => control.clone(),
            _ => format!("{i:05}").repeat(max_body / 5),
        })
        .collect();
    assert!(bodies.iter().all(|b| b.len() <= max_body));
    let acked = fill(&mut c, "big", &bodies).await?;

    let mut http = Vec::new();
    let mut before = String::new();
    loop {
        let path = format!("/v1/rooms/big/messages?limit=100{before}");
        let (s, v) = api.call("GET", &path, Some(&ann), None).await?;
        assert_eq!(s, 200, "{v}");
        let page = v["messages"].as_array().cloned().unwrap_or_default();
        assert!(!page.is_empty(), "a page makes progress: {v}");
        assert!(v.to_string().len() < 1 << 20, "page over 1 MiB");
        before = format!("&before={}", page[0]["seq"]);
        http.splice(0..0, page);
        if v["more"] == false {
            break;
        }
    }
    assert_all(&http, &acked, &bodies, "HTTP");

    let mut ws = Vec::new();
    let mut before = Value::Null;
    loop {
        let v = c
            .request(json!({"type":"history","room":"big","limit":100,"before":before}))
            .await?;
        assert_eq!(v["type"], "history", "{v}");
        let page = v["messages"].as_array().cloned().unwrap_or_default();
        assert!(!page.is_empty(), "a page makes progress");
        before = page[0]["seq"].clone();
        ws.splice(0..0, page);
        if v["more"] == false {
            break;
        }
    }
    assert_all(&ws, &acked, &bodies, "WebSocket history");

    let mut r = Client::login(&mesh.ws_url(), &ann).await?;
    r.request(json!({"type":"join","room":"big","since":0}))
        .await?;
    let replayed = r.messages("big", acked.len()).await?;
    assert_all(&replayed, &acked, &bodies, "replay");
    mesh.stop().await
}
