//! What every `/v1` handler needs from a request, and how a refusal is answered: the caller
//! named by the bearer token (checked against revocation), a bounded JSON body, names,
//! PATCH fields, and [`Refusal`] (an error, with `Retry-After` for `rate_limited`).

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Request, Response};
use serde::de::DeserializeOwned;

use std::net::IpAddr;

use chatmesh_protocol::frames::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
use chatmesh_protocol::service::Op;
use chatmesh_protocol::{validate_name, ApiError, ErrorCode};

use super::reply::{self, Body};
use crate::auth::Identity;
use crate::state::AppState;
use crate::throttle::Throttled;

/// Largest JSON request body.
const MAX_BODY: usize = 64 * 1024;

pub(super) type Answer = Result<Response<Body>, Refusal>;

/// `Retry-After` of a `rate_limited` answer that did not say how long (the worker's full
/// hashing queue).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A refused request: the error, and for `rate_limited` how long to wait.
pub(super) struct Refusal {
    error: ApiError,
    retry_after: Option<Duration>,
}

impl From<ApiError> for Refusal {
    /// A worker's `rate_limited` that names its wait ([`ApiError::rate_limited_for`]) keeps
    /// it for `Retry-After`.
    fn from(error: ApiError) -> Self {
        Self {
            retry_after: error.retry_after(),
            error,
        }
    }
}

impl From<Throttled> for Refusal {
    fn from(t: Throttled) -> Self {
        Self {
            error: ApiError::new(ErrorCode::RateLimited, "too many requests, retry later"),
            retry_after: Some(t.retry_after),
        }
    }
}

impl Refusal {
    /// `rate_limited` with `message`: retry after `wait`.
    pub(super) fn rate_limited(message: String, wait: Duration) -> Self {
        Self {
            error: ApiError::new(ErrorCode::RateLimited, message),
            retry_after: Some(wait),
        }
    }

    pub(super) fn response(self) -> Response<Body> {
        let mut resp = reply::error(&self.error);
        if self.error.code == ErrorCode::RateLimited {
            let wait = self.retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
            // Whole seconds, rounded up, at least 1.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

/// The user named by the request's bearer token.
pub(super) async fn caller(state: &AppState, req: &Request<Incoming>) -> Result<String, Refusal> {
    caller_identity(state, req).await.map(|i| i.user)
}

/// The identity of the request's bearer token, unless it is invalid, expired or revoked, or
/// its user is over its rate of API calls (`api_per_user_per_minute`: 429).
pub(super) async fn caller_identity(
    state: &AppState,
    req: &Request<Incoming>,
) -> Result<Identity, Refusal> {
    let identity = token_identity(state, req)?;
    state.revocation.check(&identity).await?;
    state.throttle.api_allowed(&identity.user).await?;
    Ok(identity)
}

fn token_identity(state: &AppState, req: &Request<Incoming>) -> Result<Identity, ApiError> {
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
    let token = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "expected a bearer token"))?;
    state
        .tokens
        .verify(token.trim())
        .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "invalid or expired token"))
}

pub(super) async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    use hyper::body::Body as _;
    let too_large = || ApiError::new(ErrorCode::TooLarge, "request body too large");
    // A declared Content-Length over the limit is refused before a byte of it is read.
    if req.body().size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    let deadline = req
        .extensions()
        .get::<super::BodyDeadline>()
        .cloned()
        .unwrap_or_default();
    let collected = deadline
        .run(Limited::new(req.into_body(), MAX_BODY).collect())
        .await?
        .map_err(|_| too_large())?;
    serde_json::from_slice(&collected.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The one field of a PATCH body `{"<field>": string | null}`: `Some(text)` sets, `None`
/// (null) clears. A body without the field, or with any other field, is `bad_request`, so a
/// typo never clears anything.
pub(super) fn patch_field(
    body: serde_json::Value,
    field: &str,
) -> Result<Option<String>, ApiError> {
    let serde_json::Value::Object(mut map) = body else {
        return Err(ApiError::bad_request("expected a JSON object"));
    };
    let value = map
        .remove(field)
        .ok_or_else(|| ApiError::bad_request(format!("expected the field {field}")))?;
    if let Some(other) = map.keys().next() {
        return Err(ApiError::bad_request(format!("unknown field {other}")));
    }
    match value {
        serde_json::Value::String(text) => Ok(Some(text)),
        serde_json::Value::Null => Ok(None),
        _ => Err(ApiError::bad_request(format!(
            "{field} must be a string or null"
        ))),
    }
}

/// The `key=value` pairs of the request's query string (a key without `=` has value "").
/// The `?{cursor}=SEQ&limit=N` of a page of messages (history, a thread): the cursor if
/// given, N 1–100 (default 50); anything else is `bad_request`.
pub(super) fn page_params<B>(
    req: &Request<B>,
    cursor: &str,
) -> Result<(Option<u64>, u32), ApiError> {
    let (mut at, mut limit) = (None, DEFAULT_HISTORY_LIMIT);
    for (k, v) in query_pairs(req) {
        let number = || {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{k} must be a number")))
        };
        if k == cursor {
            at = Some(number()?);
        } else if k == "limit" {
            limit = u32::try_from(number()?).unwrap_or(u32::MAX);
        } else {
            return Err(ApiError::bad_request(format!("unknown parameter {k}")));
        }
    }
    if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 100"));
    }
    Ok((at, limit))
}

/// `after` (the last name of the previous page: a `what`, "room" or "user name") and
/// `limit` (1–`max`, `default` when absent) of a page of names; any other parameter is
/// refused.
pub(super) fn name_page<B>(
    req: &Request<B>,
    what: &'static str,
    default: u32,
    max: u32,
) -> Result<(Option<String>, u32), ApiError> {
    let (mut after, mut limit) = (None, default);
    for (k, v) in query_pairs(req) {
        match k {
            "after" => {
                name(what, v)?;
                after = Some(v.to_owned());
            }
            "limit" => {
                limit = v
                    .parse::<u32>()
                    .map_err(|_| ApiError::bad_request("limit must be a number"))?
            }
            _ => return Err(ApiError::bad_request(format!("unknown parameter {k}"))),
        }
    }
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {max}"
        )));
    }
    Ok((after, limit))
}

pub(super) fn query_pairs<B>(req: &Request<B>) -> impl Iterator<Item = (&str, &str)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

pub(super) fn name(what: &'static str, value: &str) -> Result<(), ApiError> {
    validate_name(what, value).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Asks the worker an op that checks `user`'s password, keeping the login throttle's books
/// for (`ip`, `user`) as a login does: refused while they are locked out; a wrong password
/// (the worker's `unauthorized`) counts as a failed login and is answered 403 `wrong`; an
/// answer that says nothing of the password (a full hashing queue, no worker) gives the
/// attempt back.
pub(super) async fn ask_with_password<O: Op>(
    state: &AppState,
    ip: IpAddr,
    user: &str,
    req: &O::Request,
    wrong: &'static str,
) -> Result<O::Response, Refusal> {
    let _attempt = state.throttle.login_allowed(ip, user).await?;
    match state.services.ask::<O>(user, req).await {
        Ok(answer) => {
            state.throttle.login_succeeded(ip, user).await;
            Ok(answer)
        }
        Err(e) if e.code == ErrorCode::Unauthorized => {
            state.throttle.login_failed(ip, user).await;
            Err(ApiError::forbidden(wrong).into())
        }
        Err(e) => {
            password_queue_full(&e);
            state.throttle.login_unanswered(user).await;
            Err(e.into())
        }
    }
}

/// Counts the worker's refusals of a password request (its hashing queue was full).
pub(super) fn password_queue_full(e: &ApiError) {
    if e.code == ErrorCode::RateLimited {
        metrics::counter!("chatmesh_throttled_total", "what" => "password_queue").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page's cursor is checked as what the page lists: a room id may name its home
    /// region (`us~x`, the last room of a page of a user's rooms or invitations), a user name
    /// may not.
    #[test]
    fn a_cursor_is_checked_as_what_the_page_lists() {
        let req = |q: &str| Request::builder().uri(format!("/x?{q}")).body(()).unwrap();
        let (after, limit) = name_page(&req("after=us~x&limit=5"), "room", 10, 100).unwrap();
        assert_eq!((after.as_deref(), limit), (Some("us~x"), 5));
        assert!(name_page(&req("after=us~x"), "user name", 10, 100).is_err());
        assert!(name_page(&req("after=bad!"), "room", 10, 100).is_err());
        assert!(name_page(&req("limit=101"), "room", 10, 100).is_err());
    }

    /// A worker's refusal that names its wait answers it as `Retry-After`; one that does
    /// not, the default.
    #[test]
    fn a_workers_wait_becomes_retry_after() {
        let named = ApiError::rate_limited_for("too many", Duration::from_secs(90));
        let resp = Refusal::from(named).response();
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(resp.headers()[RETRY_AFTER], "90");
        let plain = ApiError::new(ErrorCode::RateLimited, "busy");
        let resp = Refusal::from(plain).response();
        let default = DEFAULT_RETRY_AFTER.as_secs().max(1).to_string();
        assert_eq!(resp.headers()[RETRY_AFTER], default.as_str());
    }
}
