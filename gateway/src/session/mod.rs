//! One WebSocket session: a reader (this task) that parses and answers client frames, and a
//! writer task that owns the socket's write half. They share only the bounded outbound
//! queue and the session's [`link::SessionLink`].
//!
//! fastwebsockets' `read_frame` is not cancel-safe, so it is never raced against anything
//! but the end of the whole session.

mod handler;
pub mod link;
mod replay;
pub mod wire;
pub mod writer;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fastwebsockets::{OpCode, WebSocketError, WebSocketRead};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, ReadHalf};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::auth::Identity;
use crate::state::AppState;
use handler::Session;
use link::{Out, SessionLink};
use writer::Writer;

type Io = TokioIo<Upgraded>;

/// What the upgrade decided before the session starts.
#[derive(Debug)]
pub struct Admission {
    /// Identity from a valid `Authorization` header on the upgrade request.
    pub identity: Option<Identity>,
    /// Close at once with this code (e.g. 1008 for a refused origin).
    pub refuse: Option<(u16, &'static str)>,
}

/// Runs a session on an upgraded connection until it ends.
pub async fn run(state: Arc<AppState>, io: Io, admission: Admission) {
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

async fn drive(state: Arc<AppState>, io: Io, admission: Admission, id: u64) {
    let (read_half, write_half) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel(state.cfg.limits.outbound_queue);
    let link = Arc::new(SessionLink::new(id, tx, state.drain.child_token()));
    let (mut ws, _) = fastwebsockets::after_handshake_split(
        read_half,
        tokio::io::sink(),
        fastwebsockets::Role::Server,
    );
    ws.set_auto_close(false);
    ws.set_auto_pong(false);
    // fastwebsockets refuses a frame whose length is >= this.
    ws.set_max_message_size(state.cfg.limits.max_message_bytes + 1);

    let writer = Writer::new(state.cfg.limits.outbound_queue);
    let mut writer = tokio::spawn(writer.run(write_half, rx, link.clone()).in_current_span());
    if let Some((code, reason)) = admission.refuse {
        link.close(code, reason);
    } else {
        let mut session = Session::new(state.clone(), link.clone(), admission.identity).await;
        tokio::select! {
            _ = read_loop(&mut ws, &mut session) => {}
            _ = link.killed().cancelled() => {}
        }
        session.finish();
    }
    // Give the writer time to send its close frame, then drop everything. Unless a reason
    // was set already, a drain says 1001 and anything else is a normal close.
    if state.drain.is_cancelled() {
        link.close(1001, "server going away");
    } else {
        link.close(1000, "");
    }
    // A writer blocked on a slow peer finishes within its own write timeout.
    if tokio::time::timeout(Duration::from_secs(35), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    ws: &mut WebSocketRead<ReadHalf<R>>,
    session: &mut Session,
) {
    let max = session.state.cfg.limits.max_message_bytes;
    let mut partial: Option<Vec<u8>> = None;
    let hello_deadline = tokio::time::Instant::now()
        + Duration::from_secs(session.state.cfg.limits.hello_timeout_secs);
    // Auto close/pong are off, so fastwebsockets never has a frame of its own to send.
    let mut no_send = |_| async { Ok::<_, WebSocketError>(()) };
    loop {
        let next = ws.read_frame(&mut no_send);
        let frame = if session.authenticated() {
            next.await
        } else {
            match tokio::time::timeout_at(hello_deadline, next).await {
                Ok(frame) => frame,
                Err(_) => {
                    session.link.close(4001, "hello not received in time");
                    return;
                }
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(WebSocketError::FrameTooLarge) => {
                session.link.close(1009, "frame too large");
                return;
            }
            Err(WebSocketError::InvalidUTF8) => {
                session.link.close(1007, "invalid UTF-8");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "read ended");
                return;
            }
        };
        match frame.opcode {
            OpCode::Text if frame.fin && partial.is_none() => session.on_text(&frame.payload).await,
            OpCode::Text | OpCode::Binary if partial.is_some() => {
                session
                    .link
                    .close(1002, "new message inside a fragmented one");
                return;
            }
            OpCode::Text => partial = Some(frame.payload.to_vec()),
            OpCode::Continuation => {
                let Some(buf) = partial.as_mut() else {
                    session.link.close(1002, "continuation without a message");
                    return;
                };
                if buf.len() + frame.payload.len() > max {
                    session.link.close(1009, "message too large");
                    return;
                }
                buf.extend_from_slice(&frame.payload);
                if frame.fin {
                    let text = partial.take().unwrap_or_default();
                    if std::str::from_utf8(&text).is_err() {
                        session.link.close(1007, "invalid UTF-8");
                        return;
                    }
                    session.on_text(&text).await;
                }
            }
            OpCode::Binary => session.on_binary().await,
            OpCode::Ping => {
                session.link.offer(Out::Pong(frame.payload.to_vec().into()));
            }
            OpCode::Pong => {}
            OpCode::Close => {
                let code = match frame.payload.get(..2) {
                    Some(b) => u16::from_be_bytes([b[0], b[1]]),
                    None => 1000,
                };
                let code = if matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999) {
                    code
                } else {
                    1000
                };
                session.link.close(code, "");
                return;
            }
        }
        if session.link.killed().is_cancelled() {
            return;
        }
    }
}
