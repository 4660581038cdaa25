//! A local egress proxy for the tests (plain hyper, http/1.1 on 127.0.0.1:0), as an
//! operator's would be: `CONNECT host:port` opens a tunnel that TLS passes through
//! untouched, and a request in absolute form (`POST http://host:port/path`) is forwarded.
//! Each request line is kept, so a test can tell what went through it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Headers that are the proxy's own, not forwarded.
const HOP_BY_HOP: [&str; 5] = [
    "host",
    "proxy-authorization",
    "proxy-connection",
    "connection",
    "transfer-encoding",
];

/// The running proxy; stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, kept.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(Self { addr, seen, task })
    }

    /// The proxy's URL, for `[push] proxy`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request line taken so far (`CONNECT localhost:443`, `POST http://…`).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<String>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    seen.lock()
        .unwrap()
        .push(format!("{} {}", req.method(), req.uri()));
    if req.method() == Method::CONNECT {
        let Some(authority) = req.uri().authority().map(|a| a.to_string()) else {
            return Ok(status(StatusCode::BAD_REQUEST));
        };
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let Ok(mut upstream) = TcpStream::connect(authority).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await;
        });
        return Ok(status(StatusCode::OK));
    }
    Ok(forward(req)
        .await
        .unwrap_or_else(|_| status(StatusCode::BAD_GATEWAY)))
}

/// Sends `req` (absolute form) on to its host and answers what the host answered.
async fn forward(req: Request<Incoming>) -> Result<Response<Full<Bytes>>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut out = client
        .request(parts.method, parts.uri.to_string())
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out = out.header(name, value);
        }
    }
    let resp = out.send().await?;
    let mut answer = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != "content-length" {
            answer = answer.header(name, value);
        }
    }
    Ok(answer.body(Full::new(resp.bytes().await?))?)
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = code;
    resp
}
