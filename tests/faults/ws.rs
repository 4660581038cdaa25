//! The few protocol-v1 steps the fault clients need, on a raw WebSocket through HAProxy:
//! connect with `?user=` (HAProxy's hash key), `hello`, `join {since}`. Every wait is bounded.
//! Frames are the protocol crate's: a server frame that does not decode panics (a protocol
//! break), and [`crate::run::Run::finish`] re-raises a traffic task's panic in the test.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{decode, frame, ClientFrame, FrameType, ServerFrame};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one handshake step may take.
const STEP: Duration = Duration::from_secs(5);

/// A logged-in session that joined `room` (with `since` when given).
pub async fn session(entry: &str, user: &str, token: &str, room: &str, since: u64) -> Result<Ws> {
    let url = format!("{}/v1/ws?user={user}", entry.replacen("http", "ws", 1));
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "chatmesh.v1".parse()?);
    let (mut ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req))
        .await
        .map_err(|_| anyhow!("connect timed out"))??;
    send(&mut ws, frame::hello(token), "hello").await?;
    expect(&mut ws, FrameType::Welcome).await?;
    send(&mut ws, frame::join_since(room, since), "join").await?;
    expect(&mut ws, FrameType::Joined).await?;
    Ok(ws)
}

/// Sends `frame` with `ref` `r`.
pub async fn send(ws: &mut Ws, frame: ClientFrame, r: impl Into<Value>) -> Result<()> {
    ws.send(Message::text(frame.encode(&Some(r.into()))))
        .await
        .map_err(|e| anyhow!("send: {e}"))
}

/// Reads frames until one of type `kind` (an `error` fails); nothing else is expected yet.
async fn expect(ws: &mut Ws, kind: FrameType) -> Result<ServerFrame<'static>> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let frame = tokio::time::timeout_at(deadline, next_frame(ws))
            .await
            .map_err(|_| anyhow!("no {kind:?} within {STEP:?}"))??;
        match frame.frame_type() {
            t if t == kind => return Ok(frame),
            FrameType::Error => bail!("expected {kind:?}, got {frame:?}"),
            _ => continue,
        }
    }
}

/// The next server frame; an error when the connection ends.
pub async fn next_frame(ws: &mut Ws) -> Result<ServerFrame<'static>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(decode(&t)),
            Some(Ok(Message::Close(c))) => bail!("closed: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("read: {e}"),
            None => bail!("connection ended"),
        }
    }
}
