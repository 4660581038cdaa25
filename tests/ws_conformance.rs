//! WebSocket conformance of the gateway, modelled on the Autobahn TestSuite (cases 1–7 and
//! 9) and run against a real embedded mesh over raw sockets (`ws_conformance/raw.rs`).
//! The gateway is not an echo server, so a case sees a message processed through protocol
//! frames: a text `{"type":"ping","ref":R}` is answered `pong` with the same `ref` (which
//! also echoes any UTF-8 put in `R`), any other text or binary message gets an `error`
//! reply, and a `send` gets an `ack`. Every frame the server sends is checked against the
//! rules for servers (unmasked, FIN, no reserved bits, control payloads ≤ 125 bytes, close
//! codes that may be sent, UTF-8 reasons), and every close must be followed by a clean TCP
//! close, never a reset. Case ids follow Autobahn's numbering where a case has an
//! Autobahn counterpart; docs/PROTOCOL.md ("WebSocket conformance") lists the sections
//! and the cases that are not strict.

mod common;

#[path = "ws_conformance/close.rs"]
mod close;
#[path = "ws_conformance/fragments.rs"]
mod fragments;
#[path = "ws_conformance/framing.rs"]
mod framing;
#[path = "ws_conformance/handshake.rs"]
mod handshake;
#[path = "ws_conformance/linger.rs"]
mod linger;
#[path = "ws_conformance/raw.rs"]
mod raw;
#[path = "ws_conformance/suite.rs"]
mod suite;
#[path = "ws_conformance/utf8.rs"]
mod utf8;

use anyhow::Result;
use suite::Suite;

/// Sections 1–4: text and binary lengths at every length-encoding boundary, whole and
/// chopped; masking required; pings and pongs (payload 125 vs 126, unsolicited pongs,
/// bursts); reserved bits and reserved opcodes are 1002.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_pings_reserved_bits_and_opcodes() -> Result<()> {
    let suite = Suite::start().await?;
    let mut report = suite.report();
    framing::run(&suite, &mut report).await;
    suite.finish(report).await
}

/// Section 5: fragmented messages (with pings between fragments, chopped), fragmented
/// control frames and continuations without a start are 1002.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmentation() -> Result<()> {
    let suite = Suite::start().await?;
    let mut report = suite.report();
    fragments::run(&suite, &mut report).await;
    suite.finish(report).await
}

/// Section 6: valid UTF-8 split anywhere is accepted; invalid UTF-8 (overlong, surrogates,
/// beyond U+10FFFF, truncated, split across fragments) is 1007, and fails fast — before the
/// message ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_validation() -> Result<()> {
    let suite = Suite::start().await?;
    let mut report = suite.report();
    utf8::run(&suite, &mut report).await;
    suite.finish(report).await
}

/// Section 7: close handling: frames after a close are ignored, close payloads of one
/// byte, invalid codes (1002) and non-UTF-8 reasons (1007), valid codes are echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_handling() -> Result<()> {
    let suite = Suite::start().await?;
    let mut report = suite.report();
    close::run(&suite, &mut report).await;
    suite.finish(report).await
}

/// Section 9 (adapted to a 64 KiB limit) and the opening handshake: messages at the limit,
/// whole or in many fragments, pass; one byte over is 1009; a wrong version is 426 with
/// `Sec-WebSocket-Version: 13`, HTTP/1.0 is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_handshake() -> Result<()> {
    let suite = Suite::start().await?;
    let mut report = suite.report();
    framing::limits(&suite, &mut report).await;
    handshake::run(&suite, &mut report).await;
    suite.finish(report).await
}

/// A client flooding sends is closed with 4008 while it still writes: it reads the ack of
/// every message that was stored, then the close frame, then a clean TCP close (before the
/// lingering close it saw a reset and lost acks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_close_delivers_every_ack_then_4008() -> Result<()> {
    linger::flood_closed_with_4008().await
}

/// A `hello` with a bad token followed at once by many frames gets `error unauthorized`
/// and close 4001, not a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_hello_while_writing_gets_4001() -> Result<()> {
    linger::bad_hello_while_writing().await
}

/// A session whose token expires while it sends as fast as it can reads the ack of every
/// stored message, then close 4001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_while_writing_delivers_every_ack_then_4001() -> Result<()> {
    linger::expiry_while_writing().await
}

/// A burst of 1,025 pings to a client that reads is answered (the latest ping at least,
/// pongs coalesced) and never closed as a slow consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_burst_is_answered_and_never_closed() -> Result<()> {
    linger::ping_burst().await
}
