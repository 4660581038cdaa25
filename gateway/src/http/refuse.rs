//! The short answer a connection refused at accept gets (503 at `max_connections`, 429 over
//! `max_connections_per_ip`, over TLS when it is on) before it is closed. Answering costs a
//! task and a descriptor for up to two seconds, so refusals being answered are capped too;
//! beyond the cap a refused connection is closed unanswered.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::limits::Refusal;
use crate::state::AppState;

/// How long a refused connection may take to receive its answer (TLS handshake included).
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// How long a refused connection's request head is waited for before the answer.
const REFUSAL_HEAD_WAIT: Duration = Duration::from_millis(300);
/// Refused connections being answered at once.
const MAX_REFUSING: usize = 256;

/// Answers refused connections of one listener.
pub struct Refuser {
    tls: Option<TlsAcceptor>,
    /// Extra header lines of every answer (HSTS under TLS), each ending in CRLF.
    extra: String,
    answering: Arc<Semaphore>,
}

impl Refuser {
    pub fn new(tls: Option<TlsAcceptor>, hsts: Option<&HeaderValue>) -> Self {
        let extra = match hsts.and_then(|h| h.to_str().ok()) {
            Some(hsts) => format!("strict-transport-security: {hsts}\r\n"),
            None => String::new(),
        };
        Self {
            tls,
            extra,
            answering: Arc::new(Semaphore::new(MAX_REFUSING)),
        }
    }

    /// Counts the refusal and answers it in a task of its own, then closes the connection.
    pub fn refuse(&self, state: &AppState, stream: TcpStream, why: Refusal) {
        metrics::counter!("chatmesh_connections_refused_total", "reason" => why.reason())
            .increment(1);
        let Ok(permit) = self.answering.clone().try_acquire_owned() else {
            return; // dropped: closed unanswered
        };
        let tls = self.tls.clone();
        let response = why.response(&self.extra);
        state.tasks.spawn(async move {
            let _permit = permit;
            let answered = async {
                match tls {
                    None => answer(stream, &response).await,
                    Some(acceptor) => answer(acceptor.accept(stream).await?, &response).await,
                }
            };
            let _ = tokio::time::timeout(REFUSAL_TIME, answered).await;
        });
    }
}

/// Reads the request head (briefly: HTTP clients may take an answer that arrives before
/// their request is written as a broken connection), writes the refusal, then reads what the
/// client still sends until it closes, so the answer is not lost to a reset (a close with
/// unread input sends RST).
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    response: &str,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read_head = async {
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_HEAD_WAIT, read_head).await;
    s.write_all(response.as_bytes()).await?;
    s.shutdown().await?;
    while s.read(&mut chunk).await? > 0 {}
    Ok(())
}
