//! A resume (`join {since}`) while the only worker does not answer (SIGSTOP): the backlog
//! cannot come from the store, and the stream no longer holds its start (the room's store
//! writer trimmed what it stored: `stream_max_msgs_per_room` 40 here). The replay must not
//! go on from the stream's first message as if nothing were missing in between (no `gap`,
//! a `prev` that hides the hole): the session is closed 1013 ("resume failed") and the
//! client resumes later. Once the worker runs again, the same resume gets every message.
//!
//! And a resume that reads the stream while the store writer catches up and trims the room
//! under it: the replay must not label what the stream has next as following what it sent
//! last (a `prev` that hides what was trimmed between them); it goes back to the store.

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

/// A resume while the only worker is stopped reads its backlog from the stream; its client
/// reads nothing for a while, so the replay waits with most of the backlog still to read.
/// The worker then runs again, stores everything and trims the room from the stream. When
/// the client reads on, it gets every message after `since`, each once and in order, with
/// no gap (before: the replay's next read of the stream began at the first message the trim
/// left, labelled with the `prev` of the last one sent, and the messages between were
/// silently missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_whose_stream_is_trimmed_under_it_misses_nothing() -> Result<()> {
    const ROOM: &str = "trimmed";
    const SENT: usize = 2_000;
    let env = [
        ("CHATMESH__MESH__STREAM_MAX_MSGS_PER_ROOM", "4000"),
        // The client below pauses on purpose; the pace of a replay is not what this tests.
        ("CHATMESH__GATEWAY__REPLAY_MIN_BYTES_PER_SEC", "1"),
    ];
    let mesh = MeshProc::up_with("127.61.12", 1, 1, &env).await?;
    let (http, ws) = ("http://127.61.12.21:8080", "ws://127.61.12.21:8080/v1/ws");
    let api = Api::at(http);
    let ann = api.user("ann").await?;
    api.room(&ann, ROOM, "public").await?;
    let mut writer = Client::login(ws, &ann).await?;
    writer.join(ROOM).await?;
    let since = writer.post(ROOM, "first", "hello").await?.seq;

    mesh.signal("worker-1", "STOP").await?;
    // 2,000 bodies of 16,000 bytes: far more than the sockets and the session's queue hold,
    // so the replay below waits for its client with most of it still in the stream.
    let bodies: Vec<String> = (0..SENT)
        .map(|i| format!("{i:05}{}", "x".repeat(15_995)))
        .collect();
    let mut acked = Vec::with_capacity(SENT);
    // In steps the writer's own session can take back live (it is in the room).
    for (n, step) in bodies.chunks(100).enumerate() {
        for (i, body) in step.iter().enumerate() {
            writer
                .send(frame::send(ROOM, &format!("s{n}-{i}"), body))
                .await?;
        }
        let mut seqs = Vec::with_capacity(step.len());
        while seqs.len() < step.len() {
            match writer.next().await.context("waiting for acks")? {
                ServerFrame::Ack { seq, .. } => seqs.push(seq),
                f @ ServerFrame::Error { .. } => anyhow::bail!("send refused: {f:?}"),
                _ => {}
            }
        }
        seqs.sort_unstable();
        acked.extend(seqs);
    }
    let mut resumed = Client::login(ws, &ann).await?;
    resumed.send(frame::join_since(ROOM, since)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    mesh.signal("worker-1", "CONT").await?;
    let trims = r#"chatmesh_worker_room_trims_total{why="stored"}"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while mesh.worker_metric(1, trims).await?.unwrap_or(0.0) < 1.0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the room was never trimmed from the stream"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut got = Vec::with_capacity(SENT);
    let mut prev = since;
    while got.len() < SENT {
        let f = resumed.next().await;
        match f.with_context(|| format!("reading the resume after {} messages", got.len()))? {
            ServerFrame::Message(m) if m.room == ROOM => {
                anyhow::ensure!(
                    m.prev == prev,
                    "message {} says prev {} after {prev}",
                    m.seq,
                    m.prev
                );
                prev = m.seq;
                got.push(m.seq);
            }
            ServerFrame::Gap { from, to, .. } => {
                anyhow::bail!("nothing was lost, yet the resume says gap {from}..={to}")
            }
            _ => {}
        }
    }
    assert_eq!(got, acked, "every message after since, once, in order");
    Ok(())
}
