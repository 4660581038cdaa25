//! The web client: static files with no build step, compiled into the binary (or read from
//! `gateway.web_root` when set, for development), served with a strict CSP. `/chatmesh.js` is
//! the JavaScript client package (clients/js), which the page's modules import.

use hyper::header::{HeaderValue, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use hyper::Response;

use super::reply::{self, Body};
use crate::state::AppState;

// `blob:` images: thumbnails and full images of shared files are fetched with the bearer token
// and shown from blob URLs (an `<img src>` cannot send the token).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// (path, content type, contents) of every built-in file.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/api.js"),
    ),
    (
        "/socket.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/socket.js"),
    ),
    (
        "/state.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/state.js"),
    ),
    (
        "/render.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/render.js"),
    ),
    (
        "/dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/dom.js"),
    ),
    (
        "/markdown.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/markdown.js"),
    ),
    (
        "/format.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/format.js"),
    ),
    (
        "/people.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/people.js"),
    ),
    (
        "/notify.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/notify.js"),
    ),
    (
        "/account.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/account.js"),
    ),
    (
        "/layout.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/layout.js"),
    ),
    (
        "/files.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/files.js"),
    ),
    (
        "/uploads.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/uploads.js"),
    ),
    (
        "/attachments.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/attachments.js"),
    ),
    (
        "/push.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/push.js"),
    ),
    // The service worker: at the root, so that its scope (`/`) covers the whole page.
    (
        "/sw.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/sw.js"),
    ),
    (
        "/chatmesh.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../clients/js/chatmesh.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

pub async fn serve(state: &AppState, path: &str) -> Response<Body> {
    let path = if path == "/" { "/index.html" } else { path };
    let Some((name, content_type, builtin)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return reply::error(&chatmesh_protocol::ApiError::not_found("no such file"));
    };
    let body = match &state.cfg.web_root {
        Some(root) => match tokio::fs::read(root.join(name.trim_start_matches('/'))).await {
            Ok(bytes) => bytes,
            Err(_) => builtin.as_bytes().to_vec(),
        },
        None => builtin.as_bytes().to_vec(),
    };
    let mut resp = super::full(200, content_type, body);
    let headers = resp.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}
