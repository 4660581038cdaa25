//! Test support: a real embedded mesh (nats-server child, worker, fjall store, gateway) in a
//! temp dir, an HTTP client, and a WebSocket client written against PROTOCOL.md (not against
//! the gateway's code) — tokio-tungstenite, an independent implementation.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chatmesh::{Config, Mesh, MeshOptions};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one expected event.
pub const WAIT: Duration = Duration::from_secs(15);

/// A config with send limits high enough for bulk tests.
pub fn fast_config() -> Config {
    let mut c = Config::default();
    c.gateway.limits.sends_per_second = 100_000;
    c.gateway.limits.send_burst = 100_000;
    c.gateway.frames_per_second = 100_000;
    // Tests register many accounts; production-strength hashing would dominate their time.
    c.worker.argon2_memory_kib = 64;
    c.worker.argon2_iterations = 1;
    // Tests log in and register many accounts from 127.0.0.1 and create rooms quickly.
    c.gateway.login_per_ip_per_minute = 100_000;
    c.gateway.login_ip_burst = 100_000;
    c.gateway.register_per_ip_per_hour = 1_000_000;
    c.gateway.register_ip_burst = 100_000;
    c.gateway.rooms_per_minute = 100_000;
    c.gateway.rooms_burst = 100_000;
    c
}

pub async fn start_mesh(dir: &Path, config: Config) -> Result<Mesh> {
    Mesh::start(MeshOptions {
        nats_tls: None,
        nats_threads: None,
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        nats_port: None,
        config,
    })
    .await
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
        let creds = json!({"username": name, "password": "correct horse"});
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
        Ok(v["token"].as_str().context("token")?.to_owned())
    }

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
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol v1 client.
pub struct Client {
    ws: Ws,
    next_ref: u64,
    /// Frames read while waiting for something else, oldest first.
    pub backlog: std::collections::VecDeque<Value>,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(u16),
    Dropped,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Self> {
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "chatmesh.v1".parse()?);
        let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
        let proto = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if proto != Some("chatmesh.v1") {
            bail!("subprotocol not echoed: {proto:?}");
        }
        Ok(Self {
            ws,
            next_ref: 1,
            backlog: Default::default(),
        })
    }

    /// Connects and authenticates with `hello`.
    pub async fn login(url: &str, token: &str) -> Result<Self> {
        let mut c = Self::connect(url).await?;
        let welcome = c.request(json!({"type": "hello", "token": token})).await?;
        if welcome["type"] != "welcome" {
            bail!("expected welcome, got {welcome}");
        }
        Ok(c)
    }

    pub async fn send_raw(&mut self, msg: WsMessage) -> Result<()> {
        self.ws.send(msg).await.map_err(|e| anyhow!("send: {e}"))
    }

    pub async fn send_json(&mut self, v: Value) -> Result<()> {
        self.send_raw(WsMessage::text(v.to_string())).await
    }

    /// Sends `v` with a fresh `ref` and returns the frame that answers it.
    pub async fn request(&mut self, mut v: Value) -> Result<Value> {
        let r = self.next_ref;
        self.next_ref += 1;
        v["ref"] = json!(r);
        self.send_json(v).await?;
        self.wait_for(|f| f["ref"] == json!(r)).await
    }

    /// The next frame from the server (backlog first).
    pub async fn next(&mut self) -> Result<Value> {
        if let Some(v) = self.backlog.pop_front() {
            return Ok(v);
        }
        self.read().await
    }

    async fn read(&mut self) -> Result<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .map_err(|_| anyhow!("timed out waiting for a frame"))?
                .ok_or_else(|| anyhow!("connection ended"))??;
            match msg {
                WsMessage::Text(t) => return Ok(serde_json::from_str(&t)?),
                WsMessage::Close(c) => bail!("closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Reads until a frame matches; others are kept in the backlog.
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Ok(self.backlog.remove(i).unwrap_or_default());
        }
        loop {
            let v = self.read().await?;
            if pred(&v) {
                return Ok(v);
            }
            self.backlog.push_back(v);
        }
    }

    /// The next `n` `message` frames of `room`, in arrival order.
    pub async fn messages(&mut self, room: &str, n: usize) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let v = self
                .wait_for(|f| f["type"] == "message" && f["room"] == room)
                .await?;
            out.push(v);
        }
        Ok(out)
    }

    /// Waits for the server to end the connection; returns the close code.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(WsMessage::Close(Some(frame))))) => {
                    return Ended::Closed(u16::from(frame.code))
                }
                Ok(Some(Ok(WsMessage::Close(None)))) => return Ended::Closed(1005),
                Ok(Some(Ok(WsMessage::Text(t)))) => {
                    if let Ok(v) = serde_json::from_str(&t) {
                        self.backlog.push_back(v);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return Ended::Dropped,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

/// Asserts that `msgs` form an unbroken chain after `start`: each `prev` is the seq before.
pub fn assert_chain(msgs: &[Value], start: u64) -> u64 {
    let mut last = start;
    for m in msgs {
        let seq = m["seq"].as_u64().expect("seq");
        let prev = m["prev"].as_u64().expect("prev");
        assert_eq!(prev, last, "broken prev chain at seq {seq}: {m}");
        assert!(seq > last, "seq did not increase: {m}");
        last = seq;
    }
    last
}
