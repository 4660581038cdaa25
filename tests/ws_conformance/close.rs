//! Autobahn section 7: the closing handshake. A client's close is answered with a close
//! (its code echoed when it may be sent, 1000 for an empty close) and nothing after it is
//! processed; a close payload of one byte or with a code that may not be used is 1002, a
//! reason that is not UTF-8 is 1007. Every close ends in a clean TCP close.

use anyhow::{bail, ensure, Result};

use crate::raw::{close_payload, In, Out, Raw, CLOSE, CONTINUATION, PING};
use crate::suite::{pong_refs, ws_pongs, Report, Suite};

/// Codes a client may send (echoed back).
const VALID: &[u16] = &[
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999,
];
/// Codes no endpoint may send: answered 1002.
const INVALID: &[u16] = &[
    0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
];

pub async fn run(s: &Suite, r: &mut Report) {
    r.case(
        "7.1.1",
        "text then close: the text is answered first",
        text_then_close(s),
    )
    .await;
    r.case("7.1.2", "close then close: one close back", close_close(s))
        .await;
    r.case(
        "7.1.3",
        "close then ping: no pong",
        close_then(s, Out::new(PING, b"late".to_vec())),
    )
    .await;
    r.case(
        "7.1.4",
        "close then text: not processed",
        close_then(s, Out::text(Raw::ping_text("late", 0))),
    )
    .await;
    r.case(
        "7.1.5",
        "close inside a fragmented message",
        close_inside_fragments(s),
    )
    .await;
    r.case(
        "7.1.6",
        "large text then close then ping",
        large_then_close(s),
    )
    .await;
    r.case("7.3.1", "empty close payload", closed_with(s, vec![], None))
        .await;
    r.case(
        "7.3.2",
        "close payload of one byte is 1002",
        closed_with(s, vec![0x03], Some(1002)),
    )
    .await;
    r.case(
        "7.3.3",
        "close 1000",
        closed_with(s, close_payload(1000, b""), Some(1000)),
    )
    .await;
    r.case(
        "7.3.4",
        "close 1000 with a reason",
        closed_with(s, close_payload(1000, b"Hello World!"), Some(1000)),
    )
    .await;
    r.case(
        "7.3.5",
        "close 1000 with a 123-byte reason",
        closed_with(s, close_payload(1000, &[b'*'; 123]), Some(1000)),
    )
    .await;
    r.case(
        "7.3.6",
        "close with a 124-byte reason (126-byte payload) is 1002",
        closed_with(s, close_payload(1000, &[b'*'; 124]), Some(1002)),
    )
    .await;
    let bad_reason = close_payload(
        1000,
        &[0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xED, 0xA0, 0x80],
    );
    r.case(
        "7.5.1",
        "close reason that is not UTF-8 is 1007",
        closed_with(s, bad_reason, Some(1007)),
    )
    .await;
    for (i, &code) in VALID.iter().enumerate() {
        let id = format!("7.7.{}", i + 1);
        r.case(
            &id,
            &format!("valid close code {code} is echoed"),
            closed_with(s, close_payload(code, b""), Some(code)),
        )
        .await;
    }
    for (i, &code) in INVALID.iter().enumerate() {
        let id = format!("7.9.{}", i + 1);
        r.case(
            &id,
            &format!("invalid close code {code} is 1002"),
            closed_with(s, close_payload(code, b""), Some(1002)),
        )
        .await;
    }
}

/// Sends a close with `payload`; the server's close must carry `want` (an empty close:
/// 1000, or no code).
async fn closed_with(s: &Suite, payload: Vec<u8>, want: Option<u16>) -> Result<()> {
    let mut c = s.connect().await?;
    c.send(&[Out::new(CLOSE, payload)]).await?;
    let Some(frame) = c.next_frame().await? else {
        bail!("TCP closed without a close frame");
    };
    let In::Close(code, _) = frame else {
        bail!("expected a close, got {frame:?}");
    };
    match want {
        Some(w) => ensure!(code == Some(w), "closed with {code:?}, expected {w}"),
        None => ensure!(matches!(code, None | Some(1000)), "closed with {code:?}"),
    }
    end_cleanly(&mut c).await
}

/// After the close handshake the server closes TCP without a reset.
async fn end_cleanly(c: &mut Raw) -> Result<()> {
    match c.tcp_end(std::time::Duration::from_secs(5)).await {
        crate::raw::TcpEnd::Eof => Ok(()),
        other => bail!("TCP ended with {other:?}"),
    }
}

async fn text_then_close(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    c.send(&[
        Out::text(Raw::ping_text("before", 0)),
        Out::new(CLOSE, close_payload(1000, b"")),
    ])
    .await?;
    let before = frames_before_close(&mut c, 1000).await?;
    ensure!(pong_refs(&before) == ["before"], "{before:?}");
    end_cleanly(&mut c).await
}

async fn close_close(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    let close = Out::new(CLOSE, close_payload(1000, b""));
    c.send(&[close.clone(), close]).await?;
    closed_then_nothing(&mut c).await
}

async fn close_then(s: &Suite, late: Out) -> Result<()> {
    let mut c = s.connect().await?;
    c.send(&[Out::new(CLOSE, close_payload(1000, b"")), late])
        .await?;
    closed_then_nothing(&mut c).await
}

async fn close_inside_fragments(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    let text = Raw::ping_text("split", 0);
    let (a, b) = text.split_at(10);
    c.send(&[
        Out::text(a.to_vec()).more(),
        Out::new(CLOSE, close_payload(1000, b"")),
        Out::new(CONTINUATION, b.to_vec()),
    ])
    .await?;
    closed_then_nothing(&mut c).await
}

async fn large_then_close(s: &Suite) -> Result<()> {
    let mut c = s.connect().await?;
    c.send(&[
        Out::text(Raw::ping_text("large", 60_000)),
        Out::new(CLOSE, close_payload(1000, b"")),
        Out::new(PING, b"late".to_vec()),
    ])
    .await?;
    let before = frames_before_close(&mut c, 1000).await?;
    ensure!(pong_refs(&before) == ["large"], "{before:?}");
    ensure!(ws_pongs(&before).is_empty(), "ping after close answered");
    end_cleanly(&mut c).await
}

/// The frames the server sends before its close frame, which must carry `code`.
async fn frames_before_close(c: &mut Raw, code: u16) -> Result<Vec<In>> {
    let mut before = Vec::new();
    loop {
        match c.next_frame().await? {
            Some(In::Close(got, _)) => {
                ensure!(got == Some(code), "{got:?}");
                return Ok(before);
            }
            Some(f) => before.push(f),
            None => bail!("no close"),
        }
    }
}

/// The next frame is a close 1000, and nothing follows it.
async fn closed_then_nothing(c: &mut Raw) -> Result<()> {
    let first = c.next_frame().await?;
    ensure!(matches!(first, Some(In::Close(Some(1000), _))), "{first:?}");
    match c.next_frame().await {
        Ok(None) => Ok(()),
        other => bail!("after the close: {other:?}"),
    }
}
