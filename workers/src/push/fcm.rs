//! The FCM provider: Firebase Cloud Messaging HTTP v1 (`POST
//! {base_url}/v1/projects/{project}/messages:send`), authorised by a Google service account
//! with OAuth2: an RS256 JWT assertion (RFC 7523) exchanged at the account's `token_uri` for
//! an access token, kept until a minute before it expires. No legacy FCM API.
//!
//! The access token is fetched before a request slot is taken ([`Fcm::access`]), one call
//! to the token endpoint at a time; a failed call is remembered for [`FAILED_TOKEN_PAUSE`],
//! during which sends are put off at once (retried after it) instead of each making its own
//! call: a token endpoint that hangs or fails costs one call per pause and holds no slot.
//!
//! A push is a data message: `data.payload` holds the same JSON a Web Push carries, so the
//! app builds the notification itself (and shows nothing the user's settings exclude).
//! Answers map to [`Outcome`] as for Web Push, plus FCM's own: `UNREGISTERED` (404, or 400
//! naming it) means the token is gone; 401 drops the cached access token and retries.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::webpush::{classify, retry_after, Outcome};

/// The OAuth2 scope of FCM HTTP v1.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// An access token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// After a failed call to the token endpoint, no other is made for this long.
const FAILED_TOKEN_PAUSE: Duration = Duration::from_secs(5);
/// Most bytes of an FCM answer read (its error code is near the start).
const ERROR_BODY_MAX: usize = 4096;

/// Why FCM could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FcmError {
    #[error("reading the FCM service account {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the FCM service account {path} is not a service account JSON with an RSA key")]
    Account {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("signing the OAuth2 assertion")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("getting an OAuth2 access token: {0}")]
    Token(String),
    #[error("the OAuth2 token endpoint failed moments ago; asked again in {0:?}")]
    TokenPaused(Duration),
    #[error("calling FCM")]
    Http(#[source] reqwest::Error),
}

/// The fields of a service account JSON that matter here.
#[derive(Debug, Deserialize)]
struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key: String,
    token_uri: String,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// What the last call to the token endpoint left.
enum Cached {
    /// An access token, used until the instant.
    Token(String, Instant),
    /// The call failed: no other is made before the instant.
    Failed(Instant),
}

/// What a send needs first: an access token, or why there is none for now.
#[derive(Debug)]
pub enum Access {
    /// The access token to send with.
    Granted(String),
    /// The token endpoint failed (now or moments ago): the push is retried, as after an
    /// outage of FCM itself.
    Later(Outcome),
}

/// Sends FCM messages for one project.
pub struct Fcm {
    http: reqwest::Client,
    send_url: String,
    token_uri: String,
    client_email: String,
    key: EncodingKey,
    token: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fcm")
            .field("send_url", &self.send_url)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl Fcm {
    /// Reads the service account at `path`; `base_url` is FCM's (tests: a local stand-in),
    /// `token_url` replaces the account's `token_uri` when set.
    pub fn open(
        http: reqwest::Client,
        path: &Path,
        base_url: &str,
        token_url: Option<&str>,
    ) -> Result<Self, FcmError> {
        let text = std::fs::read_to_string(path).map_err(|source| FcmError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bad = |source: Box<dyn std::error::Error + Send + Sync>| FcmError::Account {
            path: path.to_owned(),
            source,
        };
        let account: ServiceAccount = serde_json::from_str(&text).map_err(|e| bad(e.into()))?;
        let key =
            EncodingKey::from_rsa_pem(account.private_key.as_bytes()).map_err(|e| bad(e.into()))?;
        Ok(Self {
            http,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                base_url.trim_end_matches('/'),
                account.project_id
            ),
            token_uri: token_url.map_or(account.token_uri, str::to_owned),
            client_email: account.client_email,
            key,
            token: Mutex::new(None),
        })
    }

    /// Where messages are sent (its origin is FCM's).
    pub fn send_url(&self) -> &str {
        &self.send_url
    }

    /// The access token for a send: the cached one, or a new one from the token endpoint
    /// (unless its last call failed less than [`FAILED_TOKEN_PAUSE`] ago). Taken before a
    /// request slot: the token endpoint may be slow.
    pub async fn access(&self) -> Result<Access, FcmError> {
        match self.access_token().await {
            Ok(access) => Ok(Access::Granted(access)),
            // The token endpoint down is an outage like any other: retried.
            Err(FcmError::Http(_) | FcmError::Token(_)) => Ok(Access::Later(Outcome::Retry {
                status: None,
                retry_after: None,
            })),
            Err(FcmError::TokenPaused(left)) => Ok(Access::Later(Outcome::Retry {
                status: None,
                retry_after: Some(left),
            })),
            Err(e) => Err(e),
        }
    }

    /// A valid access token: the cached one or a new one, or the remembered failure.
    async fn access_token(&self) -> Result<String, FcmError> {
        let mut cached = self.token.lock().await;
        let now = Instant::now();
        match &*cached {
            Some(Cached::Token(token, until)) if now < *until => return Ok(token.clone()),
            Some(Cached::Failed(until)) if now < *until => {
                return Err(FcmError::TokenPaused(*until - now))
            }
            _ => {}
        }
        match self.fetch_token().await {
            Ok((token, life)) => {
                *cached = Some(Cached::Token(token.clone(), Instant::now() + life));
                Ok(token)
            }
            Err(e) => {
                if matches!(e, FcmError::Http(_) | FcmError::Token(_)) {
                    *cached = Some(Cached::Failed(Instant::now() + FAILED_TOKEN_PAUSE));
                }
                Err(e)
            }
        }
    }

    /// One call to the token endpoint: a new access token and how long to use it.
    async fn fetch_token(&self) -> Result<(String, Duration), FcmError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Assertion {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + 3600,
        };
        let assertion = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(FcmError::Sign)?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let resp = self
            .http
            .post(&self.token_uri)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(FcmError::Http)?;
        if !resp.status().is_success() {
            return Err(FcmError::Token(format!("status {}", resp.status())));
        }
        let answer: TokenAnswer = resp.json().await.map_err(FcmError::Http)?;
        let life = Duration::from_secs(answer.expires_in).saturating_sub(RENEW_BEFORE);
        Ok((answer.access_token, life))
    }

    /// One attempt to push `payload` (the push's JSON) to the device with `token`, with
    /// the `access` token of [`Fcm::access`].
    pub async fn send(
        &self,
        access: &str,
        token: &str,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<Outcome, FcmError> {
        let body = serde_json::json!({
            "message": {
                "token": token,
                "data": { "payload": String::from_utf8_lossy(payload) },
                "android": { "priority": "high", "ttl": format!("{}s", ttl.as_secs()) },
            }
        });
        let resp = match self
            .http
            .post(&self.send_url)
            .bearer_auth(access)
            .json(&body)
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(_) => {
                return Ok(Outcome::Retry {
                    status: None,
                    retry_after: None,
                })
            }
        };
        let status = resp.status().as_u16();
        let retry_after = retry_after(&resp);
        if status == 401 {
            // The access token was refused (revoked, clock skew): get a new one, unless
            // another send already did.
            let mut cached = self.token.lock().await;
            if matches!(&*cached, Some(Cached::Token(t, _)) if t == access) {
                *cached = None;
            }
            return Ok(Outcome::Retry {
                status: Some(status),
                retry_after: None,
            });
        }
        let text = read_capped(resp, ERROR_BODY_MAX).await;
        if status == 400 && text.contains("UNREGISTERED") {
            return Ok(Outcome::Gone(status));
        }
        Ok(classify(status, retry_after))
    }
}

/// The start of `resp`'s body, at most `max` bytes (never the whole of a large answer).
pub(super) async fn read_capped(mut resp: reqwest::Response, max: usize) -> String {
    let mut out = Vec::new();
    while out.len() < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(max - out.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Settings of the FCM provider (`[push.fcm]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FcmConfig {
    /// The Firebase project's service account JSON (from the Firebase console); none: FCM
    /// targets are stored but not pushed.
    pub credentials_file: Option<PathBuf>,
    /// FCM's base URL (a local stand-in in tests).
    pub base_url: String,
    /// Replaces the service account's `token_uri` (a local stand-in in tests).
    pub token_url: Option<String>,
}

impl Default for FcmConfig {
    fn default() -> Self {
        Self {
            credentials_file: None,
            base_url: "https://fcm.googleapis.com".into(),
            token_url: None,
        }
    }
}

impl FcmConfig {
    pub(crate) fn problems(&self, out: &mut Vec<String>) {
        let urls = std::iter::once(&self.base_url).chain(self.token_url.as_ref());
        for url in urls {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                out.push(format!("push.fcm: {url:?} is not an http(s) URL"));
            }
        }
    }
}
