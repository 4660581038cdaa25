//! A protocol v1 client written against PROTOCOL.md (not against the gateway's code) over
//! tokio-tungstenite, an independent WebSocket implementation. It writes the protocol's
//! [`ClientFrame`]s and reads every frame the server sends as a [`ServerFrame`]: a frame
//! that does not decode fails the test (see [`decode`]).

use std::collections::VecDeque;

use anyhow::{anyhow, bail, Result};
use chatmesh_protocol::frames::{ClientFrame, FrameType, ServerFrame};
use chatmesh_protocol::message::Message;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::frames::{acked, decode, frame, joined, Acked};
use super::WAIT;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol v1 client.
pub struct Client {
    ws: Ws,
    next_ref: u64,
    /// Frames read while waiting for something else, oldest first.
    pub backlog: VecDeque<ServerFrame<'static>>,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(u16),
    Dropped,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_as(url, None).await
    }

    /// Connects saying, as a proxy would, that it carries `forwarded_for`'s connection
    /// (`X-Forwarded-For`; believed only from a trusted proxy).
    async fn connect_as(url: &str, forwarded_for: Option<&str>) -> Result<Self> {
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "chatmesh.v1".parse()?);
        if let Some(client) = forwarded_for {
            req.headers_mut().insert("X-Forwarded-For", client.parse()?);
        }
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
        Self::login_as(url, token, None).await
    }

    /// Connects for `forwarded_for` (see [`Self::connect_as`]) and authenticates.
    pub async fn login_from(url: &str, token: &str, forwarded_for: &str) -> Result<Self> {
        Self::login_as(url, token, Some(forwarded_for)).await
    }

    async fn login_as(url: &str, token: &str, forwarded_for: Option<&str>) -> Result<Self> {
        let mut c = Self::connect_as(url, forwarded_for).await?;
        let welcome = c.request(frame::hello(token)).await?;
        if !matches!(welcome, ServerFrame::Welcome { .. }) {
            bail!("expected welcome, got {welcome:?}");
        }
        Ok(c)
    }

    pub async fn send_raw(&mut self, msg: WsMessage) -> Result<()> {
        self.ws.send(msg).await.map_err(|e| anyhow!("send: {e}"))
    }

    /// Sends any JSON: only for frames that are not protocol frames on purpose (malformed,
    /// unknown types or fields, wrong JSON types). Protocol frames go through [`Self::send`].
    pub async fn send_json(&mut self, v: Value) -> Result<()> {
        self.send_raw(WsMessage::text(v.to_string())).await
    }

    /// Sends `frame` without a `ref`.
    pub async fn send(&mut self, frame: ClientFrame) -> Result<()> {
        self.send_raw(WsMessage::text(frame.encode(&None))).await
    }

    /// Sends `frame` with `ref` `r` (chosen by the test, not by [`Self::request`]).
    pub async fn send_with_ref(&mut self, frame: ClientFrame, r: impl Into<Value>) -> Result<()> {
        self.send_raw(WsMessage::text(frame.encode(&Some(r.into()))))
            .await
    }

    /// Sends `frame` with a fresh `ref` and returns the frame that answers it.
    pub async fn request(&mut self, frame: ClientFrame) -> Result<ServerFrame<'static>> {
        let r = self.fresh_ref();
        self.send_with_ref(frame, r).await?;
        self.reply(r).await
    }

    /// [`Self::request`] for JSON that is not a protocol frame on purpose (see
    /// [`Self::send_json`]); `v` must be an object, its `ref` is set here.
    pub async fn request_json(&mut self, mut v: Value) -> Result<ServerFrame<'static>> {
        let r = self.fresh_ref();
        v["ref"] = json!(r);
        self.send_json(v).await?;
        self.reply(r).await
    }

    fn fresh_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref - 1
    }

    async fn reply(&mut self, r: u64) -> Result<ServerFrame<'static>> {
        let r = json!(r);
        self.wait_for(|f| f.reply_to() == Some(&r)).await
    }

    /// Joins `room`; the room's `last_seq` (anything but `joined` fails).
    pub async fn join(&mut self, room: &str) -> Result<u64> {
        let f = self.request(frame::join(room)).await?;
        Ok(joined(&f))
    }

    /// Sends one message and waits for its `ack` (anything else fails).
    pub async fn post(&mut self, room: &str, id: &str, body: &str) -> Result<Acked> {
        let f = self.request(frame::send(room, id, body)).await?;
        Ok(acked(&f))
    }

    /// Sends `bodies` to `room` (pipelined) and returns the acked seqs in order, each with
    /// the index of its body.
    pub async fn fill(&mut self, room: &str, bodies: &[String]) -> Result<Vec<(u64, usize)>> {
        for (i, body) in bodies.iter().enumerate() {
            let id = format!("f{i}");
            self.send_with_ref(frame::send(room, &id, body), id.clone())
                .await?;
        }
        let mut done = Vec::new();
        while done.len() < bodies.len() {
            let f = self
                .wait_for(|f| matches!(f.frame_type(), FrameType::Ack | FrameType::Error))
                .await?;
            if f.frame_type() == FrameType::Error {
                bail!("send refused: {f:?}");
            }
            let ack = acked(&f);
            let i: usize = ack.id[1..].parse()?;
            done.push((ack.seq, i));
        }
        done.sort();
        Ok(done)
    }

    /// The next frame from the server (backlog first).
    pub async fn next(&mut self) -> Result<ServerFrame<'static>> {
        if let Some(f) = self.backlog.pop_front() {
            return Ok(f);
        }
        self.read().await
    }

    async fn read(&mut self) -> Result<ServerFrame<'static>> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .map_err(|_| anyhow!("timed out waiting for a frame"))?
                .ok_or_else(|| anyhow!("connection ended"))??;
            match msg {
                WsMessage::Text(t) => return Ok(decode(&t)),
                WsMessage::Close(c) => bail!("closed: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Reads until a frame matches; others are kept in the backlog.
    pub async fn wait_for(
        &mut self,
        pred: impl Fn(&ServerFrame) -> bool,
    ) -> Result<ServerFrame<'static>> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            if let Some(f) = self.backlog.remove(i) {
                return Ok(f);
            }
        }
        loop {
            let f = self.read().await?;
            if pred(&f) {
                return Ok(f);
            }
            self.backlog.push_back(f);
        }
    }

    /// The next `n` `message` frames of `room`, in arrival order.
    pub async fn messages(&mut self, room: &str, n: usize) -> Result<Vec<Message>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let f = self
                .wait_for(|f| matches!(f, ServerFrame::Message(m) if m.room == room))
                .await?;
            if let ServerFrame::Message(m) = f {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Waits for the server to end the connection; returns the close code. Frames read
    /// meanwhile go to the backlog.
    pub async fn ended(&mut self) -> Ended {
        self.read_until_closed(None, true).await
    }

    /// Reads one message per `pause` (a slow reader) until the server ends the connection;
    /// returns the close code. What it reads is dropped.
    pub async fn read_slowly(&mut self, pause: std::time::Duration) -> Ended {
        self.read_until_closed(Some(pause), false).await
    }

    /// Reads until the server ends the connection (after `pause` before each read), keeping
    /// text frames in the backlog if `keep`; the close code.
    async fn read_until_closed(&mut self, pause: Option<std::time::Duration>, keep: bool) -> Ended {
        loop {
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(WsMessage::Close(Some(frame))))) => {
                    return Ended::Closed(u16::from(frame.code))
                }
                Ok(Some(Ok(WsMessage::Close(None)))) => return Ended::Closed(1005),
                Ok(Some(Ok(WsMessage::Text(t)))) if keep => self.backlog.push_back(decode(&t)),
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
pub fn assert_chain(msgs: &[Message], start: u64) -> u64 {
    let mut last = start;
    for m in msgs {
        assert_eq!(m.prev, last, "broken prev chain at seq {}: {m:?}", m.seq);
        assert!(m.seq > last, "seq did not increase: {m:?}");
        last = m.seq;
    }
    last
}
