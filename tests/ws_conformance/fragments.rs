//! Autobahn section 5: fragmentation. Fragmented messages (whole, frame by frame, chopped,
//! with pings between fragments, with empty fragments) are processed once complete;
//! fragmented control frames, continuations with nothing to continue and a new message
//! inside a fragmented one are 1002.

use std::time::Duration;

use anyhow::{ensure, Result};

use crate::common::{decode, ErrorCode};
use crate::raw::{is_error, is_pong, In, Out, Raw, BINARY, CONTINUATION, PING, PONG, TEXT};
use crate::suite::{pong_refs, Report, Suite};

/// How a case writes its frames.
#[derive(Clone, Copy)]
enum Write {
    /// All frames in one write.
    Whole,
    /// One write per frame, with a pause between.
    PerFrame,
    /// Pieces of one byte.
    Chopped,
}

pub async fn run(s: &Suite, r: &mut Report) {
    let fragmented_ping = [
        Out::new(PING, b"frag".to_vec()).more(),
        Out::new(CONTINUATION, b"ment".to_vec()),
    ];
    r.case(
        "5.1",
        "ping in 2 fragments is 1002",
        refused(s, &fragmented_ping, 0),
    )
    .await;
    let fragmented_pong = [
        Out::new(PONG, b"frag".to_vec()).more(),
        Out::new(CONTINUATION, b"ment".to_vec()),
    ];
    r.case(
        "5.2",
        "pong in 2 fragments is 1002",
        refused(s, &fragmented_pong, 0),
    )
    .await;
    r.case(
        "5.3",
        "text in 2 fragments",
        two_fragments(s, Write::Whole, false),
    )
    .await;
    r.case(
        "5.4",
        "text in 2 fragments, frame by frame",
        two_fragments(s, Write::PerFrame, false),
    )
    .await;
    r.case(
        "5.5",
        "text in 2 fragments, chopped",
        two_fragments(s, Write::Chopped, false),
    )
    .await;
    r.case(
        "5.6",
        "text in 2 fragments with a ping between",
        two_fragments(s, Write::Whole, true),
    )
    .await;
    r.case(
        "5.7",
        "same, frame by frame",
        two_fragments(s, Write::PerFrame, true),
    )
    .await;
    r.case(
        "5.8",
        "same, chopped",
        two_fragments(s, Write::Chopped, true),
    )
    .await;
    let lone = [Out::new(CONTINUATION, b"fragment".to_vec())];
    r.case(
        "5.9",
        "final continuation without a start is 1002",
        refused(s, &lone, 0),
    )
    .await;
    let lone_then_text = [
        Out::new(CONTINUATION, b"fragment".to_vec()).more(),
        Out::text(Raw::ping_text("after", 0)),
    ];
    r.case(
        "5.10",
        "continuation without a start, then text",
        refused(s, &lone_then_text, 0),
    )
    .await;
    r.case("5.11", "same, chopped", refused(s, &lone_then_text, 1))
        .await;
    let two_lone = [
        Out::new(CONTINUATION, b"frag".to_vec()).more(),
        Out::new(CONTINUATION, b"ment".to_vec()),
    ];
    r.case(
        "5.12",
        "continuations without a start",
        refused(s, &two_lone, 0),
    )
    .await;
    r.case("5.13", "same, chopped", refused(s, &two_lone, 1))
        .await;
    r.case(
        "5.15",
        "a message, then a continuation with nothing to continue",
        after_message(s),
    )
    .await;
    let new_inside = [
        Out::text(b"{\"type\":".to_vec()).more(),
        Out::text(Raw::ping_text("inside", 0)),
    ];
    r.case(
        "5.18",
        "a new text inside a fragmented one is 1002",
        refused(s, &new_inside, 0),
    )
    .await;
    let binary_inside = [Out::new(BINARY, vec![1]).more(), Out::new(BINARY, vec![2])];
    r.case(
        "5.18b",
        "a new binary inside a fragmented one is 1002",
        refused(s, &binary_inside, 0),
    )
    .await;
    r.case(
        "5.19",
        "5 fragments with pings between, frame by frame",
        five_fragments(s, Write::PerFrame),
    )
    .await;
    r.case("5.20", "same, chopped", five_fragments(s, Write::Chopped))
        .await;
    r.case("5.21", "empty first and last fragments", empty_fragments(s))
        .await;
    r.case(
        "5.22",
        "fragmented binary is one message",
        fragmented_binary(s),
    )
    .await;
}

async fn write(c: &mut Raw, frames: &[Out], how: Write) -> Result<()> {
    match how {
        Write::Whole => c.send(frames).await,
        Write::Chopped => c.send_chopped(frames, 1).await,
        Write::PerFrame => {
            for f in frames {
                c.send(std::slice::from_ref(f)).await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        }
    }
}

/// `frames` (written whole or chopped) close the session with 1002; nothing is answered.
async fn refused(s: &Suite, frames: &[Out], chop: usize) -> Result<()> {
    let before = match chop {
        0 => s.violation(frames, 1002).await?,
        n => s.violation_chopped(frames, n, 1002).await?,
    };
    ensure!(before.is_empty(), "answered: {before:?}");
    Ok(())
}

/// The JSON ping `ref` split in the middle into two fragments.
fn halves(r#ref: &str) -> (Vec<u8>, Vec<u8>) {
    let text = Raw::ping_text(r#ref, 0);
    let mid = text.len() / 2;
    (text[..mid].to_vec(), text[mid..].to_vec())
}

async fn two_fragments(s: &Suite, how: Write, ping_between: bool) -> Result<()> {
    let mut c = s.connect().await?;
    let (a, b) = halves("two");
    let mut frames = vec![Out::text(a).more()];
    if ping_between {
        frames.push(Out::new(PING, b"between".to_vec()));
    }
    frames.push(Out::new(CONTINUATION, b));
    write(&mut c, &frames, how).await?;
    if ping_between {
        let pong = c.until(|f| matches!(f, In::Pong(_))).await?;
        ensure!(pong == In::Pong(b"between".to_vec()), "{pong:?}");
    }
    let reply = c.next_server_frame().await?;
    ensure!(is_pong(&reply, "two"), "{reply:?}");
    c.alive("after").await
}

/// Autobahn 5.15: a whole fragmented message (answered), then a continuation that
/// continues nothing, then a text: 1002 after the first answer, the text not answered.
async fn after_message(s: &Suite) -> Result<()> {
    let (a, b) = halves("first");
    let frames = [
        Out::text(a).more(),
        Out::new(CONTINUATION, b),
        Out::new(CONTINUATION, b"fragment3".to_vec()).more(),
        Out::text(Raw::ping_text("never", 0)),
    ];
    let before = s.violation(&frames, 1002).await?;
    ensure!(pong_refs(&before) == ["first"], "{before:?}");
    Ok(())
}

async fn five_fragments(s: &Suite, how: Write) -> Result<()> {
    let mut c = s.connect().await?;
    let text = Raw::ping_text("five", 0);
    let parts: Vec<&[u8]> = text.chunks(text.len().div_ceil(5)).collect();
    let mut frames = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let op = if i == 0 { TEXT } else { CONTINUATION };
        let f = Out::new(op, part.to_vec());
        frames.push(if i + 1 == parts.len() { f } else { f.more() });
        if i + 1 < parts.len() {
            frames.push(Out::new(PING, format!("pong-{i}").into_bytes()));
        }
    }
    write(&mut c, &frames, how).await?;
    let mut seen = Vec::new();
    let reply = loop {
        match c.next_frame().await? {
            Some(In::Pong(p)) => seen.push(p),
            Some(In::Text(t)) => break decode(&t),
            other => anyhow::bail!("unexpected {other:?}"),
        }
    };
    ensure!(is_pong(&reply, "five"), "{reply:?}");
    // Pongs may be coalesced, but the last ping before the end is answered first.
    let last = format!("pong-{}", parts.len() - 2).into_bytes();
    ensure!(seen.last() == Some(&last), "pongs {seen:?}");
    c.alive("after").await
}

async fn empty_fragments(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    let frames = [
        Out::text(vec![]).more(),
        Out::new(CONTINUATION, Raw::ping_text("empty", 0)).more(),
        Out::new(CONTINUATION, vec![]),
    ];
    c.send(&frames).await?;
    let reply = c.next_server_frame().await?;
    ensure!(is_pong(&reply, "empty"), "{reply:?}");
    c.alive("after").await
}

async fn fragmented_binary(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    let frames = [
        Out::new(BINARY, vec![1; 10]).more(),
        Out::new(CONTINUATION, vec![2; 10]).more(),
        Out::new(CONTINUATION, vec![3; 10]),
    ];
    c.send(&frames).await?;
    let reply = c.next_server_frame().await?;
    ensure!(is_error(&reply, ErrorCode::BadRequest), "{reply:?}");
    c.alive("after").await?;
    // One message, so one error only: the alive pong came right after it.
    Ok(())
}
