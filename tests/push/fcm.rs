//! A local stand-in for FCM HTTP v1 and Google's OAuth2 token endpoint (plain hyper on
//! 127.0.0.1:0). `POST /token` checks the RS256 assertion of the service account (signature
//! with the account's public key, `iss`, `aud`, `scope`) and hands out an access token;
//! `POST /v1/projects/<project>/messages:send` checks the bearer is one it handed out, keeps
//! the message, and answers what a test scripted for that device token (then 200). The
//! service account's key pair is made by the test.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use tokio::net::TcpListener;

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
    let mut s = shared.lock().unwrap();
    if path == "/token" {
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
