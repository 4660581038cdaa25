//! The lingering close: what the read side of a session does after it stopped reading
//! requests, so that a client still writing receives everything said before the close.
//!
//! Closing a socket that still holds unread input makes the kernel answer with a reset, and
//! a reset makes the peer's kernel drop what its application had not read yet — the close
//! frame and the last replies (a flooding client saw 1006 and lost acks of stored sends).
//! So the session first waits for the acks of its in-flight sends (the writer keeps writing
//! meanwhile), then lets the writer send the close frame and half-close, and reads and
//! discards input here until the client's own close frame or EOF, a byte budget or a time
//! budget, before the socket is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::time::Instant;

use super::reader::{Event, ReadError, Reader};

/// Most input discarded after a close; a client sending more is cut off (and may see a
/// reset): it ignores the close anyway.
pub const LINGER_BYTES: u64 = 1 << 20;

/// Why a session stopped reading requests, which decides how it lingers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed it (rate limit, token, drain, slow consumer, hello timeout): the
    /// client may still be writing; read frames until its close frame.
    Server,
    /// A protocol violation: the input can no longer be parsed, only discarded.
    Violation,
    /// The client's close frame came: it sends nothing more; take only what already arrived.
    PeerClose,
    /// EOF or a read error: there is nothing left to read.
    Gone,
}

/// Reads and discards input as `end` calls for: until the client's close frame or EOF,
/// [`LINGER_BYTES`], or `wait` (`End::PeerClose`: only what is already readable).
pub async fn drain<R: AsyncRead + Unpin>(
    io: &mut R,
    reader: &mut Reader,
    end: End,
    wait: Duration,
) {
    let (mut parse, deadline) = match end {
        End::Gone => return,
        End::PeerClose => (true, Instant::now()),
        End::Server => (true, Instant::now() + wait),
        End::Violation => (false, Instant::now() + wait),
    };
    let mut io = Counted { io, read: 0 };
    while io.read <= LINGER_BYTES {
        // With a deadline already passed, `timeout_at` still polls the read once: what is
        // readable now is taken.
        let step = tokio::time::timeout_at(deadline, next(&mut io, reader, parse)).await;
        match step {
            Ok(Step::More) => {}
            Ok(Step::Unparsable) => parse = false,
            Ok(Step::Done) | Err(_) => break,
        }
    }
    metrics::counter!("chatmesh_close_linger_bytes_total").increment(io.read);
}

enum Step {
    More,
    Unparsable,
    Done,
}

async fn next<R: AsyncRead + Unpin>(
    io: &mut Counted<'_, R>,
    reader: &mut Reader,
    parse: bool,
) -> Step {
    if parse {
        return match reader.next(io).await {
            Ok(Event::Close(_)) | Err(ReadError::Eof | ReadError::Io(_)) => Step::Done,
            Ok(_) => Step::More,
            Err(ReadError::Protocol(_)) => Step::Unparsable,
        };
    }
    let mut buf = [0u8; 4096];
    match io.read(&mut buf).await {
        Ok(0) | Err(_) => Step::Done,
        Ok(_) => Step::More,
    }
}

/// Counts the bytes read through it.
struct Counted<'a, R> {
    io: &'a mut R,
    read: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut *self.io).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        out.extend_from_slice(payload);
        out
    }

    /// After a server close, frames are read and dropped until the client's close frame.
    #[tokio::test]
    async fn stops_at_the_clients_close_frame() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let mut input = masked(0x1, b"late");
        input.extend(masked(0x8, &1000u16.to_be_bytes()));
        client.write_all(&input).await.unwrap();
        let mut reader = Reader::new(1000);
        let started = std::time::Instant::now();
        drain(
            &mut server,
            &mut reader,
            End::Server,
            Duration::from_secs(5),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// A silent client is waited for only as long as the budget.
    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_waited_for_until_the_deadline() {
        let (_client, mut server) = tokio::io::duplex(1 << 16);
        let mut reader = Reader::new(1000);
        let started = Instant::now();
        drain(
            &mut server,
            &mut reader,
            End::Server,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    /// After a violation, bytes are discarded unparsed until EOF; after the client's close
    /// frame only what is already there is taken, without waiting.
    #[tokio::test(start_paused = true)]
    async fn violations_discard_and_peer_closes_do_not_wait() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(&[0xFF; 3000]).await.unwrap();
        drop(client);
        let mut reader = Reader::new(1000);
        drain(
            &mut server,
            &mut reader,
            End::Violation,
            Duration::from_secs(2),
        )
        .await;
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "all input was read");

        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(&[0x89, 0x80, 0, 0, 0, 0]).await.unwrap();
        let started = Instant::now();
        drain(
            &mut server,
            &mut Reader::new(1000),
            End::PeerClose,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    /// The byte budget ends a drain whatever the clock says.
    #[tokio::test]
    async fn the_byte_budget_ends_a_drain() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(async move {
            let junk = vec![0u8; 1 << 15];
            while client.write_all(&junk).await.is_ok() {}
        });
        let started = std::time::Instant::now();
        drain(
            &mut server,
            &mut Reader::new(1000),
            End::Violation,
            Duration::from_secs(30),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(server);
        writer.await.unwrap();
    }
}
