//! A local stand-in for APNs (hyper on 127.0.0.1:0, HTTP/2 only: cleartext h2 with prior
//! knowledge, as `[push.apns] base_url = "http://127.0.0.1:…"` makes the notifier speak).
//! It takes `POST /3/device/<token>` (and `/sandbox/3/device/<token>`, the sandbox host of
//! the tests), verifies the provider token (ES256 with the public half of the `.p8` key the
//! test made, `kid`, `iss`, a recent `iat`; a bad one is answered 403
//! `InvalidProviderToken`), keeps the request, and answers what a test scripted for that
//! device (then 200). It counts the connections it accepted.
//!
//! [`ApnsStandIn::start_tls`] serves the same over TLS, as Apple does: a certificate for
//! `localhost` from a CA the test makes (the notifier trusts it through `[push.apns]
//! ca_file`), HTTP/2 chosen by ALPN (`h2` the only protocol offered), so the notifier's
//! real path to Apple is exercised: TLS, certificate check, ALPN.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const KEY_ID: &str = "KEY1234567";
pub const TEAM_ID: &str = "TEAM123456";

/// One request APNs took.
#[derive(Debug, Clone)]
pub struct Sent {
    pub device: String,
    pub sandbox: bool,
    pub headers: hyper::HeaderMap,
    pub body: Value,
    pub bearer: String,
    pub at: Instant,
    pub status: u16,
}

/// A scripted answer: status, `reason`, `Retry-After` seconds.
pub type Answer = (u16, &'static str, Option<u64>);

#[derive(Default)]
struct Shared {
    sent: Vec<Sent>,
    refused_bearers: usize,
    not_http2: usize,
    /// TLS: the protocol each finished handshake chose by ALPN; handshakes that failed.
    alpn: Vec<Option<Vec<u8>>>,
    handshakes_failed: usize,
    script: HashMap<String, VecDeque<Answer>>,
}

pub struct ApnsStandIn {
    pub addr: SocketAddr,
    tls: bool,
    shared: Arc<Mutex<Shared>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApnsStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApnsStandIn {
    /// Starts the stand-in (cleartext h2) and writes a `.p8` key for it into `dir`; returns
    /// the stand-in and the key's path.
    pub async fn start(dir: &Path) -> Result<(Self, PathBuf)> {
        Self::serve(dir, None).await
    }

    /// Starts the stand-in over TLS with ALPN `h2` and writes the `.p8` key and the test
    /// CA's certificate (`apns-ca.pem`) into `dir`; returns the stand-in, the key's path and
    /// the CA's.
    pub async fn start_tls(dir: &Path) -> Result<(Self, PathBuf, PathBuf)> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "chatmesh APNs stand-in CA");
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;
        let ca_path = dir.join("apns-ca.pem");
        std::fs::write(&ca_path, ca.pem())?;
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate()?;
        let cert =
            CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &issuer)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )?;
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let (me, key_path) = Self::serve(dir, Some(acceptor)).await?;
        Ok((me, key_path, ca_path))
    }

    async fn serve(dir: &Path, tls: Option<tokio_rustls::TlsAcceptor>) -> Result<(Self, PathBuf)> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let path = dir.join("AuthKey_KEY1234567.p8");
        std::fs::write(&path, key.serialize_pem())?;
        let public = DecodingKey::from_ec_pem(key.public_key_pem().as_bytes())?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (state, count) = (shared.clone(), connections.clone());
        let public = Arc::new(public);
        let secure = tls.is_some();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (state, public, tls) = (state.clone(), public.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = {
                        let state = state.clone();
                        service_fn(move |req| handle(state.clone(), public.clone(), req))
                    };
                    let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    let Some(acceptor) = tls else {
                        let _ = h2.serve_connection(TokioIo::new(tcp), svc).await;
                        return;
                    };
                    match acceptor.accept(tcp).await {
                        Ok(stream) => {
                            let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                            state.lock().unwrap().alpn.push(alpn);
                            let _ = h2.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Err(_) => state.lock().unwrap().handshakes_failed += 1,
                    }
                });
            }
        });
        let me = Self {
            addr,
            tls: secure,
            shared,
            connections,
            task,
        };
        Ok((me, path))
    }

    /// `http://127.0.0.1:…`, or over TLS `https://localhost:…` (the certificate's name).
    pub fn base_url(&self) -> String {
        match self.tls {
            true => format!("https://localhost:{}", self.addr.port()),
            false => format!("http://{}", self.addr),
        }
    }

    /// The sandbox "host": the same server under `/sandbox`.
    pub fn sandbox_url(&self) -> String {
        format!("{}/sandbox", self.base_url())
    }

    /// TLS: the ALPN protocol of each finished handshake, and the handshakes that failed.
    pub fn handshakes(&self) -> (Vec<Option<Vec<u8>>>, usize) {
        let s = self.shared.lock().unwrap();
        (s.alpn.clone(), s.handshakes_failed)
    }

    /// The next pushes to `device` are answered `answers`.
    pub fn script(&self, device: &str, answers: &[Answer]) {
        let mut s = self.shared.lock().unwrap();
        s.script
            .entry(device.to_owned())
            .or_default()
            .extend(answers.iter().copied());
    }

    pub fn sent(&self, device: &str) -> Vec<Sent> {
        let s = self.shared.lock().unwrap();
        s.sent
            .iter()
            .filter(|m| m.device == device)
            .cloned()
            .collect()
    }

    /// Every request so far.
    pub fn all(&self) -> Vec<Sent> {
        self.shared.lock().unwrap().sent.clone()
    }

    /// Connections accepted, requests refused for their provider token, requests that were
    /// not HTTP/2.
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = self.shared.lock().unwrap();
        let conns = self.connections.load(Ordering::SeqCst);
        (conns, s.refused_bearers, s.not_http2)
    }

    pub async fn wait_accepted(
        &self,
        device: &str,
        n: usize,
        within: Duration,
    ) -> Result<Vec<Sent>> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.sent(device);
            if got.iter().filter(|m| m.status == 200).count() >= n {
                return Ok(got);
            }
            if Instant::now() > deadline {
                bail!("{device}: {} pushes, {n} accepted expected", got.len());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn answer(status: u16, reason: &str, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let mut resp = Response::builder()
        .status(status)
        .header("apns-id", "00000000-0000-0000-0000-000000000000");
    if let Some(secs) = retry_after {
        resp = resp.header("retry-after", secs.to_string());
    }
    let body = match status {
        200 => Bytes::new(),
        _ => Bytes::from(json!({ "reason": reason }).to_string()),
    };
    resp.body(Full::new(body)).unwrap()
}

/// Checks the provider token as APNs does; the bearer when it is good.
fn check_bearer(req: &Request<Incoming>, public: &DecodingKey) -> Option<String> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, jwt) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut v = Validation::new(Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let data = jsonwebtoken::decode::<Value>(jwt, public, &v).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let iat = data.claims["iat"].as_u64()?;
    let recent = iat <= now + 5 && now.saturating_sub(iat) < 3600;
    let ours = data.header.kid.as_deref() == Some(KEY_ID) && data.claims["iss"] == TEAM_ID;
    (recent && ours).then(|| jwt.to_owned())
}

async fn handle(
    shared: Arc<Mutex<Shared>>,
    public: Arc<DecodingKey>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let http2 = req.version() == hyper::Version::HTTP_2;
    let path = req.uri().path().to_owned();
    let (sandbox, path) = match path.strip_prefix("/sandbox") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, path),
    };
    let Some(device) = path.strip_prefix("/3/device/").map(str::to_owned) else {
        return Ok(answer(404, "BadPath", None));
    };
    let bearer = check_bearer(&req, &public);
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mut s = shared.lock().unwrap();
    if !http2 {
        s.not_http2 += 1;
        return Ok(answer(400, "NotHttp2", None));
    }
    let Some(bearer) = bearer else {
        s.refused_bearers += 1;
        return Ok(answer(403, "InvalidProviderToken", None));
    };
    if headers.get("apns-topic").is_none() {
        return Ok(answer(400, "MissingTopic", None));
    }
    let (status, reason, retry_after) = s
        .script
        .get_mut(&device)
        .and_then(|q| q.pop_front())
        .unwrap_or((200, "", None));
    s.sent.push(Sent {
        device,
        sandbox,
        headers,
        body: serde_json::from_slice(&body).unwrap_or_default(),
        bearer,
        at: Instant::now(),
        status,
    });
    Ok(answer(status, reason, retry_after))
}
