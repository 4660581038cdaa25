//! A local stand-in for FCM HTTP v1 and Google's OAuth2 token endpoint (plain hyper on
//! 127.0.0.1:0). `POST /token` checks the RS256 assertion of the service account (signature
//! with the account's public key, `iss`, `aud`, `scope`) and hands out an access token;
//! `POST /v1/projects/<project>/messages:send` checks the bearer is one it handed out, keeps
//! the message, and answers what a test scripted for that device token (then 200). The
//! service account's key pair is made by the test. The token endpoint can be made to fail
//! or to hold its requests; the tests here check what the notifier does then.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::common::{start_mesh, Api, Client, WAIT};
use super::receiver::{Receiver, Subscription};
use super::{club, dan_is_pushed_at_once, push_config, register};

pub const PROJECT: &str = "chatmesh-test";
const CLIENT_EMAIL: &str = "notifier@chatmesh-test.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// One message FCM accepted or refused.
#[derive(Debug, Clone)]
pub struct Sent {
    pub device: String,
    /// `data.payload`, parsed.
    pub payload: Value,
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    public_pem: String,
    token_url: String,
    issued: Vec<String>,
    sent: Vec<Sent>,
    refused_bearers: usize,
    script: HashMap<String, VecDeque<u16>>,
    /// Requests to the token endpoint so far, answered or not.
    token_requests: usize,
    /// The token endpoint answers this status instead of a token.
    token_status: Option<u16>,
    /// The token endpoint answers only this long after a request arrives.
    token_hold: Option<Duration>,
}

pub struct FcmStandIn {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FcmStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FcmStandIn {
    /// Starts the stand-in and writes a service account JSON for it into `dir`; returns the
    /// stand-in and the file's path.
    pub async fn start(dir: &Path) -> Result<(Self, std::path::PathBuf)> {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
        let private_pem = key.to_pkcs8_pem(LineEnding::LF)?.to_string();
        let public_pem = key.to_public_key().to_public_key_pem(LineEnding::LF)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let token_url = format!("http://{addr}/token");
        let shared = Arc::new(Mutex::new(Shared {
            public_pem,
            token_url: token_url.clone(),
            ..Shared::default()
        }));
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
        let account = json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "k1",
            "private_key": private_pem,
            "client_email": CLIENT_EMAIL,
            "token_uri": token_url,
        });
        let path = dir.join("fcm-service-account.json");
        std::fs::write(&path, account.to_string())?;
        Ok((Self { addr, shared, task }, path))
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next sends to `device` are answered `statuses`.
    pub fn script(&self, device: &str, statuses: &[u16]) {
        let mut s = self.shared.lock().unwrap();
        s.script
            .entry(device.to_owned())
            .or_default()
            .extend(statuses);
    }

    pub fn sent(&self, device: &str) -> Vec<Sent> {
        let s = self.shared.lock().unwrap();
        s.sent
            .iter()
            .filter(|m| m.device == device)
            .cloned()
            .collect()
    }

    /// The token endpoint answers `status` (`None`: tokens again).
    pub fn fail_tokens(&self, status: Option<u16>) {
        self.shared.lock().unwrap().token_status = status;
    }

    /// The token endpoint answers `after` a request arrives (`None`: at once again), as a
    /// token endpoint that hangs would.
    pub fn hold_tokens(&self, after: Option<Duration>) {
        self.shared.lock().unwrap().token_hold = after;
    }

    /// Requests the token endpoint has had, answered or not.
    pub fn token_requests(&self) -> usize {
        self.shared.lock().unwrap().token_requests
    }

    /// Waits (bounded) until the token endpoint has had a request.
    pub async fn wait_token_request(&self, within: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        while self.token_requests() == 0 {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "no token request after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    /// Access tokens handed out so far, and sends refused for a bad bearer.
    pub fn tokens(&self) -> (usize, usize) {
        let s = self.shared.lock().unwrap();
        (s.issued.len(), s.refused_bearers)
    }

    pub async fn wait_accepted(
        &self,
        device: &str,
        n: usize,
        within: Duration,
    ) -> Result<Vec<Sent>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.sent(device);
            if got.iter().filter(|m| m.status == 200).count() >= n {
                return Ok(got);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{device}: {} sends, {n} accepted expected", got.len());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn answer(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn handle(
    shared: Arc<Mutex<Shared>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let hold = {
        let mut s = shared.lock().unwrap();
        s.token_requests += usize::from(path == "/token");
        s.token_hold.filter(|_| path == "/token")
    };
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    let mut s = shared.lock().unwrap();
    if path == "/token" {
        if let Some(status) = s.token_status {
            return Ok(answer(status, json!({"error": "temporarily_unavailable"})));
        }
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Ok(answer(400, json!({"error": "unsupported_grant_type"})));
        }
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[s.token_url.clone()]);
        v.set_issuer(&[CLIENT_EMAIL]);
        let Ok(key) = DecodingKey::from_rsa_pem(s.public_pem.as_bytes()) else {
            return Ok(answer(500, json!({})));
        };
        let assertion = form.get("assertion").cloned().unwrap_or_default();
        match jsonwebtoken::decode::<Value>(&assertion, &key, &v) {
            Ok(claims) if claims.claims["scope"] == SCOPE => {
                let token = format!("at-{}", s.issued.len() + 1);
                s.issued.push(token.clone());
                Ok(answer(
                    200,
                    json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}),
                ))
            }
            _ => Ok(answer(400, json!({"error": "invalid_grant"}))),
        }
    } else if path == format!("/v1/projects/{PROJECT}/messages:send") {
        if !bearer.is_some_and(|b| s.issued.contains(&b)) {
            s.refused_bearers += 1;
            return Ok(answer(
                401,
                json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}),
            ));
        }
        let msg: Value = serde_json::from_slice(&body).unwrap_or_default();
        let device = msg["message"]["token"].as_str().unwrap_or("").to_owned();
        let payload = msg["message"]["data"]["payload"]
            .as_str()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_default();
        let status = s
            .script
            .get_mut(&device)
            .and_then(|q| q.pop_front())
            .unwrap_or(200);
        s.sent.push(Sent {
            device,
            payload,
            status,
        });
        let body = match status {
            200 => json!({"name": format!("projects/{PROJECT}/messages/{}", s.sent.len())}),
            404 => json!({"error": {"code": 404, "status": "NOT_FOUND", "details": [
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}),
            _ => json!({"error": {"code": status, "status": "UNAVAILABLE"}}),
        };
        Ok(answer(status, body))
    } else {
        Ok(answer(404, json!({})))
    }
}

/// A notifier configured for FCM at `fcm`, with `concurrency` request slots; the mesh's data
/// under `dir`.
async fn mesh_with_fcm(
    dir: &Path,
    fcm: &FcmStandIn,
    account: std::path::PathBuf,
    concurrency: usize,
) -> Result<chatmesh::Mesh> {
    let mut config = push_config();
    config.push.concurrency = concurrency;
    // Well past `dan_is_pushed_at_once`'s bound, so waiting for a held request shows.
    config.push.request_timeout_ms = 8_000;
    config.push.fcm.credentials_file = Some(account);
    config.push.fcm.base_url = fcm.base_url();
    start_mesh(&dir.join("mesh"), config).await
}

/// Registers FCM `tokens` for `user`.
async fn register_fcm(api: &Api, user: &str, tokens: &[&str]) -> Result<()> {
    for token in tokens {
        let target = json!({"kind": "fcm", "token": token});
        let (s, v) = api
            .call("POST", "/v1/push/targets", Some(user), Some(target))
            .await?;
        ensure!(s == 201, "register {token}: {s} {v}");
    }
    Ok(())
}

/// An OAuth2 token endpoint that takes requests and never answers holds none of the request
/// slots: with a single one (`concurrency = 1`, so FCM's share of it is all of it) and a
/// user with two FCM tokens waiting for an access token, a Web Push user is pushed at once.
/// Before, the FCM sends held the slots (with two: one in the token call and one queued
/// behind it), each for the whole request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_fcm_token_endpoint_does_not_hold_up_web_push() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (fcm, account) = FcmStandIn::start(dir.path()).await?;
    fcm.hold_tokens(Some(Duration::from_secs(60)));
    let mesh = mesh_with_fcm(dir.path(), &fcm, account, 1).await?;
    let push = Receiver::start().await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    register_fcm(&api, &bob, &["bob-phone", "bob-tablet"]).await?;
    let dan = api.user("dan").await?;
    register(&api, &dan, &Subscription::new(push.endpoint("dan"))).await?;
    club(&api, &ann, "down", &["bob"]).await?;
    club(&api, &ann, "fine", &["dan"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("down").await?;
    sender.join("fine").await?;
    sender.post("down", "m1", "anyone?").await?;
    fcm.wait_token_request(WAIT).await?;
    dan_is_pushed_at_once(&mut sender, &push, "the hanging token endpoint").await?;
    mesh.stop().await
}

/// A token endpoint that fails is remembered as failing for a few seconds: the FCM sends
/// meanwhile are put off without asking it again (before, every send and every retry of
/// each made its own call, one after the other), and once it answers again the pushes go
/// out with one access token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fcm_token_endpoint_is_not_asked_by_every_send() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (fcm, account) = FcmStandIn::start(dir.path()).await?;
    fcm.fail_tokens(Some(503));
    let mesh = mesh_with_fcm(dir.path(), &fcm, account, 4).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    register_fcm(&api, &bob, &["bob-phone", "bob-tablet"]).await?;
    club(&api, &ann, "club", &["bob"]).await?;
    let mut sender = Client::login(&mesh.ws_url(), &ann).await?;
    sender.join("club").await?;
    sender.post("club", "m1", "hi").await?;
    fcm.wait_token_request(WAIT).await?;
    // Long enough for several retries of both sends (backoff from 250 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fcm.token_requests(), 1, "token requests while it fails");
    fcm.fail_tokens(None);
    fcm.wait_accepted("bob-phone", 1, WAIT).await?;
    fcm.wait_accepted("bob-tablet", 1, WAIT).await?;
    assert_eq!(fcm.tokens(), (1, 0), "one access token, never refused");
    mesh.stop().await
}
