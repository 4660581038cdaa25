//! The WebSocket upgrade of `GET /v1/ws`: the connection's slot moves into the session (it
//! was counted at accept; a proxied one also counts its forwarded client), subprotocol echo
//! (fastwebsockets does not echo `Sec-WebSocket-Protocol`, and browsers fail without it),
//! Origin check (it does not check Origin either), optional `Authorization` header auth, and
//! the handshake checks it leaves out (HTTP/1.1, 426 for a wrong version).

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, HOST, ORIGIN, RETRY_AFTER, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION,
};
use hyper::{Request, Response, StatusCode, Version};

use chatmesh_protocol::{ApiError, ErrorCode};

use super::limits::Slot;
use super::peer::client_ip;
use super::reply::{self, Body};
use crate::session::{self, Admission};
use crate::state::AppState;
use crate::throttle::client_key;

/// The subprotocol of protocol v1.
pub const SUBPROTOCOL: &str = "chatmesh.v1";

pub async fn upgrade(state: Arc<AppState>, mut req: Request<Incoming>) -> Response<Body> {
    if let Some(refused) = refuse_handshake(&req) {
        return refused;
    }
    if state.drain.is_cancelled() {
        metrics::counter!("chatmesh_connections_refused_total", "reason" => "draining")
            .increment(1);
        return reply::error(&ApiError::new(
            ErrorCode::Unavailable,
            "gateway is draining",
        ));
    }
    // The slot taken at accept: held by the session, so the connection stays counted; through
    // a trusted proxy, the forwarded client is counted per IP here.
    let slot = req.extensions().get::<Arc<Slot>>().cloned();
    let client_slot = match slot.as_ref().map(|s| s.forwarded(client_ip(&req))) {
        Some(Err(why)) => {
            metrics::counter!("chatmesh_connections_refused_total", "reason" => why.reason())
                .increment(1);
            let mut resp = reply::error(&ApiError::new(
                ErrorCode::RateLimited,
                "too many connections from this address",
            ));
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        Some(Ok(counted)) => counted,
        None => None,
    };
    let offered = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    let refuse = (!origin_allowed(&state, &req)).then_some((1008, "origin not allowed"));
    // A bad Authorization header is refused before the upgrade; no header means hello.
    let identity = match req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => None,
        Some(h) => match h
            .strip_prefix("Bearer ")
            .map(|t| state.tokens.verify(t.trim()))
        {
            Some(Ok(identity)) => match state.revocation.check(&identity).await {
                Ok(()) => Some(identity),
                Err(e) => return reply::error(&e),
            },
            _ => {
                return reply::error(&ApiError::new(
                    ErrorCode::Unauthorized,
                    "invalid or expired token",
                ))
            }
        },
    };
    let (response, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => return reply::error(&ApiError::bad_request(format!("bad upgrade: {e}"))),
    };
    // Counted for its share of the replay slots, unless it is a trusted proxy that named no
    // client (it carries many).
    let client = client_ip(&req);
    let client = (!state.cfg.trusted_proxies.contains(&client)).then(|| client_key(client));
    let admission = Box::new(Admission {
        identity,
        refuse,
        client,
    });
    let state2 = state.clone();
    state.tasks.spawn(async move {
        let _slots = (slot, client_slot);
        match fut.await {
            Ok(ws) => session::run(state2, ws.into_inner(), admission).await,
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    let mut response = response.map(|b| b.map_err(|never| match never {}).boxed());
    if offered {
        response.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    response
}

/// The parts of RFC 6455 4.2.1 fastwebsockets leaves to us: HTTP/1.1 (an HTTP/1.0 request
/// was answered 101, then the connection was dead), the upgrade headers, and the version —
/// a version other than 13 gets 426 and, like a missing one, `Sec-WebSocket-Version: 13`.
/// The answer for a request that fails them.
fn refuse_handshake(req: &Request<Incoming>) -> Option<Response<Body>> {
    if req.version() != Version::HTTP_11 {
        return Some(reply::error(&ApiError::bad_request(
            "WebSocket upgrades need HTTP/1.1",
        )));
    }
    if !fastwebsockets::upgrade::is_upgrade_request(req) {
        return Some(reply::error(&ApiError::bad_request(
            "expected a WebSocket upgrade",
        )));
    }
    let status = match req.headers().get(SEC_WEBSOCKET_VERSION) {
        Some(v) if v.as_bytes() == b"13" => return None,
        Some(_) => StatusCode::UPGRADE_REQUIRED,
        None => StatusCode::BAD_REQUEST,
    };
    let mut resp = reply::error(&ApiError::bad_request(
        "unsupported WebSocket version: use Sec-WebSocket-Version 13",
    ));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    Some(resp)
}

/// Browsers send Origin; other clients usually do not. A browser page may connect when it
/// was served by this host or its origin is configured.
fn origin_allowed(state: &AppState, req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let allowed = &state.cfg.allowed_origins;
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = req
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}
