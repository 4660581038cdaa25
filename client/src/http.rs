//! The HTTP half of protocol v1: accounts, rooms, DMs, history pages, edits, threads and
//! shared files.

use chatmesh_protocol::files::FileInfo;
use chatmesh_protocol::message::Message;
use chatmesh_protocol::search::SearchResults;
use chatmesh_protocol::service::{EditHistory, Role, ThreadPage};
pub use chatmesh_protocol::service::{RoomKind, RoomListing as RoomInfo};
use chatmesh_protocol::ApiError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

use crate::error::{Error, Result};

/// Most pages of the room list [`Http::rooms`] reads (a page holds up to 1,000 rooms by
/// default).
pub const MAX_ROOM_PAGES: usize = 100;

/// Longest `Retry-After` of a 429 that a call waits out by itself, by default (see
/// [`Http::with_rate_limit_wait`]).
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

/// Times one call is sent again after a 429 before its error is returned.
pub const RATE_LIMIT_RETRIES: u32 = 3;

/// A login: the token and when it expires (seconds since the Unix epoch).
#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    pub token: String,
    pub expires_at: u64,
    /// The device token to bring back at the next login of this account on this device
    /// ([`Http::login_known`]; extension, absent from servers without it).
    #[serde(default)]
    pub device: Option<String>,
}

/// A page of history, oldest first; `more` when older messages exist.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Page {
    pub messages: Vec<Message>,
    pub more: bool,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ApiError,
}

/// The HTTP API of one gateway (`base`: `http://host:port`).
///
/// A call refused with 429 `rate_limited` whose `Retry-After` is at most the rate-limit
/// wait ([`RATE_LIMIT_WAIT`] unless set) is sent again after that long, up to
/// [`RATE_LIMIT_RETRIES`] times: the server refuses such a call before doing anything, so
/// any call may be repeated. A longer wait (a login lockout) returns the error at once.
#[derive(Debug, Clone)]
pub struct Http {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    rate_limit_wait: Duration,
}

impl Http {
    pub fn new(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Url(base.to_owned()));
        }
        crate::tls();
        Ok(Self {
            base: base.to_owned(),
            http: reqwest::Client::new(),
            token: None,
            rate_limit_wait: RATE_LIMIT_WAIT,
        })
    }

    /// The same API, waiting out a 429 whose `Retry-After` is at most `max` (zero: never,
    /// every 429 is returned as [`Error::Api`] `rate_limited`).
    pub fn with_rate_limit_wait(&self, max: Duration) -> Self {
        Self {
            rate_limit_wait: max,
            ..self.clone()
        }
    }

    /// The same API, calling with `token`.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /v1/auth/register`.
    pub async fn register(&self, username: &str, password: &str) -> Result<()> {
        let body = json!({"username": username, "password": password});
        self.call::<serde_json::Value>(reqwest::Method::POST, "/v1/auth/register", Some(body))
            .await
            .map(drop)
    }

    /// `POST /v1/auth/register` of a server admin's name (one of `[admin] users` without an
    /// account yet), with the deployment's admin bootstrap token (extension).
    pub async fn register_admin(
        &self,
        username: &str,
        password: &str,
        admin_token: &str,
    ) -> Result<()> {
        let body = json!({"username": username, "password": password, "admin_token": admin_token});
        self.call::<serde_json::Value>(reqwest::Method::POST, "/v1/auth/register", Some(body))
            .await
            .map(drop)
    }

    /// `POST /v1/auth/login`.
    pub async fn login(&self, username: &str, password: &str) -> Result<Login> {
        let body = json!({"username": username, "password": password});
        self.call(reqwest::Method::POST, "/v1/auth/login", Some(body))
            .await
    }

    /// `POST /v1/auth/login` of a known device: with `device`, the [`Login::device`] of an
    /// earlier login of this account here, which lockouts set off by guessing from
    /// elsewhere do not hold (docs/SECURITY.md).
    pub async fn login_known(&self, username: &str, password: &str, device: &str) -> Result<Login> {
        let body = json!({"username": username, "password": password, "device": device});
        self.call(reqwest::Method::POST, "/v1/auth/login", Some(body))
            .await
    }

    /// `POST /v1/rooms`.
    pub async fn create_room(&self, room: &str, kind: RoomKind) -> Result<()> {
        let body = json!({"room": room, "kind": kind});
        self.call::<serde_json::Value>(reqwest::Method::POST, "/v1/rooms", Some(body))
            .await
            .map(drop)
    }

    /// `POST /v1/rooms` with a home region (extension: regions, docs/PROTOCOL.md): `"here"`
    /// for the region of the gateway this client talks to, or a region's name. Returns the
    /// room's id: `<region>~<room>`, or `room` itself when a one-region gateway is asked for
    /// `"here"`. Use that id from then on.
    pub async fn create_room_in(&self, room: &str, kind: RoomKind, home: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Created {
            room: String,
        }
        let body = json!({"room": room, "kind": kind, "home": home});
        let created: Created = self
            .call(reqwest::Method::POST, "/v1/rooms", Some(body))
            .await?;
        Ok(created.room)
    }

    /// `GET /v1/rooms`: the caller's rooms first, then public rooms it is not in; every page
    /// of them (see [`Http::rooms_page`]; at most [`MAX_ROOM_PAGES`] are read).
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_ROOM_PAGES {
            let (rooms, more) = self.rooms_page(after.as_deref()).await?;
            after = rooms.last().map(|r| r.room.clone());
            all.extend(rooms);
            if !more || after.is_none() {
                break;
            }
        }
        Ok(all)
    }

    /// One page of `GET /v1/rooms` (extension): the rooms, and whether more of the caller's
    /// rooms follow (then ask again `after` the last one). The public rooms the caller is not
    /// in come on the last page.
    pub async fn rooms_page(&self, after: Option<&str>) -> Result<(Vec<RoomInfo>, bool)> {
        #[derive(Deserialize)]
        struct Rooms {
            rooms: Vec<RoomInfo>,
            #[serde(default)]
            more: bool,
        }
        let path = match after {
            // Room names need no escaping (protocol: names and ids).
            Some(room) => format!("/v1/rooms?after={room}"),
            None => "/v1/rooms".to_owned(),
        };
        let r: Rooms = self.call(reqwest::Method::GET, &path, None).await?;
        Ok((r.rooms, r.more))
    }

    /// `POST /v1/rooms/{room}/members`: adds `user` (owner or admin only).
    pub async fn add_member(&self, room: &str, user: &str, admin: bool) -> Result<()> {
        let role = if admin { Role::Admin } else { Role::Member };
        let path = format!("/v1/rooms/{room}/members");
        let body = json!({"user": user, "role": role});
        self.call_empty(reqwest::Method::POST, &path, Some(body))
            .await
    }

    /// `DELETE /v1/rooms/{room}/members/{user}`: removes `user` (owner or admin, or the user
    /// itself).
    pub async fn remove_member(&self, room: &str, user: &str) -> Result<()> {
        let path = format!("/v1/rooms/{room}/members/{user}");
        self.call_empty(reqwest::Method::DELETE, &path, None).await
    }

    /// `POST /v1/dm/{user}`: the DM room with `user`.
    pub async fn dm(&self, user: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Dm {
            room: String,
        }
        let path = format!("/v1/dm/{user}");
        let dm: Dm = self.call(reqwest::Method::POST, &path, None).await?;
        Ok(dm.room)
    }

    /// `DELETE /v1/dm/{user}` (extension): closes the caller's DM with `user`: the caller's
    /// room list marks it `closed` until a newer message arrives there or [`Http::dm`] opens
    /// it again.
    pub async fn close_dm(&self, user: &str) -> Result<()> {
        let path = format!("/v1/dm/{user}");
        self.call_empty(reqwest::Method::DELETE, &path, None).await
    }

    /// `GET /v1/rooms/{room}/messages`: up to `limit` messages before `before`.
    pub async fn history(&self, room: &str, before: Option<u64>, limit: u32) -> Result<Page> {
        let mut path = format!("/v1/rooms/{room}/messages?limit={limit}");
        if let Some(before) = before {
            path.push_str(&format!("&before={before}"));
        }
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// `GET /v1/rooms/{room}/messages/{seq}/edits`: every version of message `seq`, oldest
    /// first (the original, then each edit).
    pub async fn edits(&self, room: &str, seq: u64) -> Result<EditHistory> {
        let path = format!("/v1/rooms/{room}/messages/{seq}/edits");
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// `GET /v1/search`: the newest messages of the caller's rooms that match `query`
    /// (newest first; the next page: `before` = the answer's `next_before`, which a page
    /// may carry with no hit at all). Found once the worker's index committed them, about a
    /// second after their ack.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        let mut params = vec![("q", query.q.clone())];
        let mut opt = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                params.push((k, v));
            }
        };
        opt("room", query.room.clone());
        opt("from", query.from.clone());
        opt("since", query.since.map(|v| v.to_string()));
        opt("until", query.until.map(|v| v.to_string()));
        opt("before", query.before.map(|v| v.to_string()));
        opt("limit", query.limit.map(|v| v.to_string()));
        let url = format!("{}/v1/search", self.base);
        let url =
            reqwest::Url::parse_with_params(&url, &params).map_err(|_| Error::Url(url.clone()))?;
        let res = self
            .execute(|| self.authorized(self.http.get(url.clone())))
            .await?;
        crate::download::json(res).await
    }

    /// `GET /v1/rooms/{room}/messages/{root}/thread?after=&limit=`: the root, up to `limit`
    /// replies above `after` (oldest first), whether more follow, and the caller's unread
    /// replies.
    pub async fn thread(
        &self,
        room: &str,
        root: u64,
        after: Option<u64>,
        limit: u32,
    ) -> Result<ThreadPage> {
        let mut path = format!("/v1/rooms/{room}/messages/{root}/thread?limit={limit}");
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// `POST /v1/rooms/{room}/messages/{root}/thread/read`: the caller has read the thread
    /// of `root` up to reply `seq` (the cursor only moves forward).
    pub async fn read_thread(&self, room: &str, root: u64, seq: u64) -> Result<()> {
        let path = format!("/v1/rooms/{room}/messages/{root}/thread/read");
        self.call_empty(reqwest::Method::POST, &path, Some(json!({ "seq": seq })))
            .await
    }

    /// `POST /v1/rooms/{room}/files?name=...`: shares `bytes` in `room` (attach the answer's
    /// `id` to a message with [`crate::Client::send_files`]).
    pub async fn upload(&self, room: &str, name: &str, bytes: Vec<u8>) -> Result<FileInfo> {
        let url = format!("{}/v1/rooms/{room}/files", self.base);
        let url = reqwest::Url::parse_with_params(&url, &[("name", name)])
            .map_err(|_| Error::Url(url.clone()))?;
        // Shared, not copied, by each attempt.
        let bytes = bytes::Bytes::from(bytes);
        let res = self
            .execute(|| self.authorized(self.http.post(url.clone()).body(bytes.clone())))
            .await?;
        crate::download::json(res).await
    }

    pub(crate) async fn call_empty(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<()> {
        self.send(method, path, body).await.map(drop)
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        crate::download::json(self.send(method, path, body).await?).await
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        self.execute(|| {
            let req = self.authorized(self.http.request(method.clone(), &url));
            match &body {
                Some(body) => req.json(body),
                None => req,
            }
        })
        .await
    }

    /// `req` with the token, if there is one.
    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends the request `build` makes, again after a 429 with a short enough
    /// `Retry-After` (see [`Http`]); a success, or the error of the last answer.
    async fn execute(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut retries = 0;
        loop {
            let res = build().send().await?;
            if res.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
                && retries < RATE_LIMIT_RETRIES
                && !self.rate_limit_wait.is_zero()
            {
                if let Some(wait) = retry_after(&res).filter(|w| *w <= self.rate_limit_wait) {
                    retries += 1;
                    tracing::debug!(?wait, retries, "rate limited; sending the call again");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            return checked(res).await;
        }
    }
}

/// A 429's `Retry-After` in seconds (the form chatmesh sends), if it has one.
fn retry_after(res: &reqwest::Response) -> Option<Duration> {
    let value = res.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs = value.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(secs))
}

/// `res` if it is a success, else its error.
async fn checked(res: reqwest::Response) -> Result<reqwest::Response> {
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status();
    let body = crate::download::read_within(res, crate::download::MAX_ERROR_BYTES).await;
    match body.map(|b| serde_json::from_slice::<ErrorBody>(&b)) {
        Ok(Ok(body)) => Err(Error::Api(body.error)),
        _ => Err(Error::Protocol(format!(
            "HTTP {status} without an error body"
        ))),
    }
}

/// What [`Http::search`] looks for: `q` (all its words), optionally only in `room`, from
/// `from`, sent in `[since, until)` (ms since the Unix epoch), older than seq `before`, at
/// most `limit` (1–50, 20 when unset) hits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    pub q: String,
    pub room: Option<String>,
    pub from: Option<String>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub before: Option<u64>,
    pub limit: Option<usize>,
}

impl SearchQuery {
    /// A search for `q` in all the caller's rooms.
    pub fn new(q: impl Into<String>) -> Self {
        Self {
            q: q.into(),
            ..Self::default()
        }
    }
}
