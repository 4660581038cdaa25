//! History reads against what clients were told: a read after an `ack` includes the acked
//! message, pages stay under NATS's payload limit however large the messages, and re-joins
//! with `since` do not pile up replays.

mod common;

use anyhow::Result;
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
