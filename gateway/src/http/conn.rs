//! One accepted TCP connection: the TLS handshake (bounded in time), hyper's HTTP/1.1 with
//! header and idle deadlines, the per-request extensions (peer, client IP, slot, body
//! deadline), HSTS; and the short answer a refused connection gets before it is closed.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, STRICT_TRANSPORT_SECURITY};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::limits::{BodyDeadline, ConnLimits, Refusal, Slot};
use super::peer::{forwarded_client, ClientIp, Peer};
use crate::config::GatewayConfig;
use crate::state::AppState;

/// How long a drain or an idle close waits for a response in progress.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a refused connection may take to receive its answer.
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// How long a refused connection's request head is waited for before the answer.
const REFUSAL_HEAD_WAIT: Duration = Duration::from_millis(300);
/// Refused connections being answered at once; beyond it they are closed unanswered.
const MAX_REFUSING: usize = 256;

/// What every connection of one listener shares.
pub struct Edge {
    pub limits: Arc<ConnLimits>,
    tls: Option<TlsAcceptor>,
    hsts: Option<HeaderValue>,
    trusted: Arc<[IpAddr]>,
    refusing: Arc<Semaphore>,
    handshake_timeout: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
    idle_timeout: Duration,
}

impl Edge {
    pub fn from_config(cfg: &GatewayConfig) -> Result<Self, super::tls::TlsError> {
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(super::tls::acceptor(cert, key)?),
            _ => None,
        };
        let hsts = (tls.is_some() && cfg.hsts_max_age_secs > 0)
            .then(|| format!("max-age={}", cfg.hsts_max_age_secs))
            .and_then(|v| HeaderValue::from_str(&v).ok());
        let trusted: Vec<IpAddr> = cfg
            .trusted_proxies
            .iter()
            .map(|ip| ip.to_canonical())
            .collect();
        Ok(Self {
            limits: ConnLimits::new(
                cfg.max_connections,
                cfg.max_connections_per_ip,
                trusted.clone(),
            ),
            tls,
            hsts,
            trusted: trusted.into(),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            handshake_timeout: Duration::from_millis(cfg.tls_handshake_timeout_ms),
            header_timeout: Duration::from_millis(cfg.header_read_timeout_ms),
            body_timeout: Duration::from_millis(cfg.body_read_timeout_ms),
            idle_timeout: Duration::from_millis(cfg.http_idle_timeout_ms),
        })
    }

    /// Answers a refused connection (503 or 429, over TLS when it is on) in a task of its
    /// own, bounded in number and time, then closes it.
    pub fn refuse(&self, state: &AppState, stream: TcpStream, why: Refusal) {
        metrics::counter!("chatmesh_connections_refused_total", "reason" => why.reason())
            .increment(1);
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else {
            return; // dropped: closed unanswered
        };
        let tls = self.tls.clone();
        let response = match self.hsts.as_ref().and_then(|h| h.to_str().ok()) {
            Some(hsts) => why.response(&format!("strict-transport-security: {hsts}\r\n")),
            None => why.response(""),
        };
        state.tasks.spawn(async move {
            let _permit = permit;
            let answer = async {
                match tls {
                    None => answer(stream, &response).await,
                    Some(acceptor) => answer(acceptor.accept(stream).await?, &response).await,
                }
            };
            let _ = tokio::time::timeout(REFUSAL_TIME, answer).await;
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

/// Serves one admitted connection until it ends, idles out, or the gateway drains.
pub async fn run(
    state: Arc<AppState>,
    edge: Arc<Edge>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
) {
    let slot = Arc::new(slot);
    match &edge.tls {
        None => serve_http(state, edge.clone(), stream, peer, slot).await,
        Some(acceptor) => {
            match tokio::time::timeout(edge.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_http(state, edge.clone(), tls, peer, slot).await,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    metrics::counter!("chatmesh_tls_handshake_failures_total", "reason" => "error")
                        .increment(1);
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    metrics::counter!("chatmesh_tls_handshake_failures_total", "reason" => "timeout")
                        .increment(1);
                }
            }
        }
    }
}

async fn serve_http<I>(
    state: Arc<AppState>,
    edge: Arc<Edge>,
    io: I,
    peer: SocketAddr,
    slot: Arc<Slot>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let svc = {
        let (state, edge, activity) = (state.clone(), edge.clone(), activity.clone());
        service_fn(move |mut req: Request<Incoming>| {
            let busy = activity.begin();
            let deadline = BodyDeadline::new(edge.body_timeout);
            let client = forwarded_client(peer.ip(), req.headers(), &edge.trusted);
            let ext = req.extensions_mut();
            ext.insert(Peer(peer));
            ext.insert(ClientIp(client));
            ext.insert(slot.clone());
            ext.insert(deadline.clone());
            let (state, hsts) = (state.clone(), edge.hsts.clone());
            async move {
                let mut resp = super::route(state, req).await?;
                if deadline.expired() {
                    *resp.status_mut() = StatusCode::REQUEST_TIMEOUT;
                    resp.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                if let Some(hsts) = hsts {
                    resp.headers_mut().insert(STRICT_TRANSPORT_SECURITY, hsts);
                }
                drop(busy);
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.header_timeout)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let idle = activity.idled_out(edge.idle_timeout);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r {
            if e.is_timeout() {
                metrics::counter!("chatmesh_http_timeouts_total", "kind" => "header").increment(1);
            }
            tracing::debug!(%peer, error = %e, "http connection ended");
        },
        _ = state.drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        }
        _ = idle => {
            metrics::counter!("chatmesh_http_timeouts_total", "kind" => "idle").increment(1);
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        }
    }
}

/// Requests in flight on one connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

/// Marks a request in flight until dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `idle`.
    async fn idled_out(&self, idle: Duration) {
        loop {
            let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
            let (now, busy) = (Instant::now(), self.in_flight.load(Ordering::Relaxed) > 0);
            if !busy && now >= last + idle {
                return;
            }
            // While a request is in flight, look again a quarter period later.
            let wake = if busy { now + idle / 4 } else { last + idle };
            tokio::time::sleep_until(wake).await;
        }
    }
}
