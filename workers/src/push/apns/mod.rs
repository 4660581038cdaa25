//! The APNs provider: Apple Push Notification service over HTTP/2 with token
//! authentication. One push is `POST {base_url}/3/device/{token}` with a provider token
//! ([`token`]) as bearer and the body of [`body`]; all of them travel on one long-lived
//! HTTP/2 connection per APNs host (a reqwest client of its own, HTTP/2 only, never idled
//! out, pinged while idle).
//!
//! Not the `a2` crate: its endpoint is an enum of Apple's two hosts (no stand-in can be
//! put in its place for tests) and its default TLS is OpenSSL.
//!
//! Answers ([`classify`]): 2xx delivered; 410, or 400 `BadDeviceToken` /
//! `DeviceTokenNotForTopic`, the token is gone; 429 and 5xx retried (honouring
//! `Retry-After`); 403 `ExpiredProviderToken` / `InvalidProviderToken` drops the provider
//! token if it is at least 20 minutes old and tries once more; anything else is refused.

pub mod body;
pub mod config;
pub mod token;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatmesh_protocol::push::PushPayload;
use serde::Deserialize;

use super::fcm::read_capped;
use super::webpush::{retry_after, Outcome};
pub use config::ApnsConfig;
use token::ProviderToken;

/// Most bytes of an APNs error answer read (`{"reason": "..."}`).
const ERROR_BODY_MAX: usize = 1024;
/// HTTP/2 pings on the idle connection, so that it stays open (and a dead one is noticed).
const PING_EVERY: Duration = Duration::from_secs(60);

/// Why APNs could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ApnsError {
    #[error("reading the APNs key {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the APNs key {path} is not a P-256 PKCS#8 key (.p8)")]
    Key {
        path: PathBuf,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("push.apns: key_file is set without key_id and team_id")]
    Identity,
    #[error("reading the CA certificates {path}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {path} is not a PEM certificate bundle")]
    Ca {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("the CA file {path} holds no PEM certificate")]
    NoCa { path: PathBuf },
    #[error("signing the APNs provider token")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("building the APNs HTTP/2 client")]
    Client(#[source] reqwest::Error),
}

/// What one APNs answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Final for this attempt, as for the other providers.
    Then(Outcome),
    /// The provider token was refused: sign a new one and try again.
    RenewToken,
}

/// What an APNs status and `reason` mean.
pub fn classify(status: u16, reason: &str, retry_after: Option<Duration>) -> Verdict {
    Verdict::Then(match (status, reason) {
        (200..=299, _) => Outcome::Delivered,
        (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => Outcome::Gone(status),
        (403, "ExpiredProviderToken" | "InvalidProviderToken") => return Verdict::RenewToken,
        (429 | 500..=599, _) => Outcome::Retry {
            status: Some(status),
            retry_after,
        },
        _ => Outcome::Refused(status),
    })
}

#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    reason: String,
}

/// Sends APNs pushes for one team's key.
#[derive(Debug)]
pub struct Apns {
    http: reqwest::Client,
    base_url: String,
    sandbox_base_url: String,
    token: ProviderToken,
    ttl: Duration,
}

impl Apns {
    /// Reads the key of `cfg` (whose `key_file` is set); pushes expire `ttl` after they
    /// are sent and each request is bounded by `timeout`; through `proxy` when set (an
    /// HTTP CONNECT tunnel carries the TLS connection).
    pub fn open(
        cfg: &ApnsConfig,
        timeout: Duration,
        ttl: Duration,
        proxy: Option<&str>,
    ) -> Result<Self, ApnsError> {
        let (Some(path), Some(key_id), Some(team_id)) = (&cfg.key_file, &cfg.key_id, &cfg.team_id)
        else {
            return Err(ApnsError::Identity);
        };
        let pem = std::fs::read(path).map_err(|source| ApnsError::Read {
            path: path.clone(),
            source,
        })?;
        let token = ProviderToken::new(&pem, key_id, team_id).map_err(|source| ApnsError::Key {
            path: path.clone(),
            source,
        })?;
        let extra_roots = extra_roots(cfg)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = crate::push::egress::route(reqwest::Client::builder(), proxy)
            .map_err(ApnsError::Client)?;
        let http = builder
            .tls_certs_merge(extra_roots)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .http2_prior_knowledge()
            .pool_idle_timeout(None)
            .http2_keep_alive_interval(PING_EVERY)
            .http2_keep_alive_while_idle(true)
            .build()
            .map_err(ApnsError::Client)?;
        Ok(Self {
            http,
            base_url: cfg.base_url.trim_end_matches('/').to_owned(),
            sandbox_base_url: cfg.sandbox_base_url.trim_end_matches('/').to_owned(),
            token,
            ttl,
        })
    }

    /// The APNs host pushes go to: the sandbox's for development builds of the app.
    pub fn base_url(&self, sandbox: bool) -> &str {
        match sandbox {
            true => &self.sandbox_base_url,
            false => &self.base_url,
        }
    }

    /// One push of `payload` to the device `token` of the app `topic`: one request, or two
    /// when the first is refused for its provider token.
    pub async fn send(
        &self,
        device: &str,
        topic: &str,
        sandbox: bool,
        payload: &PushPayload,
    ) -> Result<Outcome, ApnsError> {
        let url = format!("{}/3/device/{device}", self.base_url(sandbox));
        let body = body::request(payload);
        let collapse_id = body::collapse_id(payload);
        let expiration = (SystemTime::now() + self.ttl)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string();
        let mut status = 403;
        for _ in 0..2 {
            let bearer = self.token.get().map_err(ApnsError::Sign)?;
            let sent = self
                .http
                .post(&url)
                .bearer_auth(&bearer)
                .header("apns-topic", topic)
                .header("apns-push-type", "alert")
                .header("apns-priority", "10")
                .header("apns-expiration", &expiration)
                .header("apns-collapse-id", &collapse_id)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::debug!(error = %chatmesh_protocol::error::Chain(&e), "APNs transport failure");
                    return Ok(Outcome::Retry {
                        status: None,
                        retry_after: None,
                    });
                }
            };
            status = resp.status().as_u16();
            let wait = retry_after(&resp);
            let reason = if resp.status().is_success() {
                String::new()
            } else {
                let text = read_capped(resp, ERROR_BODY_MAX).await;
                serde_json::from_str::<ErrorAnswer>(&text)
                    .map(|a| a.reason)
                    .unwrap_or_default()
            };
            match classify(status, &reason, wait) {
                Verdict::Then(outcome) => {
                    if !reason.is_empty() {
                        tracing::debug!(status, reason, "APNs answer");
                    }
                    return Ok(outcome);
                }
                Verdict::RenewToken => {
                    tracing::warn!(reason, "APNs refused the provider token; signing a new one");
                    self.token.refused(&bearer);
                }
            }
        }
        Ok(Outcome::Refused(status))
    }
}

/// The CA certificates of `ca_file` (none without it), trusted beside the system's.
fn extra_roots(cfg: &ApnsConfig) -> Result<Vec<reqwest::Certificate>, ApnsError> {
    let Some(path) = &cfg.ca_file else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(path).map_err(|source| ApnsError::ReadCa {
        path: path.clone(),
        source,
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ApnsError::Ca {
        path: path.clone(),
        source,
    })?;
    if certs.is_empty() {
        return Err(ApnsError::NoCa { path: path.clone() });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decide_what_follows() {
        let then = |o| Verdict::Then(o);
        assert_eq!(classify(200, "", None), then(Outcome::Delivered));
        assert_eq!(
            classify(410, "Unregistered", None),
            then(Outcome::Gone(410))
        );
        assert_eq!(
            classify(400, "BadDeviceToken", None),
            then(Outcome::Gone(400))
        );
        assert_eq!(
            classify(400, "DeviceTokenNotForTopic", None),
            then(Outcome::Gone(400))
        );
        assert_eq!(
            classify(400, "BadCollapseId", None),
            then(Outcome::Refused(400))
        );
        assert_eq!(
            classify(403, "ExpiredProviderToken", None),
            Verdict::RenewToken
        );
        assert_eq!(
            classify(403, "InvalidProviderToken", None),
            Verdict::RenewToken
        );
        assert_eq!(
            classify(403, "BadCertificate", None),
            then(Outcome::Refused(403))
        );
        assert_eq!(classify(404, "BadPath", None), then(Outcome::Refused(404)));
        assert_eq!(
            classify(413, "PayloadTooLarge", None),
            then(Outcome::Refused(413))
        );
        let wait = Some(Duration::from_secs(2));
        for status in [429, 500, 503] {
            assert_eq!(
                classify(status, "", wait),
                then(Outcome::Retry {
                    status: Some(status),
                    retry_after: wait
                })
            );
        }
    }
}
