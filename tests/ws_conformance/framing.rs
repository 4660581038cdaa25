//! Autobahn sections 1–4 (framing, pings and pongs, reserved bits, opcodes) and 9 (limits,
//! adapted to the gateway's 64 KiB `max_message_bytes`).

use anyhow::{ensure, Result};

use crate::common::ErrorCode;
use crate::raw::{
    close_payload, is_error, is_pong, In, Out, Raw, BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT,
};
use crate::suite::{pong_refs, ws_pongs, Report, Suite};

/// The lengths where the frame header changes form (7-bit, 16-bit, 64-bit).
const LENGTHS: [usize; 7] = [0, 125, 126, 127, 128, 65535, 65536];
/// `max_message_bytes` of the default limits.
const MAX: usize = 65536;

pub async fn run(s: &Suite, r: &mut Report) {
    for (i, len) in LENGTHS.into_iter().enumerate() {
        let id = format!("1.1.{}", i + 1);
        r.case(&id, &format!("text of {len} bytes"), text_len(s, len, 0))
            .await;
        let id = format!("1.2.{}", i + 1);
        r.case(&id, &format!("binary of {len} bytes"), binary_len(s, len))
            .await;
    }
    r.case(
        "1.1.8",
        "text of 65536 bytes chopped in 997-byte writes",
        text_len(s, MAX, 997),
    )
    .await;
    r.case(
        "1.1.9",
        "text of 300 bytes written a byte at a time",
        text_len(s, 300, 1),
    )
    .await;
    r.case("1.3.1", "an unmasked text frame is 1002", unmasked(s, TEXT))
        .await;
    r.case("1.3.2", "an unmasked ping is 1002", unmasked(s, PING))
        .await;

    r.case("2.1", "ping without payload", ping_echo(s, vec![], 0))
        .await;
    r.case(
        "2.2",
        "ping with text payload",
        ping_echo(s, b"Hello, world!".to_vec(), 0),
    )
    .await;
    let bin = vec![0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff];
    r.case("2.3", "ping with binary payload", ping_echo(s, bin, 0))
        .await;
    r.case(
        "2.4",
        "ping with 125-byte payload",
        ping_echo(s, vec![0xfe; 125], 0),
    )
    .await;
    r.case("2.5", "ping with 126-byte payload is 1002", ping_126(s))
        .await;
    r.case(
        "2.6",
        "ping with 125 bytes written a byte at a time",
        ping_echo(s, vec![0xfe; 125], 1),
    )
    .await;
    r.case(
        "2.7",
        "unsolicited empty pong is ignored",
        unsolicited_pong(s, vec![]),
    )
    .await;
    r.case(
        "2.8",
        "unsolicited pong with payload is ignored",
        unsolicited_pong(s, b"unsolicited".to_vec()),
    )
    .await;
    r.case("2.9", "unsolicited pong, then ping", pong_then_ping(s))
        .await;
    r.case(
        "2.10",
        "10 pings at once: the last is answered (non-strict: coalesced)",
        pings(s, 10, 0),
    )
    .await;
    r.case(
        "2.11",
        "10 pings chopped: the last is answered",
        pings(s, 10, 1),
    )
    .await;

    for rsv in 1..=3u8 {
        let id = format!("3.{rsv}");
        r.case(
            &id,
            &format!("text with RSV={rsv} after a good one, then a ping"),
            rsv_text(s, rsv),
        )
        .await;
    }
    r.case("3.4", "text with RSV=4 chopped", rsv_chopped(s))
        .await;
    r.case(
        "3.5",
        "binary with RSV=5",
        rsv_frame(s, Out::new(BINARY, vec![0xff; 8]).rsv(5)),
    )
    .await;
    r.case(
        "3.6",
        "ping with RSV=6",
        rsv_frame(s, Out::new(PING, b"ping".to_vec()).rsv(6)),
    )
    .await;
    let close = Out::new(CLOSE, close_payload(1000, b"")).rsv(7);
    r.case("3.7", "close with RSV=7", rsv_frame(s, close)).await;

    for (i, op) in [3u8, 4, 5, 6, 7].into_iter().enumerate() {
        let id = format!("4.1.{}", i + 1);
        r.case(
            &id,
            &format!("reserved data opcode {op}"),
            reserved_opcode(s, op, i),
        )
        .await;
    }
    for (i, op) in [11u8, 12, 13, 14, 15].into_iter().enumerate() {
        let id = format!("4.2.{}", i + 1);
        r.case(
            &id,
            &format!("reserved control opcode {op}"),
            reserved_opcode(s, op, i),
        )
        .await;
    }
}

/// Section 9, adapted: the limit is 64 KiB (Autobahn goes up to 16 MiB on echo servers).
pub async fn limits(s: &Suite, r: &mut Report) {
    r.case("9.1.1", "text of exactly the limit", text_len(s, MAX, 0))
        .await;
    r.case(
        "9.1.2",
        "text one byte over the limit is 1009",
        over_limit(s, TEXT, false),
    )
    .await;
    r.case(
        "9.1.3",
        "binary one byte over the limit is 1009",
        over_limit(s, BINARY, false),
    )
    .await;
    r.case(
        "9.1.4",
        "a header announcing 2^63-1 bytes is 1009 at once",
        huge_header(s),
    )
    .await;
    r.case(
        "9.2.1",
        "text of the limit in 1024 fragments of 64 bytes",
        fragmented_limit(s, 0),
    )
    .await;
    r.case(
        "9.2.2",
        "fragments one byte over the limit are 1009",
        fragmented_limit(s, 1),
    )
    .await;
    r.case(
        "9.2.3",
        "binary fragments over the limit are 1009",
        over_limit(s, BINARY, true),
    )
    .await;
    r.case(
        "9.7.1",
        "1,000 small messages at once, answered in order",
        many_messages(s, 1000),
    )
    .await;
}

async fn text_len(s: &Suite, len: usize, chop: usize) -> Result<()> {
    let mut c = s.connect().await?;
    // Too short for the JSON ping: blanks, answered `error bad_request`.
    let short = len < 64;
    let payload = match short {
        true => vec![b' '; len],
        false => Raw::ping_text(&format!("len{len}"), len),
    };
    ensure!(payload.len() == len, "padding");
    let frame = Out::text(payload);
    if chop == 0 {
        c.send(&[frame]).await?;
    } else {
        c.send_chopped(&[frame], chop).await?;
    }
    let reply = c.next_server_frame().await?;
    if short {
        ensure!(is_error(&reply, ErrorCode::BadRequest), "{reply:?}");
    } else {
        ensure!(is_pong(&reply, &format!("len{len}")), "{reply:?}");
    }
    c.alive("after").await
}

async fn binary_len(s: &Suite, len: usize) -> Result<()> {
    let mut c = s.connect().await?;
    c.send(&[Out::new(BINARY, vec![0xfe; len])]).await?;
    let reply = c.next_server_frame().await?;
    ensure!(is_error(&reply, ErrorCode::BadRequest), "{reply:?}");
    c.alive("after").await
}

async fn unmasked(s: &Suite, opcode: u8) -> Result<()> {
    let frame = Out::new(opcode, Raw::ping_text("u", 0)).unmasked();
    let before = s.violation(&[frame], 1002).await?;
    ensure!(before.is_empty(), "answered before the close: {before:?}");
    Ok(())
}

async fn ping_echo(s: &Suite, payload: Vec<u8>, chop: usize) -> Result<()> {
    let mut c = s.connect().await?;
    let ping = Out::new(PING, payload.clone());
    if chop == 0 {
        c.send(&[ping]).await?;
    } else {
        c.send_chopped(&[ping], chop).await?;
    }
    let pong = c.until(|f| matches!(f, In::Pong(_))).await?;
    ensure!(pong == In::Pong(payload), "pong {pong:?}");
    c.alive("after").await
}

async fn ping_126(s: &Suite) -> Result<()> {
    let before = s
        .violation(&[Out::new(PING, vec![0xfe; 126])], 1002)
        .await?;
    ensure!(ws_pongs(&before).is_empty(), "a 126-byte ping was answered");
    Ok(())
}

async fn unsolicited_pong(s: &Suite, payload: Vec<u8>) -> Result<()> {
    let mut c = s.connect().await?;
    c.send(&[Out::new(PONG, payload)]).await?;
    c.alive("after").await
}

async fn pong_then_ping(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    c.send(&[
        Out::new(PONG, b"unsolicited".to_vec()),
        Out::new(PING, b"solicited".to_vec()),
    ])
    .await?;
    let pong = c.until(|f| matches!(f, In::Pong(_))).await?;
    ensure!(pong == In::Pong(b"solicited".to_vec()), "{pong:?}");
    c.alive("after").await
}

/// `n` pings with distinct payloads: the pongs answer pings in order and the last ping is
/// answered (RFC 6455 5.5.3 allows answering only the most recent one).
async fn pings(s: &Suite, n: usize, chop: usize) -> Result<()> {
    let mut c = s.connect().await?;
    let frames: Vec<Out> = (0..n)
        .map(|i| Out::new(PING, format!("payload-{i}").into_bytes()))
        .collect();
    if chop == 0 {
        c.send(&frames).await?;
    } else {
        c.send_chopped(&frames, chop).await?;
    }
    let last = format!("payload-{}", n - 1).into_bytes();
    let mut seen = Vec::new();
    loop {
        let f = c.until(|f| matches!(f, In::Pong(_))).await?;
        let In::Pong(p) = f else { continue };
        seen.push(p.clone());
        if p == last {
            break;
        }
    }
    let order: Vec<usize> = seen
        .iter()
        .filter_map(|p| {
            String::from_utf8_lossy(p)
                .strip_prefix("payload-")?
                .parse()
                .ok()
        })
        .collect();
    ensure!(
        order.windows(2).all(|w| w[0] < w[1]),
        "pongs out of order: {order:?}"
    );
    c.alive("after").await
}

/// A good text, then one with reserved bits, then a ping: the first is answered, the
/// session closes 1002 and the ping is not answered.
async fn rsv_text(s: &Suite, rsv: u8) -> Result<()> {
    let frames = [
        Out::text(Raw::ping_text("good", 0)),
        Out::text(Raw::ping_text("bad", 0)).rsv(rsv),
        Out::new(PING, b"after".to_vec()),
    ];
    let before = match rsv {
        // Frame by frame, with a pause: the good one is surely processed first.
        3 => {
            let mut c = s.connect().await?;
            for f in &frames {
                c.send(std::slice::from_ref(f)).await?;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            c.expect_close(1002).await?
        }
        _ => s.violation(&frames, 1002).await?,
    };
    ensure!(pong_refs(&before) == ["good"], "{before:?}");
    ensure!(
        ws_pongs(&before).is_empty(),
        "ping after the violation answered"
    );
    Ok(())
}

async fn rsv_chopped(s: &Suite) -> Result<()> {
    let frames = [
        Out::text(Raw::ping_text("good", 0)),
        Out::text(Raw::ping_text("bad", 0)).rsv(4),
        Out::new(PING, b"after".to_vec()),
    ];
    let before = s.violation_chopped(&frames, 1, 1002).await?;
    ensure!(pong_refs(&before) == ["good"], "{before:?}");
    ensure!(
        ws_pongs(&before).is_empty(),
        "ping after the violation answered"
    );
    Ok(())
}

async fn rsv_frame(s: &Suite, frame: Out) -> Result<()> {
    let before = s.violation(&[frame], 1002).await?;
    ensure!(before.is_empty(), "answered: {before:?}");
    Ok(())
}

/// Autobahn 4.x.1 sends the bare opcode, .2 with a payload, .3–.5 after a good text and
/// followed by a ping (which must not be answered).
async fn reserved_opcode(s: &Suite, op: u8, variant: usize) -> Result<()> {
    let payload = if variant % 2 == 1 {
        b"reserved".to_vec()
    } else {
        vec![]
    };
    let mut frames = Vec::new();
    if variant >= 2 {
        frames.push(Out::text(Raw::ping_text("good", 0)));
    }
    frames.push(Out::new(op, payload));
    if variant >= 2 {
        frames.push(Out::new(PING, b"after".to_vec()));
    }
    let before = s.violation(&frames, 1002).await?;
    let want: Vec<String> = if variant >= 2 {
        vec!["good".into()]
    } else {
        vec![]
    };
    ensure!(pong_refs(&before) == want, "{before:?}");
    ensure!(
        ws_pongs(&before).is_empty(),
        "ping after the violation answered"
    );
    Ok(())
}

async fn over_limit(s: &Suite, opcode: u8, fragmented: bool) -> Result<()> {
    let frames = if fragmented {
        vec![
            Out::new(opcode, vec![b' '; MAX / 2]).more(),
            Out::new(CONTINUATION, vec![b' '; MAX / 2 + 1]),
        ]
    } else {
        let payload = match opcode {
            TEXT => Raw::ping_text("over", MAX + 1),
            _ => vec![0; MAX + 1],
        };
        vec![Out::new(opcode, payload)]
    };
    let before = s.violation(&frames, 1009).await?;
    ensure!(before.is_empty(), "answered: {before:?}");
    Ok(())
}

async fn huge_header(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    let mut head = vec![0x81, 0xFF];
    head.extend((u64::MAX >> 1).to_be_bytes());
    head.extend([1, 2, 3, 4]);
    c.write(&head).await?;
    c.expect_close(1009).await?;
    Ok(())
}

/// The JSON ping padded to `MAX + extra` bytes, sent in 64-byte fragments.
async fn fragmented_limit(s: &Suite, extra: usize) -> Result<()> {
    let text = Raw::ping_text("frag", MAX + extra);
    let chunks: Vec<&[u8]> = text.chunks(64).collect();
    let frames: Vec<Out> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let op = if i == 0 { TEXT } else { CONTINUATION };
            let f = Out::new(op, c.to_vec());
            if i + 1 == chunks.len() {
                f
            } else {
                f.more()
            }
        })
        .collect();
    if extra > 0 {
        let before = s.violation(&frames, 1009).await?;
        ensure!(before.is_empty(), "answered: {before:?}");
        return Ok(());
    }
    let mut c = s.connect().await?;
    c.send(&frames).await?;
    let reply = c.next_server_frame().await?;
    ensure!(is_pong(&reply, "frag"), "{reply:?}");
    c.alive("after").await
}

async fn many_messages(s: &Suite, n: usize) -> Result<()> {
    let mut c = s.connect().await?;
    let frames: Vec<Out> = (0..n)
        .map(|i| Out::text(Raw::ping_text(&format!("m{i}"), 0)))
        .collect();
    c.send(&frames).await?;
    for i in 0..n {
        let reply = c.next_server_frame().await?;
        ensure!(is_pong(&reply, &format!("m{i}")), "reply {i}: {reply:?}");
    }
    Ok(())
}
