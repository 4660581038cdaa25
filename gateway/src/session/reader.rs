//! The read side of a session's WebSocket: an RFC 6455 server frame decoder that holds no
//! buffer while a connection is idle.
//!
//! Bytes are read into a stack buffer that lives only for one `poll_read`; the decoder keeps
//! heap memory only for what is partly received (a message being assembled, a control
//! payload) and for bytes read past a complete message, and drops it once they are used.
//! An idle connection costs the size of [`Reader`], nothing more.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read from the socket per `poll_read` (on the stack, never kept).
const READ_CHUNK: usize = 4096;
/// Largest payload of a control frame.
const MAX_CONTROL: u64 = 125;
/// Most frames one message may come in: frames are counted by the session's flood guard as
/// messages, so a message of many empty fragments must not cost the gateway without bound
/// (1,024 fragments of a 64 KiB message are 64 bytes each).
const MAX_FRAGMENTS: u32 = 1024;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A complete client message or control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A text message (reassembled from its fragments), valid UTF-8.
    Text(Vec<u8>),
    /// A binary message; its payload is not kept.
    Binary,
    /// A ping with its payload (at most 125 bytes).
    Ping(Vec<u8>),
    /// A pong (its payload is not kept): nothing to answer, but counted like any frame.
    Pong,
    /// A close frame and its status code, if it had one.
    Close(Option<u16>),
}

/// A frame the protocol forbids: the session closes with `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

const fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// Why [`Reader::next`] returned no event.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the TCP connection.
    Eof,
    Io(io::Error),
    Protocol(Violation),
}

/// The frame whose payload is being received.
#[derive(Debug)]
struct Frame {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Payload bytes received so far (the mask index).
    pos: u64,
    remaining: u64,
}

/// A data message whose last fragment has not arrived yet.
#[derive(Debug)]
struct Message {
    text: bool,
    /// Payload of a text message (binary payloads are only counted).
    buf: Vec<u8>,
    len: usize,
    /// Frames received so far (at most [`MAX_FRAGMENTS`]).
    fragments: u32,
    /// How much of `buf` is known to be valid UTF-8: all of it but a sequence that may
    /// still be completed by the next bytes.
    valid: usize,
}

impl Message {
    /// Checks the text received since the last check, so invalid UTF-8 fails as soon as it
    /// arrives rather than when the message ends (each byte is checked about once).
    fn check_utf8(&mut self) -> Result<(), Violation> {
        match std::str::from_utf8(&self.buf[self.valid..]) {
            Ok(_) => self.valid = self.buf.len(),
            // An invalid sequence; `None` is a sequence cut short that more bytes may end.
            Err(e) if e.error_len().is_some() => return Err(violation(1007, "invalid UTF-8")),
            Err(e) => self.valid += e.valid_up_to(),
        }
        Ok(())
    }
}

/// Close codes a peer may send (RFC 6455 7.4, IANA registry): others are a protocol error.
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Incremental, push-driven frame decoder (no I/O).
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    head: [u8; 14],
    head_len: u8,
    frame: Option<Frame>,
    message: Option<Message>,
    control: Vec<u8>,
}

impl Decoder {
    /// A decoder that refuses messages over `max_message` bytes (1009).
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            head: [0; 14],
            head_len: 0,
            frame: None,
            message: None,
            control: Vec::new(),
        }
    }

    /// Consumes `input` until one event (or violation) is complete. Returns how many bytes
    /// were consumed: all of them unless an event came out before the end.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Option<Result<Event, Violation>>) {
        let mut i = 0;
        loop {
            if self.frame.is_none() {
                let (n, parsed) = self.header(&input[i..]);
                i += n;
                match parsed {
                    Ok(true) => {}
                    Ok(false) => return (i, None),
                    Err(v) => return (i, Some(Err(v))),
                }
            }
            let Some(frame) = self.frame.as_mut() else {
                continue;
            };
            let take = usize::try_from(frame.remaining)
                .unwrap_or(usize::MAX)
                .min(input.len() - i);
            let chunk = &input[i..i + take];
            let (target, text) = match frame.opcode {
                TEXT | CONTINUATION => match self.message.as_mut().filter(|m| m.text) {
                    Some(m) => (Some(&mut m.buf), true),
                    None => (None, false),
                },
                BINARY => (None, false),
                _ => (Some(&mut self.control), false),
            };
            if let Some(target) = target {
                let start = frame.pos;
                target.extend(
                    chunk
                        .iter()
                        .zip(start..)
                        .map(|(b, k)| b ^ frame.mask[(k & 3) as usize]),
                );
            }
            if text && take > 0 {
                if let Some(Err(v)) = self.message.as_mut().map(Message::check_utf8) {
                    return (i + take, Some(Err(v)));
                }
            }
            frame.pos += take as u64;
            frame.remaining -= take as u64;
            i += take;
            if frame.remaining > 0 {
                return (i, None);
            }
            if let Some(out) = self.finish_frame() {
                return (i, Some(out));
            }
        }
    }

    /// Reads header bytes; `Ok(true)` once a frame header is complete and accepted.
    fn header(&mut self, input: &[u8]) -> (usize, Result<bool, Violation>) {
        let mut i = 0;
        loop {
            let need = self.header_len();
            let have = usize::from(self.head_len);
            if have == need {
                break;
            }
            let take = (need - have).min(input.len() - i);
            if take == 0 {
                return (i, Ok(false));
            }
            self.head[have..have + take].copy_from_slice(&input[i..i + take]);
            self.head_len += take as u8;
            i += take;
            if self.head_len == 2 {
                if let Err(v) = self.check_first_bytes() {
                    return (i, Err(v));
                }
            }
        }
        (i, self.start_frame().map(|()| true))
    }

    /// Header length known so far: 2 until the second byte is in.
    fn header_len(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        let ext = match self.head[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + 4
    }

    fn check_first_bytes(&self) -> Result<(), Violation> {
        let (b0, b1) = (self.head[0], self.head[1]);
        let opcode = b0 & 0x0F;
        if b0 & 0x70 != 0 {
            return Err(violation(1002, "reserved bits set"));
        }
        if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
            return Err(violation(1002, "unknown opcode"));
        }
        if b1 & 0x80 == 0 {
            return Err(violation(1002, "client frames must be masked"));
        }
        if opcode & 0x8 != 0 && (b0 & 0x80 == 0 || u64::from(b1 & 0x7F) > MAX_CONTROL) {
            return Err(violation(1002, "control frames must be final and short"));
        }
        match (opcode, self.message.is_some()) {
            (CONTINUATION, false) => Err(violation(1002, "continuation without a message")),
            (TEXT | BINARY, true) => Err(violation(1002, "new message inside a fragmented one")),
            _ => Ok(()),
        }
    }

    /// The header is complete: checks sizes and sets up the payload's destination.
    fn start_frame(&mut self) -> Result<(), Violation> {
        let h = &self.head;
        let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0F);
        let (len, mask_at) = match h[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = [h[mask_at], h[mask_at + 1], h[mask_at + 2], h[mask_at + 3]];
        self.head_len = 0;
        let max = self.max_message as u64;
        match opcode {
            TEXT | BINARY => {
                if len > max {
                    return Err(violation(1009, "frame too large"));
                }
                // Memory follows the bytes that arrived, not the length a header announces
                // (a peer may announce 64 KiB and stall).
                let buf = match opcode {
                    TEXT => Vec::with_capacity((len as usize).min(READ_CHUNK)),
                    _ => Vec::new(),
                };
                self.message = Some(Message {
                    text: opcode == TEXT,
                    buf,
                    len: len as usize,
                    fragments: 1,
                    valid: 0,
                });
            }
            CONTINUATION => {
                let Some(m) = self.message.as_mut() else {
                    return Err(violation(1002, "continuation without a message"));
                };
                if len > max || m.len as u64 + len > max {
                    return Err(violation(1009, "message too large"));
                }
                if m.fragments >= MAX_FRAGMENTS {
                    return Err(violation(1008, "too many fragments in one message"));
                }
                m.fragments += 1;
                m.len += len as usize;
                if m.text {
                    m.buf.reserve((len as usize).min(READ_CHUNK));
                }
            }
            _ => self.control = Vec::with_capacity(len as usize),
        }
        self.frame = Some(Frame {
            fin,
            opcode,
            mask,
            pos: 0,
            remaining: len,
        });
        Ok(())
    }

    /// The current frame's payload is complete: an event if it ends a message or is a
    /// control frame the session answers.
    fn finish_frame(&mut self) -> Option<Result<Event, Violation>> {
        let frame = self.frame.take()?;
        match frame.opcode {
            TEXT | BINARY | CONTINUATION if frame.fin => {
                let m = self.message.take()?;
                if !m.text {
                    return Some(Ok(Event::Binary));
                }
                // Checked as it arrived; only a sequence cut short by the end is left.
                if m.valid != m.buf.len() {
                    return Some(Err(violation(1007, "invalid UTF-8")));
                }
                Some(Ok(Event::Text(m.buf)))
            }
            PING => Some(Ok(Event::Ping(std::mem::take(&mut self.control)))),
            CLOSE => Some(close_event(&std::mem::take(&mut self.control))),
            PONG => {
                self.control = Vec::new();
                Some(Ok(Event::Pong))
            }
            _ => None,
        }
    }
}

/// A close frame's payload: empty, or a code a peer may send and a UTF-8 reason.
fn close_event(payload: &[u8]) -> Result<Event, Violation> {
    let Some((code, reason)) = payload.split_first_chunk::<2>() else {
        return match payload.len() {
            0 => Ok(Event::Close(None)),
            _ => Err(violation(1002, "close payload of one byte")),
        };
    };
    let code = u16::from_be_bytes(*code);
    if !valid_close_code(code) {
        return Err(violation(1002, "invalid close code"));
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(violation(1007, "close reason is not UTF-8"));
    }
    Ok(Event::Close(Some(code)))
}

/// A decoder and the bytes read past its last event.
#[derive(Debug)]
pub struct Reader {
    decoder: Decoder,
    /// Read but not yet decoded; empty (and unallocated) unless a read held more than one
    /// event.
    pending: Vec<u8>,
}

impl Reader {
    pub fn new(max_message: usize) -> Self {
        Self {
            decoder: Decoder::new(max_message),
            pending: Vec::new(),
        }
    }

    /// The next event. Cancel-safe: every byte read is in `self` before an await returns.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Event, ReadError> {
        loop {
            if !self.pending.is_empty() {
                let (n, out) = self.decoder.decode(&self.pending);
                self.pending.drain(..n);
                if self.pending.is_empty() {
                    self.pending = Vec::new();
                }
                if let Some(out) = out {
                    return out.map_err(ReadError::Protocol);
                }
            }
            if let Some(out) = poll_fn(|cx| self.poll_fill(io, cx)).await? {
                return out.map_err(ReadError::Protocol);
            }
        }
    }

    /// One read into a stack buffer, decoded at once; the rest after an event is kept.
    fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Result<Event, Violation>>, ReadError>> {
        let mut buf = [0u8; READ_CHUNK];
        let mut rb = ReadBuf::new(&mut buf);
        ready!(Pin::new(io).poll_read(cx, &mut rb)).map_err(ReadError::Io)?;
        let got = rb.filled();
        if got.is_empty() {
            return Poll::Ready(Err(ReadError::Eof));
        }
        let (n, out) = self.decoder.decode(got);
        if n < got.len() {
            self.pending.extend_from_slice(&got[n..]);
        }
        Poll::Ready(Ok(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame: masked unless `mask` is `None`.
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        let len = payload.len();
        if len < 126 {
            out.push(m | len as u8);
        } else if len <= usize::from(u16::MAX) {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(m | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        match mask {
            Some(k) => {
                out.extend_from_slice(&k);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        frame(fin, opcode, payload, Some(MASK))
    }

    /// Every outcome of feeding `input` in the given pieces, as a session would.
    fn run(dec: &mut Decoder, pieces: &[&[u8]]) -> Vec<Result<Event, Violation>> {
        let mut out = Vec::new();
        for piece in pieces {
            let mut rest = *piece;
            loop {
                let (n, ev) = dec.decode(rest);
                assert!(n <= rest.len());
                rest = &rest[n..];
                match ev {
                    Some(Err(v)) => {
                        out.push(Err(v));
                        return out;
                    }
                    Some(Ok(e)) => out.push(Ok(e)),
                    None => {
                        assert!(rest.is_empty(), "no event, so every byte is consumed");
                        break;
                    }
                }
            }
        }
        out
    }

    fn all(input: &[u8]) -> Vec<Result<Event, Violation>> {
        run(&mut Decoder::new(1000), &[input])
    }

    fn code(out: &[Result<Event, Violation>]) -> u16 {
        match out.last() {
            Some(Err(v)) => v.code,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn a_masked_text_frame_is_unmasked() {
        assert_eq!(
            all(&masked(true, TEXT, b"{\"type\":\"ping\"}")),
            [Ok(Event::Text(b"{\"type\":\"ping\"}".to_vec()))]
        );
        assert_eq!(all(&masked(true, TEXT, b"")), [Ok(Event::Text(vec![]))]);
    }

    #[test]
    fn split_reads_at_every_byte_boundary_give_the_same_events() {
        let mut input = masked(false, TEXT, "héllo ".as_bytes());
        input.extend(masked(true, PING, b"p"));
        input.extend(masked(true, CONTINUATION, &[b'w'; 300]));
        input.extend(masked(true, TEXT, b"second"));
        input.extend(masked(true, CLOSE, &1000u16.to_be_bytes()));
        let mut text = "héllo ".as_bytes().to_vec();
        text.extend([b'w'; 300]);
        let expected = vec![
            Ok(Event::Ping(b"p".to_vec())),
            Ok(Event::Text(text)),
            Ok(Event::Text(b"second".to_vec())),
            Ok(Event::Close(Some(1000))),
        ];
        assert_eq!(all(&input), expected);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(
                run(&mut Decoder::new(1000), &[a, b]),
                expected,
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&mut Decoder::new(1000), &bytes), expected);
    }

    #[test]
    fn extended_lengths_are_read() {
        let big = vec![b'a'; 70_000];
        let mut dec = Decoder::new(100_000);
        assert_eq!(
            run(&mut dec, &[&masked(true, TEXT, &big)]),
            [Ok(Event::Text(big.clone()))]
        );
        assert_eq!(
            run(&mut dec, &[&masked(true, TEXT, &big[..200])]),
            [Ok(Event::Text(big[..200].to_vec()))]
        );
    }

    #[test]
    fn unmasked_reserved_and_unknown_frames_are_1002() {
        let plain = frame(true, TEXT, b"hi", None);
        assert_eq!(
            all(&plain),
            [Err(violation(1002, "client frames must be masked"))]
        );
        let mut rsv = masked(true, TEXT, b"hi");
        rsv[0] |= 0x40;
        assert_eq!(code(&all(&rsv)), 1002);
        for op in [0x3, 0x7, 0xB, 0xF] {
            assert_eq!(code(&all(&masked(true, op, b""))), 1002, "opcode {op}");
        }
    }

    #[test]
    fn control_frames_must_be_final_and_short() {
        assert_eq!(code(&all(&masked(false, PING, b"x"))), 1002);
        assert_eq!(code(&all(&masked(true, PING, &[0; 126]))), 1002);
        assert_eq!(code(&all(&masked(true, CLOSE, &[0; 126]))), 1002);
        assert_eq!(
            all(&masked(true, PING, &[7; 125])),
            [Ok(Event::Ping(vec![7; 125]))]
        );
        // A pong is an event of its own (its payload is dropped); a close without a code
        // has none.
        let mut input = masked(true, PONG, b"late");
        input.extend(masked(true, CLOSE, b""));
        assert_eq!(all(&input), [Ok(Event::Pong), Ok(Event::Close(None))]);
    }

    #[test]
    fn continuation_rules_are_enforced() {
        assert_eq!(
            all(&masked(true, CONTINUATION, b"x")),
            [Err(violation(1002, "continuation without a message"))]
        );
        let mut input = masked(false, TEXT, b"a");
        input.extend(masked(true, TEXT, b"b"));
        assert_eq!(
            all(&input),
            [Err(violation(1002, "new message inside a fragmented one"))]
        );
        let mut input = masked(false, BINARY, b"a");
        input.extend(masked(true, TEXT, b"b"));
        assert_eq!(code(&all(&input)), 1002);
    }

    /// A message may come in at most `MAX_FRAGMENTS` frames (empty ones too): one more is a
    /// policy violation, so a flood of empty fragments cannot go around the frame limit.
    #[test]
    fn fragments_of_one_message_are_bounded() {
        let mut input = masked(false, TEXT, b"a");
        for _ in 1..MAX_FRAGMENTS - 1 {
            input.extend(masked(false, CONTINUATION, b""));
        }
        input.extend(masked(true, CONTINUATION, b"b"));
        assert_eq!(all(&input), [Ok(Event::Text(b"ab".to_vec()))]);
        let mut input = masked(false, TEXT, b"a");
        for _ in 1..MAX_FRAGMENTS {
            input.extend(masked(false, CONTINUATION, b""));
        }
        input.extend(masked(true, CONTINUATION, b"b"));
        assert_eq!(
            all(&input),
            [Err(violation(1008, "too many fragments in one message"))]
        );
    }

    #[test]
    fn fragmented_binary_is_one_binary_event() {
        let mut input = masked(false, BINARY, &[1; 10]);
        input.extend(masked(false, CONTINUATION, &[2; 10]));
        input.extend(masked(true, CONTINUATION, &[3; 10]));
        input.extend(masked(true, BINARY, &[4; 3]));
        assert_eq!(all(&input), [Ok(Event::Binary), Ok(Event::Binary)]);
    }

    #[test]
    fn oversize_frames_and_messages_are_1009() {
        // Refused at the header, before any payload arrives.
        let header = &masked(true, TEXT, &[b'x'; 1001])[..8];
        assert_eq!(all(header), [Err(violation(1009, "frame too large"))]);
        assert_eq!(
            all(&masked(true, TEXT, &[b'x'; 1000])),
            [Ok(Event::Text(vec![b'x'; 1000]))]
        );
        let mut input = masked(false, TEXT, &[b'x'; 600]);
        input.extend(masked(true, CONTINUATION, &[b'y'; 401]));
        assert_eq!(all(&input), [Err(violation(1009, "message too large"))]);
        let mut input = masked(false, BINARY, &[0; 600]);
        input.extend(masked(true, CONTINUATION, &[0; 401]));
        assert_eq!(code(&all(&input)), 1009);
        let mut input = masked(false, TEXT, &[b'x'; 600]);
        input.extend(masked(true, CONTINUATION, &[b'y'; 400]));
        assert_eq!(all(&input).len(), 1, "exactly the limit is fine");
        // A 64-bit length with the top bit set is too large, not a wrap-around.
        let mut huge = vec![0x81, 0xFF];
        huge.extend(u64::MAX.to_be_bytes());
        huge.extend(MASK);
        assert_eq!(code(&all(&huge)), 1009);
    }

    #[test]
    fn utf8_is_checked_over_the_whole_message() {
        assert_eq!(
            all(&masked(true, TEXT, &[0xC3])),
            [Err(violation(1007, "invalid UTF-8"))]
        );
        // "é" split between two fragments is valid once reassembled.
        let mut input = masked(false, TEXT, &[b'a', 0xC3]);
        input.extend(masked(true, CONTINUATION, &[0xA9]));
        assert_eq!(all(&input), [Ok(Event::Text("aé".as_bytes().to_vec()))]);
        let mut input = masked(false, TEXT, b"ok");
        input.extend(masked(true, CONTINUATION, &[0xFF]));
        assert_eq!(code(&all(&input)), 1007);
    }

    #[test]
    fn invalid_utf8_fails_as_soon_as_it_arrives() {
        // The message never ends: the invalid fragment alone is enough.
        let mut input = masked(false, TEXT, "κόσμε".as_bytes());
        input.extend(masked(false, CONTINUATION, &[0xF4, 0x90, 0x80, 0x80]));
        assert_eq!(code(&all(&input)), 1007);
        // A sequence cut between fragments that can no longer be valid.
        let mut input = masked(false, TEXT, &[b'a', 0xF4]);
        input.extend(masked(false, CONTINUATION, &[0x90]));
        assert_eq!(code(&all(&input)), 1007);
        // Inside a frame whose payload has not all arrived.
        let whole = masked(true, TEXT, &[b'a', 0xED, 0xA0, 0x80, b'b', b'c']);
        assert_eq!(code(&all(&whole[..whole.len() - 2])), 1007);
        // A sequence cut short by the end of the message.
        let mut input = masked(false, TEXT, b"a");
        input.extend(masked(true, CONTINUATION, &[0xE2, 0x82]));
        assert_eq!(code(&all(&input)), 1007);
    }

    #[test]
    fn close_payloads_are_checked() {
        let close = |p: &[u8]| all(&masked(true, CLOSE, p));
        assert_eq!(close(b""), [Ok(Event::Close(None))]);
        assert_eq!(
            close(&[0x03]),
            [Err(violation(1002, "close payload of one byte"))]
        );
        for c in [1000u16, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
            let mut p = c.to_be_bytes().to_vec();
            p.extend_from_slice("bye ✓".as_bytes());
            assert_eq!(close(&p), [Ok(Event::Close(Some(c)))], "code {c}");
        }
        for c in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                close(&c.to_be_bytes()),
                [Err(violation(1002, "invalid close code"))],
                "code {c}"
            );
        }
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(&[0xCE, 0xBA, 0xED, 0xA0, 0x80]);
        assert_eq!(
            close(&p),
            [Err(violation(1007, "close reason is not UTF-8"))]
        );
    }

    #[test]
    fn an_announced_length_is_not_allocated_before_its_bytes_arrive() {
        let mut dec = Decoder::new(100_000);
        let whole = masked(true, TEXT, &[b'a'; 90_000]);
        assert_eq!(run(&mut dec, &[&whole[..14]]), []);
        let cap = dec.message.as_ref().map(|m| m.buf.capacity());
        assert!(cap.is_some_and(|c| c <= READ_CHUNK), "{cap:?}");
        assert_eq!(
            run(&mut dec, &[&whole[14..]]),
            [Ok(Event::Text(vec![b'a'; 90_000]))]
        );
    }

    #[test]
    fn the_decoder_keeps_no_heap_between_messages() {
        let mut dec = Decoder::new(1000);
        let mut input = masked(false, TEXT, b"abc");
        input.extend(masked(true, PING, b"p"));
        input.extend(masked(true, CONTINUATION, b"def"));
        assert_eq!(run(&mut dec, &[&input]).len(), 2);
        assert!(dec.message.is_none() && dec.frame.is_none());
        assert_eq!(dec.control.capacity(), 0);
        assert_eq!(dec.head_len, 0);
    }

    /// A reader that hands out its bytes in the given pieces, one per `poll_read`.
    struct Pieces(Vec<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if !self.0.is_empty() {
                let piece = self.0.remove(0);
                buf.put_slice(&piece);
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_reader_keeps_bytes_past_an_event_and_frees_them() {
        let mut one = masked(true, TEXT, b"one");
        one.extend(masked(true, TEXT, b"two"));
        let three = masked(true, TEXT, b"three");
        one.extend(&three[..3]);
        let mut io = Pieces(vec![one, three[3..].to_vec()]);
        let mut reader = Reader::new(1000);
        for want in ["one", "two", "three"] {
            match reader.next(&mut io).await {
                Ok(Event::Text(t)) => assert_eq!(t, want.as_bytes()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(reader.pending.capacity(), 0);
        assert!(matches!(reader.next(&mut io).await, Err(ReadError::Eof)));
    }

    #[tokio::test]
    async fn a_violation_ends_the_read() {
        let mut io = Pieces(vec![frame(true, TEXT, b"x", None)]);
        match Reader::new(1000).next(&mut io).await {
            Err(ReadError::Protocol(v)) => assert_eq!(v.code, 1002),
            other => panic!("{other:?}"),
        }
    }
}
