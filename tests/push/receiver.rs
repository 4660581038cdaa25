//! A local Web Push service for the tests (plain hyper, http/1.1 on 127.0.0.1:0): it takes
//! `POST /push/<name>` like a push service's endpoint, answers with the statuses a test
//! scripted for that name (then 201), and keeps every request. A [`Subscription`] is a
//! browser's side: a P-256 key pair and an auth secret made here, with which a test decrypts
//! what arrived (RFC 8291) and checks its VAPID token (RFC 8292).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256PublicKey};
use web_push_native::jwt_simple::claims::NoCustomClaims;
use web_push_native::jwt_simple::common::VerificationOptions;
use web_push_native::p256::elliptic_curve::sec1::ToEncodedPoint;
use web_push_native::p256::SecretKey;
use web_push_native::Auth;

/// One request the receiver took.
#[derive(Debug, Clone)]
pub struct Received {
    pub name: String,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
    /// What it was answered.
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    script: HashMap<String, VecDeque<(u16, Option<u64>)>>,
    /// Requests to these names are kept at once but answered only this much later.
    holds: HashMap<String, Duration>,
}

/// The running receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>/push/<name>`.
    pub fn endpoint(&self, name: &str) -> String {
        format!("http://{}/push/{name}", self.addr)
    }

    /// The origin the VAPID token must name (`aud`).
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next requests to `name` are answered `status` (with `Retry-After` seconds).
    pub fn script(&self, name: &str, answers: &[(u16, Option<u64>)]) {
        let mut s = self.shared.lock().unwrap();
        s.script
            .entry(name.to_owned())
            .or_default()
            .extend(answers.iter().copied());
    }

    /// Requests to `name` are kept when they arrive but answered `after` later (`None`: at
    /// once again), as a slow push service would.
    pub fn hold(&self, name: &str, after: Option<Duration>) {
        let mut s = self.shared.lock().unwrap();
        match after {
            Some(d) => s.holds.insert(name.to_owned(), d),
            None => s.holds.remove(name),
        };
    }

    /// Every request to `name` so far.
    pub fn received(&self, name: &str) -> Vec<Received> {
        let s = self.shared.lock().unwrap();
        s.received
            .iter()
            .filter(|r| r.name == name)
            .cloned()
            .collect()
    }

    /// Waits (bounded) until `name` has had a request, whatever its answer.
    pub async fn wait_for_request(&self, name: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while self.received(name).is_empty() {
            if Instant::now() > deadline {
                bail!("{name}: no request after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    /// Waits (bounded) until the receiver has had `n` requests, to any name.
    pub async fn wait_for_requests(&self, n: usize, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while self.shared.lock().unwrap().received.len() < n {
            if Instant::now() > deadline {
                bail!("fewer than {n} requests after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    /// Waits (bounded) until `name` has `n` requests answered 2xx; returns all of its requests.
    pub async fn wait_delivered(
        &self,
        name: &str,
        n: usize,
        within: Duration,
    ) -> Result<Vec<Received>> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received(name);
            if got.iter().filter(|r| r.status < 300).count() >= n {
                return Ok(got);
            }
            if Instant::now() > deadline {
                bail!(
                    "{name}: {} of {n} pushes delivered after {within:?}",
                    got.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn handle(
    shared: Arc<Mutex<Shared>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let name = req
        .uri()
        .path()
        .strip_prefix("/push/")
        .unwrap_or("")
        .to_owned();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let (status, retry_after, hold) = {
        let mut s = shared.lock().unwrap();
        let (status, retry_after) = s
            .script
            .get_mut(&name)
            .and_then(|q| q.pop_front())
            .unwrap_or((201, None));
        let hold = s.holds.get(&name).copied();
        s.received.push(Received {
            name,
            headers,
            body,
            at: Instant::now(),
            status,
        });
        (status, retry_after, hold)
    };
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    let mut resp = Response::builder().status(status);
    if let Some(secs) = retry_after {
        resp = resp.header("retry-after", secs.to_string());
    }
    Ok(resp.body(Full::new(Bytes::new())).unwrap())
}

/// A browser's push subscription: its key pair and auth secret.
pub struct Subscription {
    pub endpoint: String,
    secret: SecretKey,
    auth: Auth,
}

impl Subscription {
    pub fn new(endpoint: String) -> Self {
        let secret = loop {
            if let Ok(k) = SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        Self {
            endpoint,
            secret,
            auth: Auth::from(rand::random::<[u8; 16]>()),
        }
    }

    /// The body of `POST /v1/push/targets`, as `subscription.toJSON()` gives it.
    pub fn json(&self) -> Value {
        let point = self.secret.public_key().to_encoded_point(false);
        json!({
            "kind": "web_push",
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": {
                "p256dh": URL_SAFE_NO_PAD.encode(point.as_bytes()),
                "auth": URL_SAFE_NO_PAD.encode(self.auth),
            }
        })
    }

    /// Checks what a push service must check of `r` and returns the decrypted payload: the
    /// VAPID token signed by `vapid_key` (the key the server serves) for `origin`, not
    /// expired and valid at most 24 h; `Content-Encoding: aes128gcm`; a `TTL`.
    pub fn open(&self, r: &Received, vapid_key: &str, origin: &str) -> Result<Value> {
        let header = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| anyhow!("no {name} header"))
        };
        ensure!(header("content-encoding")? == "aes128gcm");
        header("ttl")?.parse::<u64>().context("TTL")?;
        let (token, key) = header("authorization")?
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .ok_or_else(|| anyhow!("not a VAPID authorization"))?;
        ensure!(key == vapid_key, "k= is not the served VAPID key");
        let public = ES256PublicKey::from_bytes(&URL_SAFE_NO_PAD.decode(key)?)?;
        ensure!(public.public_key().to_bytes_uncompressed().len() == 65);
        let options = VerificationOptions {
            allowed_audiences: Some([origin.to_owned()].into()),
            ..Default::default()
        };
        let claims = public
            .verify_token::<NoCustomClaims>(token, Some(options))
            .map_err(|e| anyhow!("VAPID token: {e}"))?;
        let exp = claims.expires_at.context("no exp")?.as_secs();
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        ensure!(exp > now && exp <= now + 24 * 3600, "exp {exp} (now {now})");
        ensure!(claims.subject.is_some_and(|s| s.starts_with("mailto:")));
        let plain = web_push_native::decrypt(r.body.clone(), &self.secret, &self.auth)
            .map_err(|e| anyhow!("decrypting: {e}"))?;
        Ok(serde_json::from_slice(&plain)?)
    }
}
