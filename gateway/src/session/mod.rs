//! One WebSocket session, one task: a reader that parses and answers client frames, and
//! beside it a writer that owns the socket's write half. They share only the bounded
//! outbound queue and the session's [`crate::link::SessionLink`].
//!
//! The socket is read by [`reader::Reader`], which keeps no buffer while the session is
//! idle; request handling is boxed so that only a session busy with a request pays for it.
//! A session ends with a lingering close ([`linger`]): replies to what the client said
//! before the close, then the close frame, then input is drained before the socket drops.

mod acks;
mod changes;
mod handler;
mod linger;
mod mls;
pub mod reader;
mod replay;
mod replays;
mod rooms;
pub mod wire;
pub mod writer;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncRead;
use tracing::Instrument;

use crate::auth::Identity;
use crate::link::SessionLink;
use crate::state::AppState;
use handler::Session;
use linger::End;
use reader::{Event, ReadError, Reader};
use writer::Writer;

type Io = TokioIo<Upgraded>;

/// What the upgrade decided before the session starts. Boxed while the session runs: it
/// lives in every session's task future, which must stay small.
#[derive(Debug)]
pub struct Admission {
    /// Identity from a valid `Authorization` header on the upgrade request.
    pub identity: Option<Identity>,
    /// Close at once with this code (e.g. 1008 for a refused origin).
    pub refuse: Option<(u16, &'static str)>,
    /// The client's address as counted for shares of the gateway (an IPv6 client by its
    /// /64); `None` for a trusted proxy that named no client.
    pub client: Option<std::net::IpAddr>,
}

/// Runs a session on an upgraded connection until it ends.
pub async fn run(state: Arc<AppState>, io: Io, admission: Box<Admission>) {
    let id = state.next_session.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("session", id, user = tracing::field::Empty);
    state.sessions.fetch_add(1, Ordering::Relaxed);
    metrics::gauge!("chatmesh_sessions").increment(1.0);
    drive(state.clone(), io, admission, id)
        .instrument(span)
        .await;
    state.sessions.fetch_sub(1, Ordering::Relaxed);
    metrics::gauge!("chatmesh_sessions").decrement(1.0);
}

async fn drive(state: Arc<AppState>, io: Io, admission: Box<Admission>, id: u64) {
    let (mut read_half, write_half) = tokio::io::split(io);
    let kill = state.drain.child_token();
    let share = admission
        .client
        .map(|ip| state.reply_shares.hold(ip, id, kill.clone()));
    let link =
        Arc::new(SessionLink::new(id, state.cfg.limits.outbound_queue, kill).with_address(share));
    // Reader and writer run side by side in this one task (a second task per session
    // costs its own allocation); requests waiting for room in the queue wait on the writer.
    let write = Writer::new(state.cfg.limits.outbound_queue).run(write_half, &link);
    let read = async {
        let mut reader = Reader::new(state.cfg.limits.max_message_bytes);
        let Admission {
            identity,
            refuse,
            client,
        } = *admission;
        let end = if let Some((code, reason)) = refuse {
            link.close(code, reason);
            End::Server
        } else {
            let mut session =
                Box::pin(Session::new(state.clone(), link.clone(), identity, client)).await;
            let end = read_loop(&mut read_half, &mut reader, &mut session).await;
            session.finish();
            close_reason(&state, &link);
            // The acks of sends in flight go out before the close frame (a slow consumer
            // gets its close at once: nothing more fits).
            if !link.close_due() {
                Box::pin(session.settle()).await;
            }
            end
        };
        close_reason(&state, &link);
        link.settle();
        let wait = Duration::from_millis(state.cfg.close_linger_ms);
        Box::pin(linger::drain(&mut read_half, &mut reader, end, wait)).await;
    };
    tokio::join!(read, write);
}

/// Unless a reason was set already, a drain says 1001, an address closed for holding the most
/// unread replies 1013, and anything else is a normal close.
fn close_reason(state: &AppState, link: &SessionLink) {
    if link.address_evicted() {
        link.close(
            1013,
            "too many unread replies on this gateway: read them sooner",
        );
        // What it held goes now, not once its socket has taken it.
        link.close_queue();
    } else if state.drain.is_cancelled() {
        link.close(1001, "server going away");
    } else {
        link.close(1000, "");
    }
}

/// Reads and answers requests until the session closes, the client closes or is gone, or
/// breaks the protocol. A request being answered is finished even if the session is closed
/// meanwhile (a send is published and its ack queued), so only reads are cut short.
async fn read_loop<R: AsyncRead + Unpin>(
    io: &mut R,
    reader: &mut Reader,
    session: &mut Session,
) -> End {
    let hello_deadline = tokio::time::Instant::now()
        + Duration::from_secs(session.state.cfg.limits.hello_timeout_secs);
    loop {
        let authenticated = session.authenticated();
        let (link, pending) = (&session.link, &mut session.acks);
        // While it waits for the client the session also finishes its sends' acks.
        let next = async {
            loop {
                tokio::select! {
                    event = reader.next(io) => return Some(event),
                    _ = link.killed().cancelled() => return None,
                    () = acks::progress(pending) => {}
                }
            }
        };
        let event = if authenticated {
            next.await
        } else {
            // Boxed: only the first read of a session has a deadline.
            match Box::pin(tokio::time::timeout_at(hello_deadline, next)).await {
                Ok(event) => event,
                Err(_) => {
                    session.link.close(4001, "hello not received in time");
                    return End::Server;
                }
            }
        };
        let event = match event {
            None => return End::Server,
            Some(Ok(event)) => event,
            Some(Err(ReadError::Protocol(v))) => {
                session.link.close(v.code, v.reason);
                return End::Violation;
            }
            Some(Err(ReadError::Io(e))) => {
                tracing::debug!(error = %e, "read failed");
                return End::Gone;
            }
            Some(Err(ReadError::Eof)) => return End::Gone,
        };
        // Requests are boxed: their futures are large and live only while one runs, so an
        // idle session's task stays small.
        match event {
            Event::Text(text) => Box::pin(session.on_text(&text)).await,
            Event::Binary => Box::pin(session.on_binary()).await,
            // Counted like a ping (a flood of unsolicited pongs is closed with 4008).
            Event::Pong => {
                session.on_ping();
            }
            Event::Ping(payload) => {
                if session.on_ping() {
                    session.link.pong(payload.into());
                }
            }
            Event::Close(code) => {
                // The decoder let only codes a peer may send through: echo them (an empty
                // close has none to echo, and 1005 may not be sent).
                session.link.close(code.unwrap_or(1000), "");
                return End::PeerClose;
            }
        }
        if session.link.killed().is_cancelled() {
            return End::Server;
        }
    }
}

#[cfg(test)]
mod tests {
    /// The size of the future an async fn with these argument types returns.
    fn future_size<A, B, C, D, F>(_: impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn future_size3<A, B, C, F>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle session holds its task's future: keep it small (requests and the hello
    /// deadline are boxed, and so is the admission). Measured: 1,536 B with the admission
    /// boxed (1,576 B before, 1,656 B with the client address added unboxed); 1,560 B with
    /// the writer (528 B) inside it; 1,624 B
    /// while the writer also polled the cancellation token and an expiry `Notify`; before
    /// the hand reader it was 6,720 B, plus a writer task of its own (592 B future).
    #[test]
    fn session_futures_stay_small() {
        let drive = future_size(super::drive);
        let writer = future_size3(super::Writer::run::<tokio::io::WriteHalf<super::Io>>);
        eprintln!("session future {drive} B, of which writer {writer} B");
        assert!(drive <= 1600, "session future is {drive} B");
        assert!(writer <= 560, "writer future is {writer} B");
    }
}
