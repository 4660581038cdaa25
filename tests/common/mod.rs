//! Test support: a real embedded mesh (nats-server child, worker, fjall store, gateway) in a
//! temp dir, an HTTP client, and a protocol v1 WebSocket client ([`Client`]) that speaks the
//! protocol crate's typed frames ([`frame`] builds them, [`acked`], [`page`], ... read them).
// Each test binary uses a different part of this module.
#![allow(dead_code, unused_imports)]

mod client;
mod frames;
pub mod process;
mod proxy;
mod store_writer;

pub use chatmesh_client::Page;
pub use chatmesh_protocol::frames::{ClientFrame, FrameType, ServerFrame};
pub use chatmesh_protocol::message::Message;
pub use chatmesh_protocol::service::RoomListing;
pub use chatmesh_protocol::ErrorCode;
pub use client::{assert_chain, Client, Ended};
pub use frames::{acked, decode, error_code, frame, joined, online, page, replies_to, Acked};
pub use proxy::{FarGateway, Proxy};
pub use store_writer::StoreWriter;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use chatmesh::{Config, Mesh, MeshOptions};
use chatmesh_client::Login;
use chatmesh_protocol::service::{Credentials, RoomList};
use chatmesh_protocol::ApiError;
use serde::Deserialize;
use serde_json::{json, Value};

/// How long a test waits for any one expected event.
pub const WAIT: Duration = Duration::from_secs(15);

/// A config with the rate limits out of the way and cheap password hashing.
pub fn fast_config() -> Config {
    Config::for_tests()
}

/// The tests' `[admin] bootstrap_token`.
pub const ADMIN_TOKEN: &str = "tests-admin-bootstrap-token-0123456789abcdef";

/// `config` whose server admins are `users`, registered with [`Api::server_admin`].
pub fn with_admins(mut config: Config, users: &[&str]) -> Config {
    config.admin.users = users.iter().map(|u| (*u).to_owned()).collect();
    config.admin.bootstrap_token = Some(ADMIN_TOKEN.into());
    config
}

pub async fn start_mesh(dir: &Path, config: Config) -> Result<Mesh> {
    Mesh::start(MeshOptions::local(dir, config)).await
}

/// HTTP calls of protocol v1.
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(mesh: &Mesh) -> Self {
        Self::at(&mesh.url())
    }

    pub fn at(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.parse()?, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// Registers and logs in; returns the token.
    pub async fn user(&self, name: &str) -> Result<String> {
        let creds = credentials(name, "correct horse");
        let (s, v) = self
            .call("POST", "/v1/auth/register", None, Some(creds.clone()))
            .await?;
        if s != 201 && s != 409 {
            bail!("register {name}: {s} {v}");
        }
        let (s, v) = self
            .call("POST", "/v1/auth/login", None, Some(creds))
            .await?;
        if s != 200 {
            bail!("login {name}: {s} {v}");
        }
        Ok(serde_json::from_value::<Login>(v)?.token)
    }

    /// Registers (unless taken) server admin `name`, a name of `[admin] users`, with the
    /// tests' bootstrap token ([`ADMIN_TOKEN`], set by [`with_admins`]) and logs in.
    pub async fn server_admin(&self, name: &str) -> Result<String> {
        let mut creds = Credentials::new(name, "correct horse");
        creds.admin_token = Some(ADMIN_TOKEN.into());
        let (s, v) = self
            .call("POST", "/v1/auth/register", None, Some(json!(creds)))
            .await?;
        if s != 201 && s != 409 {
            bail!("register server admin {name}: {s} {v}");
        }
        self.user(name).await
    }

    /// The value of metric `name` on the mesh's gateway (`/metrics`), summed over its labels
    /// (0 if absent). Process-wide: tests of one binary that read it must not run beside
    /// others that move it.
    pub async fn metric(&self, name: &str) -> Result<f64> {
        let (s, v) = self.call("GET", "/metrics", None, None).await?;
        if s != 200 {
            bail!("/metrics: {s}");
        }
        Ok(v.as_str()
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with([' ', '{']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Polls metric `name` (see [`Api::metric`]) until it is `want`.
    pub async fn metric_reaches(&self, name: &str, want: f64) -> Result<()> {
        self.metric_until(name, &format!("never {want}"), |got| got == want)
            .await
    }

    /// Waits until metric `name` is at least `least`.
    pub async fn metric_at_least(&self, name: &str, least: f64) -> Result<()> {
        self.metric_until(name, &format!("never at least {least}"), |got| got >= least)
            .await
    }

    async fn metric_until(
        &self,
        name: &str,
        never: &str,
        done: impl Fn(f64) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.metric(name).await?;
            if done(got) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{name} is {got}, {never}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST /v1/rooms`. Its body stays JSON: the protocol crate has no type for it
    /// (`service::CreateRoomRequest` is the worker's, with the acting user).
    pub async fn room(&self, token: &str, room: &str, kind: &str) -> Result<()> {
        let (s, v) = self
            .call(
                "POST",
                "/v1/rooms",
                Some(token),
                Some(json!({"room": room, "kind": kind})),
            )
            .await?;
        if s != 201 {
            bail!("create room {room}: {s} {v}");
        }
        Ok(())
    }

    /// `POST /v1/rooms/{room}/members` of `user` as a member, by `token`'s user: added (204).
    pub async fn add(&self, token: &str, room: &str, user: &str) -> Result<()> {
        let (s, v) = self
            .call(
                "POST",
                &format!("/v1/rooms/{room}/members"),
                Some(token),
                Some(json!({"user": user, "role": "member"})),
            )
            .await?;
        if s != 204 {
            bail!("add {user} to {room}: {s} {v}");
        }
        Ok(())
    }
}

/// The body of `GET /v1/rooms/{room}/messages`; a body that is not a page fails the test.
#[track_caller]
pub fn http_page(v: &Value) -> Page {
    Page::deserialize(v).unwrap_or_else(|e| panic!("not a history page ({e}): {v}"))
}

/// The rooms of a `GET /v1/rooms` body, `None` if it is not a room list (an error body).
pub fn http_rooms(v: &Value) -> Option<Vec<RoomListing>> {
    RoomList::deserialize(v).ok().map(|l| l.rooms)
}

/// The code of an HTTP error body (`{"error": {"code", "message"}}`), `None` if `v` is not
/// one.
pub fn http_error(v: &Value) -> Option<ErrorCode> {
    #[derive(Deserialize)]
    struct Body {
        error: ApiError,
    }
    Body::deserialize(v).ok().map(|b| b.error.code)
}

/// The body of `POST /v1/auth/register` and `/v1/auth/login`.
pub fn credentials(username: &str, password: &str) -> Value {
    json!(Credentials::new(username, password))
}

/// 10,000 characters that JSON escapes (control characters, 6 bytes each, quotes and
/// backslashes, 2): about 44 KB once escaped, so the send frame carrying them stays under
/// `max_message_bytes` (64 KiB) while 24 of them are over NATS's 1 MiB payload limit.
pub fn escape_heavy() -> String {
    "\u{1}\u{7}\u{1f}\"\\"
        .chars()
        .cycle()
        .take(10_000)
        .collect()
}

/// Every file under `dir` (none if it cannot be read).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
