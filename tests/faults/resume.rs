//! A resume (`join {since}`) while the only worker does not answer (SIGSTOP): the backlog
//! cannot come from the store, and the stream no longer holds its start (the room's store
//! writer trimmed what it stored: `stream_max_msgs_per_room` 40 here). The replay must not
//! go on from the stream's first message as if nothing were missing in between (no `gap`,
//! a `prev` that hides the hole): the session is closed 1013 ("resume failed") and the
//! client resumes later. Once the worker runs again, the same resume gets every message.

use std::time::Duration;

use anyhow::{Context, Result};
use chatmesh_protocol::frames::ServerFrame;

use crate::common::{frame, Api, Client, Ended};
use crate::launcher::MeshProc;

const ROOM: &str = "holey";
const SENT: usize = 150;
const SINCE: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_without_the_store_never_skips_what_the_stream_let_go() -> Result<()> {
    let env = [("CHATMESH__MESH__STREAM_MAX_MSGS_PER_ROOM", "40")];
    let mesh = MeshProc::up_with("127.61.11", 1, 1, &env).await?;
    // Straight to the gateway: HAProxy takes it out of service once its worker stops
    // answering its readiness check.
    let (http, ws) = ("http://127.61.11.21:8080", "ws://127.61.11.21:8080/v1/ws");
    let api = Api::at(http);
    let ann = api.user("ann").await?;
    api.room(&ann, ROOM, "public").await?;
    let mut writer = Client::login(ws, &ann).await?;
    writer.join(ROOM).await?;
    let mut acked = Vec::with_capacity(SENT);
    for i in 0..SENT {
        acked.push(writer.post(ROOM, &format!("m{i}"), "hello").await?.seq);
    }
    let trims = r#"chatmesh_worker_room_trims_total{why="stored"}"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while mesh.worker_metric(1, trims).await?.unwrap_or(0.0) < 1.0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the room was never trimmed from the stream"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    mesh.signal("worker-1", "STOP").await?;
    let mut resumed = Client::login(ws, &ann).await?;
    resumed.send(frame::join_since(ROOM, acked[SINCE])).await?;
    let ended = resumed.ended().await;
    let mut got = Vec::new();
    while let Ok(f) = resumed.next().await {
        match f {
            ServerFrame::Message(m) => got.push(m.seq),
            ServerFrame::Gap { from, to, .. } => {
                anyhow::bail!("the worker was only stopped, nothing is lost: gap {from}..={to}")
            }
            _ => {}
        }
    }
    mesh.signal("worker-1", "CONT").await?;
    println!(
        "resume with the worker stopped: {ended:?} after {} of {} messages",
        got.len(),
        SENT - SINCE - 1
    );
    assert_eq!(
        got,
        acked[SINCE + 1..SINCE + 1 + got.len()],
        "the resume skipped messages"
    );
    assert_eq!(ended, Ended::Closed(1013), "the resume was not refused");

    let mut again = Client::login(ws, &ann).await?;
    again.send(frame::join_since(ROOM, acked[SINCE])).await?;
    let msgs = again
        .messages(ROOM, SENT - SINCE - 1)
        .await
        .context("the resume once the worker runs again")?;
    let seqs: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, acked[SINCE + 1..], "everything after since, once");
    Ok(())
}
