//! What a client sees when the message bus stops answering (nats-server stopped with
//! SIGSTOP, as a saturated or starved server would): never silence. Sends past the session's
//! or the gateway's in-flight budget are refused with `unavailable` after one bounded wait,
//! pings are answered throughout, every send is answered within the publish deadline, and
//! once the bus is back a resend with the same ids stores each message exactly once.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use common::{
    error_code, fast_config, frame, replies_to, start_mesh, Api, Client, ErrorCode, FrameType,
    ServerFrame,
};
use tokio::time::Instant;

/// Sends from ann: more than a session's 64 in-flight slots.
const ANN_SENDS: u64 = 100;
/// Sends from bob, whose session has slots left but the gateway has not.
const BOB_SENDS: u64 = 20;

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -{sig} {pid} failed");
    Ok(())
}

/// Whether every thread of `pid` is stopped (`kill` returns before the signal has reached
/// them all, and one still running can answer a publish).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    })
}

/// Reads frames until `pred` has matched `n` of them or `until`; returns the matches and
/// the time each arrived (the other frames stay in the backlog).
async fn collect(
    c: &mut Client,
    n: usize,
    until: Instant,
    pred: impl Fn(&ServerFrame) -> bool,
) -> Vec<(ServerFrame<'static>, Instant)> {
    let (mut out, mut other) = (Vec::new(), Vec::new());
    while out.len() < n {
        match tokio::time::timeout_at(until, c.next()).await {
            Ok(Ok(v)) if pred(&v) => out.push((v, Instant::now())),
            Ok(Ok(v)) => other.push(v),
            Ok(Err(e)) => {
                eprintln!("connection ended: {e}");
                break;
            }
            Err(_) => break,
        }
    }
    c.backlog.extend(other);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_bus_sheds_sends_with_clear_errors_and_never_goes_silent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.publish_deadline_ms = 3_000;
    config.gateway.admission_wait_ms = 300;
    // ann's 64 in flight leave 16 for everybody else.
    config.gateway.max_inflight_sends = 80;
    config.gateway.limits.sends_per_second = 10_000;
    config.gateway.limits.send_burst = 10_000;
    config.gateway.frames_per_second = 10_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let (ann_t, bob_t) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann_t, "hall", "public").await?;
    let mut ann = Client::login(&mesh.ws_url(), &ann_t).await?;
    let mut bob = Client::login(&mesh.ws_url(), &bob_t).await?;
    ann.join("hall").await?;
    bob.join("hall").await?;
    // The send path is warm (access cached, stream answering) before the stall: this test
    // is about the bus, not the workers' services.
    ann.request(frame::send("hall", "warm-a", "x")).await?;
    bob.request(frame::send("hall", "warm-b", "x")).await?;

    let nats = mesh.nats.pid().expect("nats-server runs");
    signal(nats, "STOP")?;
    let until = Instant::now() + Duration::from_secs(5);
    while !all_threads_stopped(nats) {
        ensure!(Instant::now() < until, "nats-server did not stop");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stalled = Instant::now();
    let outcome = async {
        for i in 0..ANN_SENDS {
            let send = frame::send("hall", &format!("a{i}"), "x");
            ann.send_with_ref(send, format!("s{i}")).await?;
        }
        ann.send_with_ref(frame::ping(), "p").await?;
        let pinged = Instant::now();
        // Everything before the ping is handled first: the sends past the budget are
        // refused (one wait, then at once), then the pong.
        let early = collect(&mut ann, 1, pinged + Duration::from_secs(10), |f| {
            f.frame_type() == FrameType::Pong
        })
        .await;
        let pong_after = early.first().map(|(_, at)| at.duration_since(pinged));
        for i in 0..BOB_SENDS {
            let send = frame::send("hall", &format!("b{i}"), "x");
            bob.send_with_ref(send, format!("s{i}")).await?;
        }
        bob.send_with_ref(frame::ping(), "p").await?;
        let bob_pinged = Instant::now();
        let bob_pong = collect(&mut bob, 1, bob_pinged + Duration::from_secs(10), |f| {
            f.frame_type() == FrameType::Pong
        })
        .await;
        let bob_pong_after = bob_pong
            .first()
            .map(|(_, at)| at.duration_since(bob_pinged));
        // Every send is answered (ack or error) within the publish deadline and the
        // PubAck timeout, nats-server still stopped.
        let answered = |f: &ServerFrame| {
            matches!(f.frame_type(), FrameType::Ack | FrameType::Error) && !replies_to(f, "p")
        };
        let until = stalled + Duration::from_secs(9);
        let ann_answers = collect(&mut ann, ANN_SENDS as usize, until, answered).await;
        let bob_answers = collect(&mut bob, BOB_SENDS as usize, until, answered).await;
        anyhow::Ok((pong_after, bob_pong_after, ann_answers, bob_answers))
    }
    .await;
    signal(nats, "CONT")?;
    let (pong_after, bob_pong_after, ann_answers, bob_answers) = outcome?;

    let pong_after = pong_after.expect("ann's ping was answered while the bus stalled");
    assert!(
        pong_after < Duration::from_millis(1_500),
        "ann's pong took {pong_after:?}: the reader stalled behind queued sends"
    );
    let bob_pong_after = bob_pong_after.expect("bob's ping was answered while the bus stalled");
    assert!(
        bob_pong_after < Duration::from_millis(1_500),
        "bob's pong took {bob_pong_after:?}"
    );
    let codes = |answers: &[(ServerFrame, Instant)]| {
        let mut ids = HashSet::new();
        let mut shed = 0;
        for (f, _) in answers {
            let r = f.reply_to().and_then(|r| r.as_str());
            ids.insert(r.expect("the send's ref").to_owned());
            if f.frame_type() == FrameType::Error {
                assert_eq!(error_code(f), Some(ErrorCode::Unavailable), "{f:?}");
                shed += 1;
            }
        }
        (ids.len(), shed)
    };
    let (ann_n, ann_errors) = codes(&ann_answers);
    let (bob_n, bob_errors) = codes(&bob_answers);
    assert_eq!(ann_n as u64, ANN_SENDS, "every one of ann's sends answered");
    assert_eq!(bob_n as u64, BOB_SENDS, "every one of bob's sends answered");
    let overloaded = |answers: &[(ServerFrame, Instant)]| {
        answers
            .iter()
            .filter(|(f, _)| {
                matches!(f, ServerFrame::Error { message, .. } if message.starts_with("overloaded"))
            })
            .count()
    };
    assert!(
        overloaded(&ann_answers) >= (ANN_SENDS - 64) as usize,
        "ann's sends past its 64 slots are shed: {ann_errors} errors"
    );
    assert!(
        overloaded(&bob_answers) >= (BOB_SENDS - 16) as usize,
        "bob's sends past the gateway's 80 slots are shed: {bob_errors} errors"
    );

    // The bus is back: resending every id stores each message once.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (who, n, prefix) in [(&mut ann, ANN_SENDS, "a"), (&mut bob, BOB_SENDS, "b")] {
        for i in 0..n {
            loop {
                let send = frame::send("hall", &format!("{prefix}{i}"), "x");
                let answer = who.request(send).await?;
                if answer.frame_type() == FrameType::Ack {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "resend of {prefix}{i}: {answer:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let expected = ANN_SENDS + BOB_SENDS + 2;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids = history_ids(&mut ann, "hall").await?;
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "a message stored twice");
        if ids.len() as u64 == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected} messages stored",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mesh.stop().await
}

/// The ids of every message in `room`'s history, oldest first.
async fn history_ids(c: &mut Client, room: &str) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let h = c.request(frame::history_before(room, before, 100)).await?;
        // Not a page (an error while the bus recovers) ends the walk like an empty page:
        // the caller polls again.
        let (msgs, more) = match h {
            ServerFrame::History { messages, more, .. } => (messages.into_owned(), more),
            _ => (Vec::new(), false),
        };
        let mut older: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
        older.append(&mut ids);
        ids = older;
        if !more || msgs.is_empty() {
            return Ok(ids);
        }
        before = Some(msgs[0].seq);
    }
}
