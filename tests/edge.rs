//! The gateway's HTTP edge under attack: TLS, request-body bounds, connection caps (global
//! and per client IP) and idle deadlines, each against a real embedded mesh and raw sockets.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chatmesh::Config;
use chatmesh_client::Login;
use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// One HTTP/1.1 response read off a raw socket.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A TCP connection to `addr` from source address `src` (any port).
async fn connect_from(src: IpAddr, addr: SocketAddr) -> Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    Ok(sock.connect(addr).await?)
}

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    connect_from([127, 0, 0, 1].into(), addr).await
}

/// Reads one response with a `Content-Length` body, within [`WAIT`].
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> Result<Resp> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    timeout(WAIT, async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("not an HTTP response: {head:?}"))?;
                let mut resp = Resp {
                    status,
                    head,
                    body: String::new(),
                };
                let len: usize = resp
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    resp.body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    return Ok(resp);
                }
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                bail!(
                    "connection closed after {} bytes: {:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf)
                );
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .context("no response in time")?
}

/// `GET path` on an open connection (keep-alive).
async fn get<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, path: &str) -> Result<Resp> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n").as_bytes())
        .await?;
    read_response(s).await
}

/// Reads until the server ends the connection; how long that took. Fails after `limit`.
async fn ended_within<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    let mut chunk = [0u8; 4096];
    timeout(limit, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .context("the server kept the connection open")?;
    Ok(t0.elapsed())
}

/// Polls until a fresh connection from `src` is served `GET /healthz` with 200.
async fn admitted_from(src: IpAddr, addr: SocketAddr) -> Result<TcpStream> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = connect_from(src, addr).await?;
        match get(&mut s, "/healthz").await {
            Ok(r) if r.status == 200 => return Ok(s),
            other if Instant::now() > deadline => bail!("never admitted again: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Test PKI made by the test: a CA and a server certificate for `localhost`/127.0.0.1.
struct Pki {
    ca: rustls::pki_types::CertificateDer<'static>,
    /// The CA as a PEM file (what `SSL_CERT_FILE` names).
    ca_pem: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path) -> Result<Pki> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "chatmesh edge test CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let (cert_path, key_path) = (dir.join("gateway.crt"), dir.join("gateway.key"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, ca.pem())?;
    Ok(Pki {
        ca: ca.der().clone(),
        ca_pem,
        cert: cert_path,
        key: key_path,
    })
}

/// A rustls client config (ring) trusting only the test CA.
fn client_tls(pki: &Pki) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Sends `frame` and reads until a frame of type `expect` (an `error` fails).
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    frame: ClientFrame,
    expect: FrameType,
) -> Result<ServerFrame<'static>> {
    ws.send(WsMessage::text(frame.encode(&None))).await?;
    loop {
        let msg = timeout(WAIT, ws.next()).await?.context("wss ended")??;
        if let WsMessage::Text(t) = msg {
            let f = decode(&t);
            if f.frame_type() == expect {
                return Ok(f);
            }
            ensure!(f.frame_type() != FrameType::Error, "{f:?}");
        }
    }
}

fn tls_config(pki: &Pki) -> Config {
    let mut c = fast_config();
    c.gateway.tls_cert = Some(pki.cert.clone());
    c.gateway.tls_key = Some(pki.key.clone());
    c
}

/// The Rust SDK (and so `chatmesh chat`) talks to a TLS gateway: its HTTP calls over
/// https:// and its session over wss://, verified against the system's roots (here
/// `SSL_CERT_FILE`, naming the test CA). It had no TLS at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_works_over_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = make_pki(dir.path())?;
    // This test's own process (nextest runs each test in one).
    std::env::set_var("SSL_CERT_FILE", &pki.ca_pem);
    let mesh = start_mesh(&dir.path().join("mesh"), tls_config(&pki)).await?;
    let base = format!("https://localhost:{}", mesh.gateway.addr.port());
    chatmesh_client::Http::new(&base)?
        .register("tls-ann", "password-1")
        .await?;
    let mut ann = chatmesh_client::Client::builder(&base)
        .login("tls-ann", "password-1")
        .connect()
        .await?;
    let mut events = ann.events().context("events")?;
    ann.http()
        .create_room("secure", chatmesh_client::RoomKind::Public)
        .await?;
    ann.join("secure").await?;
    let ack = ann.send("secure", "over wss").await?;
    let got = timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if let chatmesh_client::Event::Message(m) = event {
                return Some(m);
            }
        }
        None
    })
    .await?
    .context("no message")?;
    assert_eq!((got.seq, got.body.as_str()), (ack.seq, "over wss"));
    ann.close().await;
    Ok(())
}

/// HTTPS and `wss://` work end to end (register, login, hello, join, send, ack) with HSTS on
/// every response, and plain HTTP to the TLS port gets no HTTP answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_and_wss_with_hsts_and_refuses_plain_http() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = make_pki(dir.path())?;
    let mesh = start_mesh(&dir.path().join("mesh"), tls_config(&pki)).await?;
    let port = mesh.gateway.addr.port();
    let base = format!("https://localhost:{port}");
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls(&pki)?)
        .build()?;

    for (path, status) in [("/healthz", 200), ("/v1/nowhere", 404)] {
        let resp = http.get(format!("{base}{path}")).send().await?;
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let hsts = resp.headers().get("strict-transport-security");
        assert_eq!(
            hsts.and_then(|v| v.to_str().ok()),
            Some("max-age=31536000"),
            "{path}"
        );
    }
    let creds = credentials("ann", "correct horse");
    let resp = http
        .post(format!("{base}/v1/auth/register"))
        .json(&creds)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 201);
    let login: Login = http
        .post(format!("{base}/v1/auth/login"))
        .json(&creds)
        .send()
        .await?
        .json()
        .await?;
    let token = login.token;
    let resp = http
        .post(format!("{base}/v1/rooms"))
        .bearer_auth(&token)
        .json(&json!({"room": "tls", "kind": "public"}))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 201);

    // wss:// through tokio-tungstenite over a rustls stream that trusts only the test CA.
    let tcp = connect(mesh.gateway.addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(&pki)?));
    let tls = connector
        .connect(rustls::pki_types::ServerName::try_from("localhost")?, tcp)
        .await?;
    let mut req = format!("wss://localhost:{port}/v1/ws").into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "chatmesh.v1".parse()?);
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await?;
    assert_eq!(
        resp.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000")
    );
    ask(&mut ws, frame::hello(&token), FrameType::Welcome).await?;
    ask(&mut ws, frame::join("tls"), FrameType::Joined).await?;
    let ack = ask(
        &mut ws,
        frame::send("tls", "m1", "over tls"),
        FrameType::Ack,
    )
    .await?;
    assert_eq!(acked(&ack).seq, 1, "{ack:?}");

    // Plain HTTP to the TLS port: no HTTP response, the connection is dropped.
    let mut plain = connect(mesh.gateway.addr).await?;
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        .await?;
    let mut got = Vec::new();
    timeout(WAIT, plain.read_to_end(&mut got)).await?.ok();
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP was answered: {got:?}"
    );
    let plain_http = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain_http.is_err(), "{plain_http:?}");
    mesh.stop().await
}

/// A client that opens TCP to the TLS port and never handshakes holds a connection slot
/// (others are refused meanwhile) only until `tls_handshake_timeout_ms`, then is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_client_loses_its_slot_after_the_handshake_timeout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = make_pki(dir.path())?;
    let mut config = tls_config(&pki);
    config.gateway.max_connections = 4;
    config.gateway.tls_handshake_timeout_ms = 3_000;
    let mesh = start_mesh(&dir.path().join("mesh"), config).await?;
    let url = format!("https://localhost:{}/healthz", mesh.gateway.addr.port());
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls(&pki)?)
        .build()?;
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(connect(mesh.gateway.addr).await?);
    }
    let refused = http.get(&url).send().await?;
    ensure!(
        opened.elapsed() < Duration::from_millis(2_500),
        "too slow to observe the cap"
    );
    assert_eq!(
        refused.status().as_u16(),
        503,
        "the silent sockets hold the slots"
    );
    assert!(refused.headers().contains_key("strict-transport-security"));
    for s in &mut silent {
        let held = opened.elapsed() + ended_within(s, WAIT).await?;
        assert!(
            held >= Duration::from_millis(2_500),
            "dropped early: {held:?}"
        );
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let status = http.get(&url).send().await?.status().as_u16();
        if status == 200 {
            break;
        }
        ensure!(Instant::now() < deadline, "slots never freed: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mesh.stop().await
}

/// A `Content-Length` beyond the API's 64 KiB is answered 413 `too_large` at once, with
/// only 1 KB of the body sent, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_content_length_gets_413_at_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let mut s = connect(mesh.gateway.addr).await?;
    let t0 = Instant::now();
    s.write_all(
        b"POST /v1/auth/login HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n\
          Content-Length: 100000000\r\n\r\n",
    )
    .await?;
    s.write_all(&[b' '; 1024]).await?;
    let resp = read_response(&mut s).await?;
    assert_eq!(resp.status, 413, "{resp:?}");
    assert_eq!(
        http_error(&resp.json()),
        Some(ErrorCode::TooLarge),
        "{resp:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    ended_within(&mut s, WAIT).await?;
    mesh.stop().await
}

/// A body trickled at a byte per 100 ms gets 408 (`bad_request`) once
/// `body_read_timeout_ms` passes, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_and_the_connection_closes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.body_read_timeout_ms = 1_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let (mut rd, mut wr) = connect(mesh.gateway.addr).await?.into_split();
    let t0 = Instant::now();
    wr.write_all(
        b"POST /v1/auth/login HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n",
    )
    .await?;
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            // Pacing the attacker, not waiting for state.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let resp = read_response(&mut rd).await?;
    let took = t0.elapsed();
    assert_eq!(resp.status, 408, "{resp:?}");
    assert_eq!(
        http_error(&resp.json()),
        Some(ErrorCode::BadRequest),
        "{resp:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    ended_within(&mut rd, WAIT).await?;
    trickle.abort();
    mesh.stop().await
}

/// Headers trickled a line per 100 ms are cut off by `header_read_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_cut_off() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.header_read_timeout_ms = 1_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let (mut rd, mut wr) = connect(mesh.gateway.addr).await?.into_split();
    wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n")
        .await?;
    let trickle = tokio::spawn(async move {
        for i in 0..300 {
            if wr
                .write_all(format!("X-Pad-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            // Pacing the attacker, not waiting for state.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let took = ended_within(&mut rd, Duration::from_secs(5)).await?;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    trickle.abort();
    mesh.stop().await
}

/// An idle keep-alive HTTP connection is closed after `http_idle_timeout_ms` (well before
/// the 30 s header deadline); a WebSocket session idle just as long is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http_connections_close_but_websockets_stay() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.http_idle_timeout_ms = 1_000;
    config.gateway.header_read_timeout_ms = 30_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let token = Api::new(&mesh).user("ann").await?;
    let mut ws = Client::login(&mesh.ws_url(), &token).await?;
    let mut s = connect(mesh.gateway.addr).await?;
    assert_eq!(get(&mut s, "/healthz").await?.status, 200);
    assert_eq!(get(&mut s, "/healthz").await?.status, 200, "keep-alive");
    let idle = ended_within(&mut s, Duration::from_secs(5)).await?;
    assert!(idle >= Duration::from_millis(900), "{idle:?}");
    let pong = ws.request(frame::ping()).await?;
    assert_eq!(pong.frame_type(), FrameType::Pong);
    mesh.stop().await
}

/// hyper's header deadline also runs while a keep-alive connection waits for its next
/// request, so an idle connection closes after `header_read_timeout_ms` even when
/// `http_idle_timeout_ms` is longer (what docs/PROTOCOL.md "HTTP limits" states).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_deadline_also_bounds_idle_connections() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.header_read_timeout_ms = 1_000;
    config.gateway.http_idle_timeout_ms = 60_000;
    let mesh = start_mesh(dir.path(), config).await?;
    let mut s = connect(mesh.gateway.addr).await?;
    assert_eq!(get(&mut s, "/healthz").await?.status, 200);
    let idle = ended_within(&mut s, Duration::from_secs(5)).await?;
    assert!(idle >= Duration::from_millis(900), "{idle:?}");
    mesh.stop().await
}

/// Plain HTTP keep-alive connections count toward `max_connections`: over it a connection
/// gets 503 `unavailable` and is closed (WebSockets too), the held ones keep being served,
/// a freed slot is reused, and the refusal is counted in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_count_toward_max_connections() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.max_connections = 8;
    let mesh = start_mesh(dir.path(), config).await?;
    let token = Api::new(&mesh).user("ann").await?;
    let addr = mesh.gateway.addr;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = connect(addr).await?;
        assert_eq!(get(&mut s, "/healthz").await?.status, 200);
        held.push(s);
    }
    let mut over = connect(addr).await?;
    let resp = get(&mut over, "/healthz").await?;
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(http_error(&resp.json()), Some(ErrorCode::Unavailable));
    ended_within(&mut over, WAIT).await?;
    assert!(
        Client::login(&mesh.ws_url(), &token).await.is_err(),
        "a WebSocket over the cap"
    );
    for s in &mut held {
        assert_eq!(
            get(s, "/healthz").await?.status,
            200,
            "held ones still served"
        );
    }
    held.truncate(5);
    let mut again = admitted_from([127, 0, 0, 1].into(), addr).await?;
    let metrics = get(&mut again, "/metrics").await?;
    assert!(
        metrics
            .body
            .contains("chatmesh_connections_refused_total{reason=\"max_connections\"}"),
        "{}",
        metrics.body
    );
    mesh.stop().await
}

/// One IP may hold `max_connections_per_ip` connections: 250 more from it get 429 with
/// `Retry-After` and are closed, while another IP (127.0.0.2) is still served, and a slot
/// freed by the first IP is reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ip_is_capped_and_others_are_still_served() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.max_connections_per_ip = 50;
    let mesh = start_mesh(dir.path(), config).await?;
    let addr = mesh.gateway.addr;
    let me: IpAddr = [127, 0, 0, 1].into();
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut s = connect_from(me, addr).await?;
        assert_eq!(get(&mut s, "/healthz").await?.status, 200);
        held.push(s);
    }
    for i in 0..250 {
        let mut s = connect_from(me, addr).await?;
        let resp = get(&mut s, "/healthz").await?;
        assert_eq!(resp.status, 429, "attempt {i}: {resp:?}");
        assert_eq!(http_error(&resp.json()), Some(ErrorCode::RateLimited));
        assert!(resp.header("retry-after").is_some(), "{resp:?}");
        ended_within(&mut s, WAIT).await?;
    }
    let mut other = connect_from([127, 0, 0, 2].into(), addr).await?;
    assert_eq!(get(&mut other, "/healthz").await?.status, 200);
    assert_eq!(get(&mut held[0], "/healthz").await?.status, 200);
    held.pop();
    admitted_from(me, addr).await?;
    mesh.stop().await
}

/// A WebSocket to `url` that says it comes through a proxy for `client`.
async fn ws_for(
    url: &str,
    client: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("X-Forwarded-For", client.parse().expect("header value"));
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// Behind a trusted proxy (127.0.0.1 here) connections are not capped per TCP peer, but
/// WebSockets are capped per forwarded client (`X-Forwarded-For`): the fourth of one client
/// gets 429, another client is still served, and a closed session frees its count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_websockets_are_capped_per_forwarded_client() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.max_connections_per_ip = 3;
    config.gateway.trusted_proxies = vec![[127, 0, 0, 1].into()];
    let mesh = start_mesh(dir.path(), config).await?;
    let token = Api::new(&mesh).user("ann").await?;
    let mut proxy_conns = Vec::new();
    for _ in 0..6 {
        let mut s = connect(mesh.gateway.addr).await?;
        assert_eq!(
            get(&mut s, "/healthz").await?.status,
            200,
            "the proxy is not capped"
        );
        proxy_conns.push(s);
    }
    let url = mesh.ws_url();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut ws = ws_for(&url, "203.0.113.9").await?;
        ask(&mut ws, frame::hello(&token), FrameType::Welcome).await?;
        sessions.push(ws);
    }
    match ws_for(&url, "203.0.113.9").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            assert!(resp.headers().contains_key("retry-after"));
        }
        other => bail!(
            "a fourth session of one client: {:?}",
            other.map(|_| "connected")
        ),
    }
    let mut other = ws_for(&url, "203.0.113.10").await?;
    ask(&mut other, frame::hello(&token), FrameType::Welcome).await?;
    let mut closing = sessions.pop().context("a session")?;
    closing.close(None).await?;
    let deadline = Instant::now() + WAIT;
    while let Err(e) = ws_for(&url, "203.0.113.9").await {
        ensure!(
            Instant::now() < deadline,
            "the closed session's count never came back: {e}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mesh.stop().await
}

/// The web client's files are cacheable anywhere: the page (never cached) loads them from
/// `/assets/{version}/`, served `immutable` for a year; another version's path is 404; the
/// unversioned paths still answer, revalidated each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_client_files_have_versioned_immutable_urls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let http = reqwest::Client::new();
    let get = |path: String| http.get(format!("{}{path}", mesh.url())).send();
    let cache = |r: &reqwest::Response| {
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let page = get("/".into()).await?;
    assert_eq!(cache(&page), "no-cache");
    let html = page.text().await?;
    let start = html
        .find("src=\"/assets/")
        .context("a versioned script in the page")?
        + "src=\"".len();
    let app = &html[start
        ..html[start..]
            .find('"')
            .map(|e| start + e)
            .context("quote")?];
    assert!(app.ends_with("/app.js"), "{app}");
    let script = get(app.to_owned()).await?;
    assert_eq!(script.status(), 200);
    assert_eq!(cache(&script), "public, max-age=31536000, immutable");
    let base = app.trim_end_matches("app.js");
    let module = get(format!("{base}chatmesh.js")).await?;
    assert_eq!(module.status(), 200, "modules import each other relatively");
    assert_eq!(get(format!("{base}style.css")).await?.status(), 200);
    let old = get("/assets/0123456789abcdef/app.js".into()).await?;
    assert_eq!(
        old.status(),
        404,
        "another version's name is not this build's bytes"
    );
    assert_eq!(get(format!("{base}nope.js")).await?.status(), 404);
    let plain = get("/app.js".into()).await?;
    assert_eq!(
        (plain.status().as_u16(), cache(&plain)),
        (200, "no-cache".to_owned())
    );
    mesh.stop().await
}

/// With `[metrics] listen` the gateway serves its metrics there only: the client port, which
/// may face the internet, answers `/metrics` with 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_off_the_client_port_when_they_have_a_listener() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut config = fast_config();
    config.metrics.listen = Some(format!("127.0.0.1:{port}"));
    let mesh = start_mesh(dir.path(), config).await?;
    let mut s = connect(mesh.gateway.addr).await?;
    let resp = get(&mut s, "/metrics").await?;
    assert_eq!(resp.status, 404, "{resp:?}");
    let mut s = connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let resp = get(&mut s, "/metrics").await?;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert!(resp.body.contains("chatmesh_"), "{}", resp.body);
    mesh.stop().await
}
