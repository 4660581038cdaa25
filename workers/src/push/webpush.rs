//! The Web Push provider: one push is an HTTP POST to the subscription's endpoint
//! (RFC 8030) of the payload encrypted for the subscription with aes128gcm (RFC 8291,
//! `web-push-native`), signed for with VAPID (RFC 8292, [`super::vapid`]).
//!
//! What the push service answers decides what happens next ([`Outcome`]): 2xx delivered,
//! 404/410 the subscription is gone, 429 and 5xx (and transport failures) retried later
//! (honouring `Retry-After`), any other status refused for good.

use std::time::Duration;

use chatmesh_protocol::push::WebPushKeys;
use http::header::{AUTHORIZATION, RETRY_AFTER};
use web_push_native::WebPushBuilder;

use super::vapid::{Vapid, VapidError};
use crate::service::{origin, subscription_keys};

/// Longest a VAPID token is valid (RFC 8292: at most 24 hours).
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(12 * 3600);

/// What a push attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 404/410: the subscription no longer exists.
    Gone(u16),
    /// 429, 5xx or a transport failure: try again, after `retry_after` if the service said.
    Retry {
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    /// Any other status: this push will never be accepted.
    Refused(u16),
}

/// Why a push could not even be attempted.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the subscription's keys or endpoint are unusable: {0}")]
    Subscription(String),
    #[error("encrypting the payload")]
    Encrypt(#[source] web_push_native::Error),
    #[error(transparent)]
    Vapid(#[from] VapidError),
    #[error("building the request")]
    Request(#[source] reqwest::Error),
}

/// Sends Web Push messages. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct WebPush {
    http: reqwest::Client,
    ttl: Duration,
    /// Set when pushes go through a proxy: each endpoint's name is checked first.
    vet: Option<super::egress::PublicOnly>,
}

/// The Web Push client: each request bounded by `timeout`, redirects never followed, and
/// only public addresses connected to ([`super::egress`]; loopback too when
/// `allow_loopback`, for tests' local receivers). Through `proxy` when set: then the proxy
/// resolves the endpoints' names, and [`WebPush`] vets them before each push.
pub fn client(
    timeout: Duration,
    allow_loopback: bool,
    proxy: Option<&str>,
) -> Result<reqwest::Client, reqwest::Error> {
    let builder = super::egress::route(builder(timeout), proxy)?;
    match proxy {
        // Only the proxy's own name is resolved here: the operator's, wherever it is.
        Some(_) => builder.build(),
        None => builder
            .dns_resolver(super::egress::PublicOnly { allow_loopback })
            .build(),
    }
}

/// The client of the operator's push services (FCM): as [`client`], but to wherever the
/// operator's settings point.
pub fn operator_client(
    timeout: Duration,
    proxy: Option<&str>,
) -> Result<reqwest::Client, reqwest::Error> {
    super::egress::route(builder(timeout), proxy)?.build()
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    // reqwest's rustls has no provider of its own here: ring, as everywhere in chatmesh.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
}

impl WebPush {
    /// Pushes that the services keep `ttl`, each request bounded by `timeout`, through
    /// `proxy` when set (loopback endpoints allowed with `allow_loopback`: tests).
    pub fn open(
        timeout: Duration,
        ttl: Duration,
        allow_loopback: bool,
        proxy: Option<&str>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: client(timeout, allow_loopback, proxy)?,
            ttl,
            vet: proxy.map(|_| super::egress::PublicOnly { allow_loopback }),
        })
    }

    /// One attempt to push `payload` to the subscription at `endpoint`.
    pub async fn send(
        &self,
        vapid: &Vapid,
        endpoint: &str,
        keys: &WebPushKeys,
        payload: &[u8],
    ) -> Result<Outcome, BuildError> {
        let (ua_public, auth) =
            subscription_keys(keys).map_err(|e| BuildError::Subscription(e.to_string()))?;
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| BuildError::Subscription(e.to_string()))?;
        if let (Some(vet), Some(host)) = (&self.vet, uri.host()) {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let Err(e) = vet.vet(host).await {
                tracing::debug!(error = %chatmesh_protocol::error::Chain(&e), "push endpoint refused before the proxy");
                return Ok(Outcome::Retry {
                    status: None,
                    retry_after: None,
                });
            }
        }
        let mut req = WebPushBuilder::new(uri, ua_public, auth)
            .with_valid_duration(self.ttl)
            .build(payload.to_vec())
            .map_err(BuildError::Encrypt)?;
        let header = vapid.header(origin(endpoint), self.ttl.min(MAX_TOKEN_LIFE))?;
        let value = header
            .parse()
            .map_err(|e: http::header::InvalidHeaderValue| {
                BuildError::Subscription(e.to_string())
            })?;
        req.headers_mut().insert(AUTHORIZATION, value);
        let req = reqwest::Request::try_from(req).map_err(BuildError::Request)?;
        let resp = match self.http.execute(req).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(error = %chatmesh_protocol::error::Chain(&e), "push transport failure");
                return Ok(Outcome::Retry {
                    status: None,
                    retry_after: None,
                });
            }
        };
        let status = resp.status().as_u16();
        let retry_after = retry_after(&resp);
        Ok(classify(status, retry_after))
    }
}

/// A response's `Retry-After`, when it gives seconds.
pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// The longest `Retry-After` believed: a push service's (or an endpoint owner's) value of
/// 2^64-1 seconds overflowed the retry's deadline arithmetic (a panic). Longer waits than
/// this are past any `retry_max_secs` anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// A `Retry-After` of seconds, at most [`MAX_RETRY_AFTER`].
fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs = value.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// What a push service's status means.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        404 | 410 => Outcome::Gone(status),
        429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            retry_after,
        },
        _ => Outcome::Refused(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_and_bounded() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("soon"), None);
        let huge = parse_retry_after("18446744073709551615").unwrap();
        assert_eq!(huge, MAX_RETRY_AFTER);
        assert!(tokio::time::Instant::now().checked_add(huge).is_some());
    }

    #[test]
    fn statuses_decide_what_follows() {
        assert_eq!(classify(201, None), Outcome::Delivered);
        assert_eq!(classify(410, None), Outcome::Gone(410));
        assert_eq!(classify(404, None), Outcome::Gone(404));
        let wait = Some(Duration::from_secs(3));
        assert_eq!(
            classify(429, wait),
            Outcome::Retry {
                status: Some(429),
                retry_after: wait
            }
        );
        assert!(matches!(classify(503, None), Outcome::Retry { .. }));
        assert_eq!(classify(400, None), Outcome::Refused(400));
        assert_eq!(classify(413, None), Outcome::Refused(413));
    }
}
