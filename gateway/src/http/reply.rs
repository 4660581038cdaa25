//! Response helpers: JSON bodies and `{"error":{"code","message"}}` errors with the status
//! that fits the code.

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Response;
use serde::Serialize;

use chatmesh_protocol::ApiError;

/// The body type of every response.
pub type Body = BoxBody<Bytes, std::convert::Infallible>;

pub fn json<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => super::full(status, "application/json", bytes),
        Err(_) => error(&ApiError::internal()),
    }
}

pub fn error(e: &ApiError) -> Response<Body> {
    metrics::counter!("chatmesh_http_errors_total", "code" => e.code.as_str()).increment(1);
    json(e.code.http_status(), &serde_json::json!({ "error": e }))
}

pub fn text(status: u16, body: &str) -> Response<Body> {
    super::full(status, "text/plain; charset=utf-8", body.to_owned())
}

pub fn empty(status: u16) -> Response<Body> {
    let mut resp = Response::new(Empty::new().boxed());
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::NO_CONTENT);
    resp
}
