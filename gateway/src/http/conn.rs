//! One accepted TCP connection: the TLS handshake (bounded in time), hyper's HTTP/1.1 with
//! header and idle deadlines, a deadline for response bodies the client stops reading, the
//! per-request extensions (peer, client IP, slot, body deadline) and HSTS.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, STRICT_TRANSPORT_SECURITY};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::limits::{BodyDeadline, ConnLimits, Slot};
use super::peer::{forwarded_client, ClientIp, Peer};
use super::refuse::Refuser;
use crate::config::GatewayConfig;
use crate::state::AppState;

/// How long a drain or an idle close waits for a response in progress.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What every connection of one listener shares.
pub struct Edge {
    pub limits: Arc<ConnLimits>,
    tls: Option<TlsAcceptor>,
    hsts: Option<HeaderValue>,
    trusted: Arc<[IpAddr]>,
    /// Answers connections refused at accept.
    pub refuser: Refuser,
    handshake_timeout: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
}

impl Edge {
    pub fn from_config(cfg: &GatewayConfig) -> Result<Self, crate::tls::TlsError> {
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
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
            trusted: trusted.into(),
            refuser: Refuser::new(tls.clone(), hsts.as_ref()),
            tls,
            hsts,
            handshake_timeout: Duration::from_millis(cfg.tls_handshake_timeout_ms),
            header_timeout: Duration::from_millis(cfg.header_read_timeout_ms),
            body_timeout: Duration::from_millis(cfg.body_read_timeout_ms),
            idle_timeout: Duration::from_millis(cfg.http_idle_timeout_ms),
            write_timeout: Duration::from_millis(cfg.body_write_timeout_ms),
        })
    }
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
                // The connection counts as busy until the body is sent (a long download is
                // not idle), as long as the client reads it.
                let sending = busy.0.sending();
                let resp = resp.map(|body| {
                    Guarded {
                        body,
                        sending,
                        _busy: busy,
                    }
                    .boxed()
                });
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
    let stalled = activity.stalled(edge.write_timeout);
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
        // Dropped with its response: a graceful close would wait for the body.
        _ = stalled => {
            metrics::counter!("chatmesh_http_timeouts_total", "kind" => "body_write").increment(1);
            tracing::debug!(%peer, "response body not read: connection closed");
        }
    }
}

/// A response body that keeps its request counted as in flight until it is sent, and tells
/// when hyper last asked it for a frame (it asks when its buffer has room, so a client that
/// stops reading stops the asking) and whether it then waits on its own producer. Its size and end are the body's own, so a fixed
/// body still gets a `Content-Length`.
struct Guarded {
    body: super::Body,
    sending: Sending,
    _busy: Busy,
}

impl hyper::body::Body for Guarded {
    type Data = hyper::body::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let frame = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        // Polled: hyper has room for more, the client reads. Pending: the body waits on its
        // own producer (an export's next page), which is not the client's stall.
        self.sending.polled(frame.is_pending());
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Requests in flight on one connection and when the last one ended; response bodies
/// being sent and when one last made progress.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
    sending: AtomicUsize,
    progress: Mutex<Instant>,
    /// The body being sent answered its last poll with `Pending`: it waits on its producer.
    producing: AtomicBool,
}

/// Marks a response body being sent until dropped.
struct Sending(Arc<Activity>);

impl Sending {
    fn polled(&self, pending: bool) {
        *self
            .0
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.producing.store(pending, Ordering::Relaxed);
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::Relaxed);
    }
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
            sending: AtomicUsize::new(0),
            progress: Mutex::new(Instant::now()),
            producing: AtomicBool::new(false),
        }
    }

    /// A response body starts: counted as progress.
    fn sending(self: &Arc<Self>) -> Sending {
        self.sending.fetch_add(1, Ordering::Relaxed);
        let sending = Sending(self.clone());
        sending.polled(false);
        sending
    }

    /// Resolves once a response body is being sent and hyper has not asked it for more for
    /// `timeout` (the client does not read), or the body has waited on its own producer (an
    /// export's next page, an object store) for four times that.
    async fn stalled(&self, timeout: Duration) {
        loop {
            let progress = *self.progress.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let limit = if self.producing.load(Ordering::Relaxed) {
                timeout * 4
            } else {
                timeout
            };
            if self.sending.load(Ordering::Relaxed) > 0 && now >= progress + limit {
                return;
            }
            tokio::time::sleep_until(progress.max(now) + timeout / 4).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `stalled` resolves within `within` (paused clock: time only moves by sleeps).
    async fn stalls_within(activity: &Activity, timeout: Duration, within: Duration) -> bool {
        tokio::time::timeout(within, activity.stalled(timeout))
            .await
            .is_ok()
    }

    /// A body the client stops reading is a stall after the timeout; one waiting on its own
    /// producer gets four times as long; no body in flight is never a stall.
    #[tokio::test(start_paused = true)]
    async fn a_body_stalls_on_its_client_after_the_timeout_and_on_its_producer_after_four() {
        let t = Duration::from_secs(30);
        let activity = Arc::new(Activity::new());
        assert!(!stalls_within(&activity, t, t * 10).await, "nothing sent");

        let sending = activity.sending();
        sending.polled(false);
        assert!(!stalls_within(&activity, t, t / 2).await);
        assert!(
            stalls_within(&activity, t, t).await,
            "the client reads nothing"
        );

        sending.polled(true);
        assert!(
            !stalls_within(&activity, t, t * 3).await,
            "the producer is slow"
        );
        assert!(
            stalls_within(&activity, t, t * 2).await,
            "the producer is stuck"
        );
        drop(sending);
    }
}
