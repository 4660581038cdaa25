//! The gateway's HTTP server: accept loop with connection caps (global and per IP), routing,
//! and a graceful drain that also covers upgraded WebSockets (hyper's own shutdown does not).
//! Each connection's own life (TLS, deadlines) is in `conn`; the caps are in `limits`.

mod account;
mod admin;
mod api;
mod blocks;
mod conn;
mod e2ee;
mod files;
mod invitations;
mod limits;
pub mod metrics_listener;
mod moderation;
mod peer;
mod push;
mod refuse;
mod reply;
mod request;
mod room_info;
mod search;
mod static_files;
mod threads;
mod ws;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use tokio::net::TcpListener;

use crate::state::AppState;
pub use limits::{BodyDeadline, Slot};
pub use peer::{client_ip, forwarded_client, ClientIp, Peer};
pub use reply::Body;

/// Serves HTTP and WebSockets on `listener` until `shutdown` resolves, then drains: stops
/// accepting, closes every session with 1001 and waits for them (bounded by the config).
///
/// Every accepted connection takes a slot (`max_connections`, `max_connections_per_ip`)
/// before anything else happens on it; without one it is answered 503/429 and closed, so a
/// gateway at its cap keeps serving the connections it has.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let edge = match conn::Edge::from_config(&state.cfg) {
        Ok(edge) => Arc::new(edge),
        Err(e) => {
            // problems() loads the same files at start, so only a file changed since gets here.
            tracing::error!(error = %e, "cannot serve: TLS certificate or key unusable");
            drain(&state).await;
            return;
        }
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors or similar: keep serving what we have.
                    tracing::warn!(error = %e, "accept failed");
                    metrics::counter!("chatmesh_accept_errors_total").increment(1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match edge.limits.admit(peer.ip()) {
            Ok(slot) => {
                let _ = stream.set_nodelay(true);
                let task = conn::run(state.clone(), edge.clone(), stream, peer, slot);
                state.tasks.spawn(task);
            }
            Err(why) => edge.refuser.refuse(&state, stream, why),
        }
    }
    drain(&state).await;
}

async fn drain(state: &AppState) {
    tracing::info!("draining: closing sessions with 1001");
    state.drain.cancel();
    state.fanout.shutdown();
    state.tasks.close();
    let deadline = Duration::from_millis(state.cfg.drain_timeout_ms);
    if tokio::time::timeout(deadline, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed with connections still open");
    }
}

pub(crate) async fn route(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    // HEAD is GET without the body (hyper leaves the body out), except on the API and the
    // WebSocket endpoint.
    let method = match (method, segments.first()) {
        (Method::HEAD, Some(first)) if *first != "v1" => Method::GET,
        (method, _) => method,
    };
    let response = match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => match state.background.ended() {
            None => reply::text(200, "ok"),
            // Restart: a listener or periodic pass the gateway needs has stopped.
            Some(task) => reply::text(503, &format!("background task stopped: {task}")),
        },
        (&Method::GET, ["readyz"]) => api::readyz(&state).await,
        (&Method::GET, ["metrics"]) => match &state.metrics {
            Some(handle) => {
                record_gauges(&state);
                reply::text(200, &handle.render())
            }
            None => reply::text(404, "metrics are not served here"),
        },
        (&Method::GET, ["v1", "ws"]) => ws::upgrade(state.clone(), req).await,
        (_, ["v1", ..]) => api::handle(&state, req, &segments[1..]).await,
        (&Method::GET, _) => static_files::serve(&state, &path).await,
        _ => reply::error(&chatmesh_protocol::ApiError::not_found("no such endpoint")),
    };
    Ok(response)
}

/// A response with a fixed body.
pub fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(http_body_util::BodyExt::boxed(Full::new(body.into())));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Updates the gauges read at scrape time: the process's figures ([`crate::procstat`]) and
/// the reply bytes queued for all WebSocket sessions (`chatmesh_reply_bytes_queued`, what
/// `gateway.reply_bytes_total` bounds).
pub(crate) fn record_gauges(state: &AppState) {
    crate::procstat::record();
    metrics::gauge!("chatmesh_reply_bytes_queued").set(state.reply_shares.queued() as f64);
}
