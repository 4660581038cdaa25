//! One chatmesh WebSocket client connection: TCP from a chosen loopback source address,
//! upgrade with subprotocol `chatmesh.v1`, `hello` → `welcome`, `join` → `joined`. Every
//! step is bounded in time.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context as _};
use chatmesh_protocol::frames::{ClientFrame, FrameType, FrameView};
use futures::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// Deadline of each handshake step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Host and port of a `http://` or `ws://` URL.
pub fn socket_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .context("URL without scheme")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport
        .parse()
        .with_context(|| format!("{hostport:?} is not an IP address and port"))
}

/// TCP connect from `source` (port chosen by the kernel), then the WebSocket upgrade.
pub async fn open(url: &str, source: Option<IpAddr>, subprotocol: &str) -> anyhow::Result<Ws> {
    let addr = socket_addr(url)?;
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = tokio::time::timeout(STEP_TIMEOUT, socket.connect(addr))
        .await
        .context("TCP connect timed out")??;
    tcp.set_nodelay(true)?;
    let mut request = url.into_client_request()?;
    if !subprotocol.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(subprotocol)?,
        );
    }
    let (ws, _) = tokio::time::timeout(STEP_TIMEOUT, tokio_tungstenite::client_async(request, tcp))
        .await
        .context("WebSocket upgrade timed out")??;
    Ok(ws)
}

/// `ws://host/v1/ws` for a gateway base URL.
pub fn chatmesh_ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    format!("{base}/v1/ws")
}

/// Sends `frame` and waits for the reply of type `want`, skipping any other frame before it
/// (unprompted `message`, `presence_diff`, ...); an `error` is an error. Returns the reply's
/// `last_seq`.
pub async fn request(
    ws: &mut Ws,
    frame: &ClientFrame,
    want: FrameType,
) -> anyhow::Result<Option<u64>> {
    ws.send(Message::text(frame.encode(&None))).await?;
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("no {want:?} within {STEP_TIMEOUT:?}"))?;
        let msg = match next {
            Some(m) => m?,
            None => bail!("closed while waiting for {want:?}"),
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(c) => bail!("closed while waiting for {want:?}: {c:?}"),
            _ => continue,
        };
        let frame = FrameView::peek(text.as_str())
            .with_context(|| format!("while waiting for {want:?}"))?;
        if frame.kind == want {
            return Ok(frame.last_seq);
        }
        if frame.kind == FrameType::Error {
            bail!("error {}", frame.code.as_deref().unwrap_or("?"));
        }
    }
}

/// hello → welcome.
pub async fn hello(ws: &mut Ws, token: &str) -> anyhow::Result<()> {
    let hello = ClientFrame::Hello {
        token: token.to_owned(),
    };
    request(ws, &hello, FrameType::Welcome).await.map(|_| ())
}

/// join → joined; returns the room's `last_seq`.
pub async fn join(ws: &mut Ws, room: &str) -> anyhow::Result<u64> {
    Ok(join_since(ws, room, None).await?.unwrap_or(0))
}

/// join (with `since` when given) → joined; returns the room's `last_seq`.
pub async fn join_since(
    ws: &mut Ws,
    room: &str,
    since: Option<u64>,
) -> anyhow::Result<Option<u64>> {
    let join = ClientFrame::Join {
        room: room.to_owned(),
        since,
    };
    request(ws, &join, FrameType::Joined).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            chatmesh_ws_url("http://127.0.0.1:8080/"),
            "ws://127.0.0.1:8080/v1/ws"
        );
        assert_eq!(
            socket_addr("ws://localhost:9/x").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
    }
}
