//! The few protocol-v1 steps the fault clients need, on a raw WebSocket through HAProxy:
//! connect with `?user=` (HAProxy's hash key), `hello`, `join {since}`. Every wait is bounded.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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
    send(
        &mut ws,
        json!({"type": "hello", "token": token, "ref": "hello"}),
    )
    .await?;
    expect(&mut ws, "welcome").await?;
    send(
        &mut ws,
        json!({"type": "join", "room": room, "since": since, "ref": "join"}),
    )
    .await?;
    expect(&mut ws, "joined").await?;
    Ok(ws)
}

pub async fn send(ws: &mut Ws, frame: Value) -> Result<()> {
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|e| anyhow!("send: {e}"))
}

/// Reads frames until one of type `kind` (an `error` fails); nothing else is expected yet.
async fn expect(ws: &mut Ws, kind: &str) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let frame = tokio::time::timeout_at(deadline, next_json(ws))
            .await
            .map_err(|_| anyhow!("no {kind} within {STEP:?}"))??;
        match frame["type"].as_str() {
            Some(t) if t == kind => return Ok(frame),
            Some("error") => bail!("expected {kind}, got {frame}"),
            _ => continue,
        }
    }
}

/// The next JSON text frame; an error when the connection ends.
pub async fn next_json(ws: &mut Ws) -> Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(c))) => bail!("closed: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("read: {e}"),
            None => bail!("connection ended"),
        }
    }
}
