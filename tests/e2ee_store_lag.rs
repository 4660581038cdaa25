//! Commits of an `e2ee` room while the room's store lags behind the stream, against a real
//! mesh. The lag is made with nats-server's consumer pause (2.11+): the room's partition's
//! store-writer consumer (`store-p{p}`) delivers nothing while paused, so the worker keeps
//! answering `room_epoch` from a store that lacks what the stream holds, as an overloaded
//! worker would. The test checks the consumer stayed paused (and had not delivered the
//! commit in question) across the steps that rely on it.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chatmesh_protocol::e2ee::{Mls, MlsKind};
use common::*;
use serde_json::{json, Value};

/// The stream's duplicate window in these tests (`mesh.duplicate_window_secs`).
const WINDOW_SECS: u64 = 1;

fn send_mls(room: &str, id: &str, kind: MlsKind, epoch: u64, data: &[u8]) -> Value {
    let mls = Mls {
        kind,
        epoch,
        data: STANDARD.encode(data),
        file: None,
    };
    json!({"type": "send", "room": room, "id": id, "body": "", "mls": mls})
}

/// History of `room` once the store holds everything up to `seq` (history waits for the
/// store, then refuses `unavailable`: polled).
async fn stored_through(c: &mut Client, room: &str, seq: u64) -> Result<Vec<Message>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let f = c.request(frame::history_before(room, None, 100)).await?;
        if let ServerFrame::History { messages, .. } = &f {
            if messages.iter().any(|m| m.seq >= seq) {
                return Ok(messages.to_vec());
            }
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the store never reached seq {seq}: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the stream's duplicate window has forgotten every id published up to now:
/// a message sent now is resent until JetStream stores the resend anew (ids leave the
/// window in the order they came). Returns the seq of the copy stored last.
async fn window_passed(c: &mut Client, room: &str) -> Result<u64> {
    let probe = send_mls(room, "window-probe", MlsKind::App, 0, b"p");
    let first = acked(&c.request_json(probe.clone()).await?).seq;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let again = acked(&c.request_json(probe.clone()).await?).seq;
        if again != first {
            return Ok(again);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the duplicate window never forgot seq {first}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A commit for the epoch the store says while the stream holds an unstored commit for that
/// epoch older than the duplicate window (the store more than the window behind) is refused
/// `unavailable`, not acked: before, it passed the epoch check (the store still said epoch
/// 0), was no duplicate (the first commit's id had left the window), was acked to its
/// sender, and the store writer then stored it as a void marker after the first, forking
/// the sender from the group. Once the store catches up the room is at epoch 1: the
/// refused commit is stale and the first one's resend is answered with its seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_behind_an_unstored_one_past_the_duplicate_window_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.mesh.duplicate_window_secs = WINDOW_SECS;
    config.worker.history_wait_ms = 500;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "sec", "e2ee").await?;
    api.add(&ann, "sec", "bob").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join("sec").await?;
    b.join("sec").await?;
    let hello = a
        .request_json(send_mls("sec", "m1", MlsKind::App, 0, b"hi"))
        .await?;
    stored_through(&mut a, "sec", acked(&hello).seq).await?;

    let mut writer = StoreWriter::of(&mesh, "sec").await?;
    writer.pause().await?;
    // Ann's commit ends epoch 0: acked, in the stream, not stored.
    let ca = acked(
        &a.request_json(send_mls("sec", "ca", MlsKind::Commit, 0, b"ka"))
            .await?,
    );
    let probe = window_passed(&mut a, "sec").await?;
    writer.still_lacks(ca.seq).await?;
    // Bob commits for epoch 0 too: the store still says 0, the stream has Ann's.
    let fb = b
        .request_json(send_mls("sec", "cb", MlsKind::Commit, 0, b"kb"))
        .await?;
    writer
        .still_lacks(ca.seq)
        .await
        .context("the store lagged while Bob's commit was checked")?;
    writer.resume().await?;
    let history = stored_through(&mut b, "sec", probe).await?;

    match &fb {
        ServerFrame::Ack { seq, .. } => {
            let stored = history.iter().find(|m| m.seq == *seq);
            panic!(
                "Bob's commit was acked (seq {seq}) and then stored void: {}; Bob is forked",
                stored.is_some_and(|m| m.void)
            );
        }
        ServerFrame::Error { code, message, .. } => {
            assert_eq!(*code, ErrorCode::Unavailable, "{message}");
            assert!(message.contains("catching up"), "{message}");
        }
        other => panic!("expected an ack or an error, got {other:?}"),
    }
    let commits: Vec<(u64, &str, bool)> = history
        .iter()
        .filter(|m| m.mls.as_ref().is_some_and(|x| x.kind == MlsKind::Commit))
        .map(|m| (m.seq, m.from.as_str(), m.void))
        .collect();
    assert_eq!(commits, [(ca.seq, "ann", false)]);
    // Caught up: Bob's commit is stale now (he must take Ann's first), Ann's resend is hers.
    let f = b
        .request_json(send_mls("sec", "cb", MlsKind::Commit, 0, b"kb"))
        .await?;
    assert_eq!(error_code(&f), Some(ErrorCode::Conflict), "{f:?}");
    let again = a
        .request_json(send_mls("sec", "ca", MlsKind::Commit, 0, b"ka"))
        .await?;
    assert_eq!(acked(&again).seq, ca.seq);
    mesh.stop().await
}

/// A commit checked while the room's store lags behind the stream waits for the store
/// (`worker.history_wait_ms`) and is acked once the store catches up within it: the store
/// is held back for 300 ms here, with an app message of the room unstored, and the commit
/// then moves the room to epoch 1 (stored, not void).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_waits_for_a_store_that_catches_up_in_time() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.mesh.duplicate_window_secs = WINDOW_SECS;
    config.worker.history_wait_ms = 5_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "sec", "e2ee").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("sec").await?;
    let hello = a
        .request_json(send_mls("sec", "m1", MlsKind::App, 0, b"hi"))
        .await?;
    stored_through(&mut a, "sec", acked(&hello).seq).await?;

    let mut writer = StoreWriter::of(&mesh, "sec").await?;
    writer.pause().await?;
    let unstored = a
        .request_json(send_mls("sec", "m2", MlsKind::App, 0, b"more"))
        .await?;
    let unstored = acked(&unstored).seq;
    let commit = send_mls("sec", "c0", MlsKind::Commit, 0, b"k0");
    let (answer, held) = tokio::join!(a.request_json(commit), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer.still_lacks(unstored).await?;
        writer.resume().await
    });
    held?;
    let c0 = acked(&answer?);
    let history = stored_through(&mut a, "sec", c0.seq).await?;
    let stored = history
        .iter()
        .find(|m| m.seq == c0.seq)
        .context("c0 stored")?;
    assert!(!stored.void);
    let f = a
        .request_json(send_mls("sec", "c0b", MlsKind::Commit, 0, b"k0b"))
        .await?;
    assert_eq!(
        error_code(&f),
        Some(ErrorCode::Conflict),
        "at epoch 1: {f:?}"
    );
    mesh.stop().await
}
