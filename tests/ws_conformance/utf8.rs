//! Autobahn section 6: UTF-8 handling of text messages. Valid text is carried in the `ref`
//! of a JSON ping, whose `pong` must return it unchanged however the message was split;
//! invalid sequences (Markus Kuhn's test set: lone continuations, truncated sequences,
//! impossible bytes, overlong forms, surrogates, code points over U+10FFFF) close with 1007,
//! also when split across fragments, and as soon as the invalid bytes arrive.

use std::time::Duration;

use anyhow::{ensure, Result};

use crate::common::ErrorCode;
use crate::raw::{is_error, is_pong, Out, Raw, CONTINUATION, TEXT};
use crate::suite::{Report, Suite};

/// Valid UTF-8, none of it needing a JSON escape.
const VALID: &[(&str, &[u8])] = &[
    ("6.5.1", "κόσμε".as_bytes()),
    ("6.5.2", "Hello-µ@ßöäüàá-UTF-8!!".as_bytes()),
    ("6.5.3", &[0xC2, 0x80]),
    ("6.5.4", &[0xE0, 0xA0, 0x80]),
    ("6.5.5", &[0xF0, 0x90, 0x80, 0x80]),
    ("6.5.6", &[0x7F]),
    ("6.5.7", &[0xDF, 0xBF]),
    ("6.5.8", &[0xEF, 0xBF, 0xBF]),
    ("6.5.9", &[0xF4, 0x8F, 0xBF, 0xBF]),
    ("6.5.10", &[0xED, 0x9F, 0xBF]),
    ("6.5.11", &[0xEE, 0x80, 0x80]),
    ("6.5.12", &[0xEF, 0xBF, 0xBD]),
    ("6.5.13", &[0xEF, 0xBF, 0xBE]),
    ("6.5.14", &[0xF0, 0x9F, 0xBF, 0xBE]),
    ("6.5.15", &[0xEF, 0xB7, 0x90]),
    ("6.5.16", "𝄞 ∮ E⋅da = Q".as_bytes()),
];

/// Invalid UTF-8.
const INVALID: &[(&str, &[u8])] = &[
    ("6.6.1", &[0x80]),
    ("6.6.2", &[0xBF]),
    ("6.6.3", &[0x80, 0xBF, 0x80, 0xBF]),
    ("6.7.1", &[0xC0, 0x20]),
    ("6.7.2", &[0xE0, 0x20]),
    ("6.7.3", &[0xF0, 0x20]),
    ("6.7.4", &[0xF8, 0x20]),
    ("6.7.5", &[0xFC, 0x20]),
    ("6.8.1", &[0xC2]),
    ("6.8.2", &[0xE0, 0x80]),
    ("6.8.3", &[0xF0, 0x80, 0x80]),
    ("6.8.4", &[0xDF]),
    ("6.8.5", &[0xEF, 0xBF]),
    ("6.8.6", &[0xF4, 0x8F, 0xBF]),
    ("6.9.1", &[0xFE]),
    ("6.9.2", &[0xFF]),
    ("6.9.3", &[0xFE, 0xFE, 0xFF, 0xFF]),
    ("6.10.1", &[0xC0, 0xAF]),
    ("6.10.2", &[0xE0, 0x80, 0xAF]),
    ("6.10.3", &[0xF0, 0x80, 0x80, 0xAF]),
    ("6.10.4", &[0xF8, 0x80, 0x80, 0x80, 0xAF]),
    ("6.10.5", &[0xFC, 0x80, 0x80, 0x80, 0x80, 0xAF]),
    ("6.11.1", &[0xC1, 0xBF]),
    ("6.11.2", &[0xE0, 0x9F, 0xBF]),
    ("6.11.3", &[0xF0, 0x8F, 0xBF, 0xBF]),
    ("6.12.1", &[0xC0, 0x80]),
    ("6.12.2", &[0xE0, 0x80, 0x80]),
    ("6.12.3", &[0xF0, 0x80, 0x80, 0x80]),
    ("6.13.1", &[0xED, 0xA0, 0x80]),
    ("6.13.2", &[0xED, 0xAD, 0xBF]),
    ("6.13.3", &[0xED, 0xAE, 0x80]),
    ("6.13.4", &[0xED, 0xAF, 0xBF]),
    ("6.13.5", &[0xED, 0xB0, 0x80]),
    ("6.13.6", &[0xED, 0xBE, 0x80]),
    ("6.13.7", &[0xED, 0xBF, 0xBF]),
    ("6.14.1", &[0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80]),
    ("6.14.2", &[0xED, 0xAF, 0xBF, 0xED, 0xBF, 0xBF]),
    ("6.15.1", &[0xF4, 0x90, 0x80, 0x80]),
    ("6.15.2", &[0xF5, 0x80, 0x80, 0x80]),
    ("6.15.3", &[0xF7, 0xBF, 0xBF, 0xBF]),
];

pub async fn run(s: &Suite, r: &mut Report) {
    r.case("6.1.1", "empty text message", empty(s, 1)).await;
    r.case(
        "6.1.2",
        "text message of three empty fragments",
        empty(s, 3),
    )
    .await;
    r.case(
        "6.2.1",
        "valid UTF-8 split in 2 fragments at every byte",
        split_everywhere(s),
    )
    .await;
    r.case(
        "6.2.2",
        "valid UTF-8 in fragments of one byte",
        one_byte_fragments(s),
    )
    .await;
    r.case("6.2.3", "valid UTF-8 written a byte at a time", chopped(s))
        .await;
    let bad: Vec<u8> = ["κόσμε".as_bytes(), &[0xED, 0xA0, 0x80], b"edited"].concat();
    r.case(
        "6.3.1",
        "invalid UTF-8 in one frame is 1007",
        invalid(s, bad.clone(), None),
    )
    .await;
    r.case(
        "6.3.2",
        "invalid UTF-8 in fragments of one byte is 1007",
        invalid_in_bytes(s, bad),
    )
    .await;
    r.case(
        "6.4.1",
        "fail fast: an invalid fragment before the end",
        fail_fast_fragment(s, false),
    )
    .await;
    r.case(
        "6.4.2",
        "fail fast: invalid across two fragments",
        fail_fast_fragment(s, true),
    )
    .await;
    r.case(
        "6.4.3",
        "fail fast: invalid bytes in a frame not yet complete",
        fail_fast_frame(s, false),
    )
    .await;
    r.case(
        "6.4.4",
        "fail fast: the invalid sequence split across writes",
        fail_fast_frame(s, true),
    )
    .await;
    for (id, bytes) in VALID {
        r.case(id, &format!("valid {bytes:02x?}"), valid(s, bytes))
            .await;
    }
    for (id, bytes) in INVALID {
        r.case(
            id,
            &format!("invalid {bytes:02x?}"),
            invalid(s, bytes.to_vec(), None),
        )
        .await;
        if bytes.len() >= 2 {
            let id = format!("{id}f");
            r.case(
                &id,
                &format!("invalid {bytes:02x?} split across fragments"),
                invalid(s, bytes.to_vec(), Some(1)),
            )
            .await;
        }
    }
}

/// `{"type":"ping","ref":"<bytes>"}` with `bytes` as they are.
fn ping_with(bytes: &[u8]) -> Vec<u8> {
    [&b"{\"type\":\"ping\",\"ref\":\""[..], bytes, b"\"}"].concat()
}

/// Splits `text` at `cuts` into a fragmented text message.
fn fragments(text: &[u8], cuts: &[usize]) -> Vec<Out> {
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < text.len()));
    bounds.push(text.len());
    let n = bounds.len() - 1;
    (0..n)
        .map(|i| {
            let op = if i == 0 { TEXT } else { CONTINUATION };
            let f = Out::new(op, text[bounds[i]..bounds[i + 1]].to_vec());
            if i + 1 == n {
                f
            } else {
                f.more()
            }
        })
        .collect()
}

async fn expect_pong(c: &mut Raw, r#ref: &[u8]) -> Result<()> {
    let reply = c.next_server_frame().await?;
    let want = std::str::from_utf8(r#ref)?;
    ensure!(is_pong(&reply, want), "{reply:?}");
    Ok(())
}

async fn empty(s: &Suite, parts: usize) -> Result<()> {
    let mut c = s.connect().await?;
    let frames: Vec<Out> = (0..parts)
        .map(|i| {
            let op = if i == 0 { TEXT } else { CONTINUATION };
            let f = Out::new(op, vec![]);
            if i + 1 == parts {
                f
            } else {
                f.more()
            }
        })
        .collect();
    c.send(&frames).await?;
    let reply = c.next_server_frame().await?;
    ensure!(is_error(&reply, ErrorCode::BadRequest), "{reply:?}");
    c.alive("after").await
}

async fn split_everywhere(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    let r#ref = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞".as_bytes();
    let text = ping_with(r#ref);
    for cut in 1..text.len() {
        c.send(&fragments(&text, &[cut])).await?;
        expect_pong(&mut c, r#ref).await?;
    }
    Ok(())
}

async fn one_byte_fragments(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    let r#ref = "κόσμε 𝄞".as_bytes();
    let text = ping_with(r#ref);
    let cuts: Vec<usize> = (1..text.len()).collect();
    c.send(&fragments(&text, &cuts)).await?;
    expect_pong(&mut c, r#ref).await
}

async fn chopped(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    let r#ref = "κόσμε 𝄞".as_bytes();
    c.send_chopped(&[Out::text(ping_with(r#ref))], 1).await?;
    expect_pong(&mut c, r#ref).await
}

async fn valid(s: &Suite, bytes: &[u8]) -> Result<()> {
    let mut c = s.connect().await?;
    c.send(&[Out::text(ping_with(bytes))]).await?;
    expect_pong(&mut c, bytes).await?;
    // And split inside the sequence.
    let text = ping_with(bytes);
    let at = text.len() - 2 - bytes.len() + bytes.len().div_ceil(2);
    c.send(&fragments(&text, &[at])).await?;
    expect_pong(&mut c, bytes).await
}

/// `bytes` inside a JSON ping, whole or with a fragment boundary `split` bytes into them.
async fn invalid(s: &Suite, bytes: Vec<u8>, split: Option<usize>) -> Result<()> {
    let text = ping_with(&bytes);
    let frames = match split {
        None => vec![Out::text(text)],
        Some(k) => fragments(&text, &[text.len() - 2 - bytes.len() + k]),
    };
    let before = s.violation(&frames, 1007).await?;
    ensure!(before.is_empty(), "answered: {before:?}");
    Ok(())
}

async fn invalid_in_bytes(s: &Suite, bytes: Vec<u8>) -> Result<()> {
    let text = ping_with(&bytes);
    let cuts: Vec<usize> = (1..text.len()).collect();
    let before = s.violation(&fragments(&text, &cuts), 1007).await?;
    ensure!(before.is_empty(), "answered: {before:?}");
    Ok(())
}

/// Autobahn 6.4.1/6.4.2: the message is never finished; the close must come anyway.
async fn fail_fast_fragment(s: &Suite, across: bool) -> Result<()> {
    let mut c = s.connect().await?;
    let first = "κόσμε".as_bytes().to_vec();
    let frames = if across {
        vec![
            Out::text([&first[..], &[0xF4]].concat()).more(),
            Out::new(CONTINUATION, vec![0x90, 0x80, 0x80]).more(),
        ]
    } else {
        vec![
            Out::text(first).more(),
            Out::new(CONTINUATION, vec![0xF4, 0x90, 0x80, 0x80]).more(),
        ]
    };
    c.send(&frames).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = c.expect_close(1007).await?;
    ensure!(before.is_empty(), "answered: {before:?}");
    Ok(())
}

/// Autobahn 6.4.3/6.4.4: one frame announced at full length; only a valid prefix and the
/// invalid bytes are sent, the rest never is.
async fn fail_fast_frame(s: &Suite, split_writes: bool) -> Result<()> {
    let mut c = s.connect().await?;
    let payload: Vec<u8> = [
        "κόσμε".as_bytes(),
        &[0xF4, 0x90, 0x80, 0x80],
        "-rest".as_bytes(),
    ]
    .concat();
    let frame = Out::text(payload.clone()).encode();
    let header = frame.len() - payload.len();
    let invalid_end = header + "κόσμε".len() + 4;
    if split_writes {
        c.write(&frame[..header + "κόσμε".len() + 1]).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.write(&frame[header + "κόσμε".len() + 1..invalid_end])
            .await?;
    } else {
        c.write(&frame[..invalid_end]).await?;
    }
    let before = c.expect_close(1007).await?;
    ensure!(before.is_empty(), "answered: {before:?}");
    Ok(())
}
