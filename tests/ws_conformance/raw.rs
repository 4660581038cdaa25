//! A WebSocket client written from RFC 6455 over a bare `TcpStream`: the opening handshake
//! (checking `Sec-WebSocket-Accept`), a frame encoder that can break every rule on purpose
//! (reserved bits, opcodes, missing mask, fragmented controls) and can write a frame in
//! pieces, and a frame reader that checks every frame the server sends (unmasked, FIN set,
//! no reserved bits, a known opcode, control payloads ≤ 125 bytes, a close code that may be
//! sent and a UTF-8 reason) and tells a clean TCP close from a reset.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::common::{
    decode, error_code, replies_to, ClientFrame, ErrorCode, FrameType, ServerFrame,
};

/// How long a case waits for any one expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x9d, 0x21, 0x5a, 0xc3];

/// One client frame to encode: any bits may be wrong on purpose.
#[derive(Debug, Clone)]
pub struct Out {
    pub fin: bool,
    /// The three reserved bits (RSV1..RSV3 as 0b100..0b001).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
    pub masked: bool,
}

impl Out {
    /// A well-formed, final, masked frame.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.into(),
            masked: true,
        }
    }

    pub fn text(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(TEXT, payload)
    }

    /// The same frame with FIN cleared (a fragment that is not the last).
    pub fn more(mut self) -> Self {
        self.fin = false;
        self
    }

    pub fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }

    pub fn unmasked(mut self) -> Self {
        self.masked = false;
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![(u8::from(self.fin) << 7) | ((self.rsv & 7) << 4) | self.opcode];
        let m = if self.masked { 0x80 } else { 0 };
        let len = self.payload.len();
        if len < 126 {
            out.push(m | len as u8);
        } else if len <= usize::from(u16::MAX) {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(m | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if self.masked {
            out.extend_from_slice(&MASK);
            out.extend(
                self.payload
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ MASK[i % 4]),
            );
        } else {
            out.extend_from_slice(&self.payload);
        }
        out
    }
}

/// A close frame's payload: the code and a reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A frame the server sent, already checked against RFC 6455's rules for servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum In {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The close code (`None`: an empty close payload) and the reason.
    Close(Option<u16>, String),
}

impl In {
    /// A text frame as a protocol frame (`None` for anything else); a text that is not a
    /// server frame fails the test ([`decode`]).
    pub fn frame(&self) -> Option<ServerFrame<'static>> {
        match self {
            In::Text(t) => Some(decode(t)),
            _ => None,
        }
    }
}

/// Whether `f` is the `pong` that answers `ping` `r#ref`.
pub fn is_pong(f: &ServerFrame, r#ref: &str) -> bool {
    f.frame_type() == FrameType::Pong && replies_to(f, r#ref)
}

/// Whether `f` is an `error` with `code`.
pub fn is_error(f: &ServerFrame, code: ErrorCode) -> bool {
    error_code(f) == Some(code)
}

/// How the TCP connection ended after the server's close frame.
#[derive(Debug, PartialEq, Eq)]
pub enum TcpEnd {
    /// FIN: an orderly close.
    Eof,
    /// RST (or another error): whatever was still unread on the client side may be lost.
    Reset(String),
    /// Still open after the wait.
    Open,
}

/// A raw client connection.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// The HTTP status and head of a handshake answer.
#[derive(Debug)]
pub struct Handshake {
    pub status: u16,
    pub head: String,
}

impl Handshake {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// An upgrade request in HTTP version `http` with `Sec-WebSocket-Version: ws` (none for
/// `None`); `extra` lines are added to the headers.
pub fn upgrade_request(addr: SocketAddr, http: &str, ws: Option<&str>, extra: &[String]) -> String {
    let mut req = format!(
        "GET /v1/ws {http}\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Protocol: chatmesh.v1\r\n"
    );
    if let Some(v) = ws {
        req.push_str(&format!("Sec-WebSocket-Version: {v}\r\n"));
    }
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req
}

/// Sends `request` on a fresh connection; returns the answer's head and the connection with
/// any bytes read past the head.
pub async fn handshake(addr: SocketAddr, request: &str) -> Result<(Handshake, Raw)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = timeout(WAIT, stream.read(&mut chunk))
            .await
            .context("handshake timed out")??;
        ensure!(n > 0, "connection closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let rest = buf[end..].to_vec();
    Ok((Handshake { status, head }, Raw { stream, buf: rest }))
}

/// The `Sec-WebSocket-Accept` the server must answer [`KEY`] with.
fn expected_accept() -> String {
    let mut sha = Sha1::new();
    sha.update(KEY.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

impl Raw {
    /// Opens a session; with a token it is authenticated by the upgrade's `Authorization`
    /// header and its `welcome` is read here.
    pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Result<Self> {
        let extra: Vec<String> = token
            .map(|t| format!("Authorization: Bearer {t}"))
            .into_iter()
            .collect();
        let (hs, mut raw) =
            handshake(addr, &upgrade_request(addr, "HTTP/1.1", Some("13"), &extra)).await?;
        ensure!(hs.status == 101, "upgrade refused: {}", hs.head);
        ensure!(
            hs.header("Sec-WebSocket-Accept") == Some(expected_accept().as_str()),
            "bad Sec-WebSocket-Accept: {}",
            hs.head
        );
        if token.is_some() {
            let welcome = raw.next_server_frame().await?;
            ensure!(
                welcome.frame_type() == FrameType::Welcome,
                "expected welcome: {welcome:?}"
            );
        }
        Ok(raw)
    }

    /// The two halves of the socket; the read side comes with the bytes already read.
    pub fn into_split(self) -> ((OwnedReadHalf, Vec<u8>), OwnedWriteHalf) {
        let (r, w) = self.stream.into_split();
        ((r, self.buf), w)
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Writes frames back to back in one write.
    pub async fn send(&mut self, frames: &[Out]) -> Result<()> {
        let bytes: Vec<u8> = frames.iter().flat_map(Out::encode).collect();
        self.write(&bytes).await
    }

    /// Writes frames in pieces of `chop` bytes, flushing (and pausing a moment) between
    /// them, so the server sees them split at arbitrary points.
    pub async fn send_chopped(&mut self, frames: &[Out], chop: usize) -> Result<()> {
        let bytes: Vec<u8> = frames.iter().flat_map(Out::encode).collect();
        for piece in bytes.chunks(chop.max(1)) {
            self.write(piece).await?;
            self.stream.flush().await?;
            if chop < 16 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(())
    }

    /// Sends a text frame with `{"type":"ping","ref":..}` padded with JSON whitespace to
    /// exactly `len` bytes (at least the unpadded length): raw bytes on purpose, the cases
    /// cut and pad them.
    pub fn ping_text(r#ref: &str, len: usize) -> Vec<u8> {
        let mut t = ClientFrame::Ping.encode(&Some(r#ref.into())).into_bytes();
        if t.len() < len {
            t.resize(len, b' ');
        }
        t
    }

    async fn fill(&mut self, wait: Duration) -> Result<usize> {
        let mut chunk = vec![0u8; 16 * 1024];
        let n = timeout(wait, self.stream.read(&mut chunk))
            .await
            .context("timed out waiting for the server")??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next frame from the server, checked; `None` when the server closed TCP.
    pub async fn next_frame(&mut self) -> Result<Option<In>> {
        self.next_frame_within(WAIT).await
    }

    pub async fn next_frame_within(&mut self, wait: Duration) -> Result<Option<In>> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            if self.fill(wait).await? == 0 {
                ensure!(self.buf.is_empty(), "TCP closed inside a frame");
                return Ok(None);
            }
        }
    }

    /// The next text frame as a protocol frame, skipping WebSocket pongs; a close fails.
    pub async fn next_server_frame(&mut self) -> Result<ServerFrame<'static>> {
        loop {
            match self.next_frame().await? {
                Some(In::Text(t)) => return Ok(decode(&t)),
                Some(In::Pong(_)) => continue,
                other => bail!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Reads frames until one makes `pred` true; fails on a close or after [`WAIT`].
    pub async fn until(&mut self, pred: impl Fn(&In) -> bool) -> Result<In> {
        loop {
            match self.next_frame().await? {
                Some(f) if pred(&f) => return Ok(f),
                Some(In::Close(code, reason)) => bail!("closed with {code:?} {reason:?}"),
                Some(_) => continue,
                None => bail!("connection ended"),
            }
        }
    }

    /// A `{"type":"ping"}` request is answered by `pong`: the session is alive and has
    /// processed everything sent before.
    pub async fn alive(&mut self, r#ref: &str) -> Result<()> {
        self.send(&[Out::text(Self::ping_text(r#ref, 0))]).await?;
        let want = r#ref.to_owned();
        self.until(move |f| f.frame().is_some_and(|f| is_pong(&f, &want)))
            .await?;
        Ok(())
    }

    /// Reads (and returns) frames until the server's close frame, which must carry `code`,
    /// then answers it with a close as a client does and checks the server closes TCP
    /// cleanly.
    pub async fn expect_close(&mut self, code: u16) -> Result<Vec<In>> {
        let mut before = Vec::new();
        loop {
            match self.next_frame().await? {
                Some(In::Close(got, reason)) => {
                    ensure!(
                        got == Some(code),
                        "expected close {code}, got {got:?} {reason:?} after {before:?}"
                    );
                    break;
                }
                Some(f) => before.push(f),
                None => {
                    bail!("TCP closed without a close frame (expected {code}) after {before:?}")
                }
            }
        }
        // The client's answer; the server may already have stopped reading, so errors are
        // ignored (the check below is what matters).
        let _ = self
            .send(&[Out::new(CLOSE, close_payload(code, b""))])
            .await;
        let _ = self.stream.shutdown().await;
        match self.tcp_end(Duration::from_secs(5)).await {
            TcpEnd::Eof => Ok(before),
            other => bail!("after close {code} the TCP connection ended with {other:?}"),
        }
    }

    /// Reads until TCP ends (any frames are dropped) or `wait` passes.
    pub async fn tcp_end(&mut self, wait: Duration) -> TcpEnd {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => return TcpEnd::Eof,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return TcpEnd::Reset(e.to_string()),
                Err(_) => return TcpEnd::Open,
            }
        }
    }
}

/// Parses one server frame off the front of `buf`: `None` until it is complete.
pub fn parse_server_frame(buf: &[u8]) -> Result<Option<(In, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    ensure!(b0 & 0x80 != 0, "server frame without FIN: {b0:#04x}");
    ensure!(b0 & 0x70 == 0, "server frame with reserved bits: {b0:#04x}");
    ensure!(b1 & 0x80 == 0, "server frame is masked");
    let opcode = b0 & 0x0F;
    let (len, at) = match b1 & 0x7F {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
            ensure!(len >= 126, "length {len} not in its shortest form");
            (len, 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(b.try_into()?);
            ensure!(len > 0xFFFF && len >> 63 == 0, "bad 64-bit length {len}");
            (usize::try_from(len)?, 10)
        }
        n => (usize::from(n), 2),
    };
    if opcode & 0x8 != 0 {
        ensure!(len <= 125, "control frame of {len} bytes");
    }
    let Some(payload) = buf.get(at..at + len) else {
        return Ok(None);
    };
    let payload = payload.to_vec();
    let frame = match opcode {
        TEXT => In::Text(String::from_utf8(payload).context("server text is not UTF-8")?),
        BINARY => In::Binary(payload),
        PING => In::Ping(payload),
        PONG => In::Pong(payload),
        CLOSE => {
            ensure!(payload.len() != 1, "close payload of one byte");
            let code = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            if let Some(c) = code {
                ensure!(
                    matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999),
                    "server sent close code {c}, which may not be sent"
                );
            }
            let reason = String::from_utf8(payload.get(2..).unwrap_or_default().to_vec())
                .context("close reason is not UTF-8")?;
            In::Close(code, reason)
        }
        op => bail!("server frame with opcode {op:#x}"),
    };
    Ok(Some((frame, at + len)))
}
