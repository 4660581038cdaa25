//! The writer of a session (it runs in the session's task): the only code that writes to
//! its socket. It drains the outbound queue into one buffer and writes it with one call,
//! keeps per-room delivery state so each `(room, seq)` goes out at most once and in order,
//! holds a room's live frames while that room's backlog is replayed, and ends with the close
//! frame and a half-close once the session settled (see `linger`).

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::rooms::RoomMap;
use super::wire::{put_close, put_frame, PONG, TEXT};
use crate::link::{Out, SessionLink};

/// Most bytes gathered into one write.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// A peer that accepts no bytes for this long is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct RoomCursor {
    gen: u64,
    last: u64,
    held: Option<Vec<(u64, Bytes)>>,
}

/// Per-session writer state.
#[derive(Debug)]
pub struct Writer {
    rooms: RoomMap<RoomCursor>,
    held_limit: usize,
}

/// Why the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A close frame with this code was sent.
    Closed(u16),
    /// The socket failed or timed out.
    Broken,
}

impl Writer {
    pub fn new(held_limit: usize) -> Self {
        Self {
            rooms: RoomMap::default(),
            held_limit,
        }
    }

    /// Runs until the session is killed, its token expires (4001) or the socket breaks. A
    /// broken socket (or a peer that takes nothing for `WRITE_TIMEOUT`) ends the session:
    /// its reader must not go on taking requests nobody can be answered for.
    pub async fn run<W: AsyncWrite + Unpin>(self, io: W, link: &SessionLink) -> Stop {
        let stop = self.write_until_closed(io, link).await;
        link.close_queue();
        if stop == Stop::Broken {
            // Never sent (1006 means no close frame); the first reason given wins.
            link.close(1006, "the socket broke or took nothing for 30 s");
        }
        stop
    }

    async fn write_until_closed<W: AsyncWrite + Unpin>(
        mut self,
        mut io: W,
        link: &SessionLink,
    ) -> Stop {
        let mut expires_at = link.expires_at();
        let expiry = tokio::time::sleep_until(expiry_deadline(expires_at));
        tokio::pin!(expiry);
        let mut buf = Vec::new();
        loop {
            // Every close, settle and new expiry also wakes the writer (`SessionLink::close`,
            // `settle`, `set_expiry`; a drain closes through the reader), so the wait below
            // watches one `Notify` and the timer: a wake-up per delivered frame takes no other
            // lock. A closing session is written to until it settled (the acks of its sends
            // in flight are queued), then gets its close frame.
            if link.close_due() {
                break;
            }
            if link.expires_at() != expires_at {
                expires_at = link.expires_at();
                expiry.as_mut().reset(expiry_deadline(expires_at));
            }
            let Some(first) = link.try_recv() else {
                tokio::select! {
                    biased;
                    _ = link.wake() => {}
                    _ = &mut expiry => {
                        if expires_at != 0 && crate::auth::now_secs() >= expires_at {
                            link.close(4001, "token expired");
                        } else {
                            expiry.as_mut().reset(expiry_deadline(expires_at));
                        }
                    }
                }
                continue;
            };
            let mut overflow = self.apply(first, &mut buf);
            while !overflow && buf.len() < MAX_BATCH_BYTES {
                match link.try_recv() {
                    Some(out) => overflow = self.apply(out, &mut buf),
                    None => break,
                }
            }
            if overflow {
                link.close(1013, "slow consumer: reconnect and resume");
            }
            if !buf.is_empty() {
                if write(&mut io, &buf).await.is_err() {
                    return Stop::Broken;
                }
                // Idle sessions keep no write buffer.
                buf = Vec::new();
            }
            link.written();
            if overflow {
                break;
            }
        }
        let (code, reason) = link.close_reason().unwrap_or((1001, "server going away"));
        // Frames queued before the close (e.g. the `error` that explains it) go out first;
        // a slow consumer gets its close at once.
        if code != 1013 {
            while let Some(out) = link.try_recv() {
                if self.apply(out, &mut buf) {
                    break;
                }
            }
        }
        put_close(&mut buf, code, reason);
        if write(&mut io, &buf).await.is_err() {
            return Stop::Broken;
        }
        link.written();
        let _ = tokio::time::timeout(Duration::from_secs(1), io.shutdown()).await;
        Stop::Closed(code)
    }

    /// Applies one queued item; true if the session must close (held frames overflowed).
    fn apply(&mut self, out: Out, buf: &mut Vec<u8>) -> bool {
        match out {
            Out::Frame(frame) => put_frame(buf, TEXT, &frame),
            Out::Pong(payload) => put_frame(buf, PONG, &payload),
            Out::Track {
                room,
                gen,
                last,
                replay,
            } => {
                let held = replay.then(Vec::new);
                self.rooms.insert(room, RoomCursor { gen, last, held });
            }
            Out::Untrack { room, gen } => {
                if self.rooms.get(&room).is_some_and(|c| c.gen == gen) {
                    self.rooms.remove(&room);
                }
            }
            Out::Live {
                room,
                gen,
                seq,
                frame,
            } => {
                let Some(c) = self.rooms.get_mut(&room).filter(|c| c.gen == gen) else {
                    return false;
                };
                match &mut c.held {
                    Some(held) => {
                        held.push((seq, frame));
                        if held.len() > self.held_limit {
                            return true;
                        }
                    }
                    None => deliver(c, seq, &frame, buf),
                }
            }
            Out::Replay {
                room,
                gen,
                seq,
                frame,
            } => {
                if let Some(c) = self.rooms.get_mut(&room).filter(|c| c.gen == gen) {
                    deliver(c, seq, &frame, buf);
                }
            }
            Out::ReplayDone { room, gen } => {
                if let Some(c) = self.rooms.get_mut(&room).filter(|c| c.gen == gen) {
                    for (seq, frame) in c.held.take().unwrap_or_default() {
                        deliver(c, seq, &frame, buf);
                    }
                }
            }
        }
        false
    }
}

/// When a token expiring at `expires_at` runs out (far away before authentication).
fn expiry_deadline(expires_at: u64) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match expires_at {
        0 => now + Duration::from_secs(365 * 24 * 3600),
        at => now + Duration::from_secs(at.saturating_sub(crate::auth::now_secs())),
    }
}

/// Writes a message frame unless the session already has it: seqs only go up per room.
fn deliver(c: &mut RoomCursor, seq: u64, frame: &[u8], buf: &mut Vec<u8>) {
    if seq > c.last {
        put_frame(buf, TEXT, frame);
        c.last = seq;
    }
}

async fn write<W: AsyncWrite + Unpin>(io: &mut W, buf: &[u8]) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, async {
        io.write_all(buf).await?;
        io.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn live(room: &Arc<str>, gen: u64, seq: u64) -> Out {
        Out::Live {
            room: room.clone(),
            gen,
            seq,
            frame: Bytes::from(format!("m{seq}")),
        }
    }

    fn texts(buf: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < buf.len() {
            let len = buf[i + 1] as usize;
            out.push(String::from_utf8(buf[i + 2..i + 2 + len].to_vec()).unwrap());
            i += 2 + len;
        }
        out
    }

    /// A peer that takes no bytes for `WRITE_TIMEOUT` ends the whole session, not only its
    /// writer: the reader (which also watches the kill) stops taking requests, so the
    /// session leaves its rooms, and a token that expires later cannot go on sending.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_nothing_ends_the_session() {
        let link = SessionLink::new(1, 16, tokio_util::sync::CancellationToken::new());
        let (io, _peer) = tokio::io::duplex(64);
        assert!(link.offer(Out::Frame(Bytes::from(vec![b'x'; 1024]))));
        let stop = Writer::new(100).run(io, &link).await;
        assert_eq!(stop, Stop::Broken);
        assert!(link.killed().is_cancelled(), "the reader is told");
        assert!(!link.offer(Out::Frame(Bytes::from_static(b"y"))));
    }

    /// Replay and held live frames meet without a gap or a duplicate at the seam.
    #[test]
    fn replay_seam_is_exact() {
        let mut w = Writer::new(100);
        let room: Arc<str> = Arc::from("r");
        let mut buf = Vec::new();
        w.apply(
            Out::Track {
                room: room.clone(),
                gen: 1,
                last: 2,
                replay: true,
            },
            &mut buf,
        );
        w.apply(live(&room, 1, 5), &mut buf);
        w.apply(live(&room, 1, 6), &mut buf);
        assert!(buf.is_empty(), "live frames are held during replay");
        for seq in [3, 4, 5] {
            w.apply(
                Out::Replay {
                    room: room.clone(),
                    gen: 1,
                    seq,
                    frame: Bytes::from(format!("m{seq}")),
                },
                &mut buf,
            );
        }
        w.apply(
            Out::ReplayDone {
                room: room.clone(),
                gen: 1,
            },
            &mut buf,
        );
        w.apply(live(&room, 1, 7), &mut buf);
        w.apply(live(&room, 1, 7), &mut buf);
        assert_eq!(texts(&buf), ["m3", "m4", "m5", "m6", "m7"]);
    }

    /// Frames of an old join generation or an untracked room are dropped.
    #[test]
    fn stale_generations_are_dropped() {
        let mut w = Writer::new(100);
        let room: Arc<str> = Arc::from("r");
        let mut buf = Vec::new();
        w.apply(live(&room, 1, 1), &mut buf);
        w.apply(
            Out::Track {
                room: room.clone(),
                gen: 2,
                last: 0,
                replay: false,
            },
            &mut buf,
        );
        w.apply(live(&room, 1, 2), &mut buf);
        w.apply(live(&room, 2, 3), &mut buf);
        assert_eq!(texts(&buf), ["m3"]);
    }

    /// Too many held frames close the session instead of growing without bound.
    #[test]
    fn held_frames_are_bounded() {
        let mut w = Writer::new(2);
        let room: Arc<str> = Arc::from("r");
        let mut buf = Vec::new();
        w.apply(
            Out::Track {
                room: room.clone(),
                gen: 1,
                last: 0,
                replay: true,
            },
            &mut buf,
        );
        assert!(!w.apply(live(&room, 1, 1), &mut buf));
        assert!(!w.apply(live(&room, 1, 2), &mut buf));
        assert!(w.apply(live(&room, 1, 3), &mut buf));
    }
}
