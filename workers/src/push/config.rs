//! The `[push]` section: whether the notifier runs, its VAPID identity, how long it waits
//! before deciding (collapse window, presence grace), and the bounds of its queues and
//! retries.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Settings of the push notifier (docs/PUSH.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Run the notifier in the worker and answer the push operations (`unavailable` when off).
    /// While no user has a push target the notifier keeps no consumer and costs nothing per
    /// message; with targets, one delivery and one ack per stored message (docs/PUSH.md).
    pub enabled: bool,
    /// Run the notifier inside the worker. False when separate `chatmesh notifier`
    /// processes send the pushes (a shared store only); the worker still answers the push
    /// operations.
    pub in_worker: bool,
    /// The VAPID private key (base64url, 32 bytes), created at first start; none: the file
    /// `vapid-key` beside the worker's `data_dir`.
    pub vapid_key_file: Option<PathBuf>,
    /// The VAPID `sub` claim: a `mailto:` or `https:` contact for push services.
    pub vapid_subject: String,
    /// Accept `http://` endpoints on loopback hosts. For tests' local receivers only.
    pub allow_http_loopback: bool,
    /// Most targets (devices, browsers) per user.
    pub max_targets_per_user: usize,
    /// Messages to one user within this window after the first become one push, ms.
    pub collapse_ms: u64,
    /// A member is pushed only if offline both when the message is stored and this long
    /// after (a reconnecting tab is not notified), ms. The push waits for the longer of
    /// `collapse_ms` and `grace_ms`.
    pub grace_ms: u64,
    /// Push services keep an undelivered push this long (the `TTL` header), seconds.
    pub ttl_secs: u64,
    /// Most members of one room considered per message (larger rooms: the first ones).
    pub max_room_members: usize,
    /// Most users waiting in their collapse window; a message for one more is not pushed.
    pub max_pending_users: usize,
    /// Requests to push services in flight at once (each attempt takes one; a retry's wait
    /// holds none); the requests to one push service (origin) at most a quarter of them.
    pub concurrency: usize,
    /// One HTTP request to a push service, ms.
    pub request_timeout_ms: u64,
    /// Retries of 429/5xx/transport failures stop this long after the first attempt, s.
    pub retry_max_secs: u64,
    /// Seconds JetStream waits for the notifier's ack of a message before redelivering.
    pub ack_wait_secs: u64,
    /// Messages the notifier holds unacked at most (those in collapse windows).
    pub max_ack_pending: i64,
    /// Firebase Cloud Messaging (HTTP v1).
    pub fcm: super::fcm::FcmConfig,
    /// Apple Push Notification service (HTTP/2, token authentication).
    pub apns: super::apns::ApnsConfig,
    /// An HTTP proxy every request to push services goes through (Web Push endpoints, FCM,
    /// APNs): `http://host:port` or `https://…`, `user:password@` for basic auth. None:
    /// straight out. Proxies named by the environment (`HTTPS_PROXY`) are not used.
    pub proxy: Option<String>,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            in_worker: true,
            vapid_key_file: None,
            vapid_subject: "mailto:push@chatmesh.invalid".into(),
            allow_http_loopback: false,
            max_targets_per_user: 10,
            collapse_ms: 3_000,
            grace_ms: 2_000,
            ttl_secs: 12 * 3600,
            max_room_members: 10_000,
            max_pending_users: 100_000,
            concurrency: 32,
            request_timeout_ms: 10_000,
            retry_max_secs: 60,
            ack_wait_secs: 60,
            max_ack_pending: 20_000,
            fcm: super::fcm::FcmConfig::default(),
            apns: super::apns::ApnsConfig::default(),
            proxy: None,
        }
    }
}

/// What is wrong with `[push] proxy`, if anything.
fn proxy_problem(proxy: &str) -> Option<String> {
    let url = match reqwest::Url::parse(proxy) {
        Ok(url) => url,
        // Not echoed: it may hold a password.
        Err(e) => return Some(format!("push.proxy is not a URL ({e})")),
    };
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && matches!(url.path(), "" | "/")
        && url.query().is_none();
    (!ok).then(|| {
        format!(
            "push.proxy must be an http:// or https:// proxy address (scheme, host, port): {}",
            redact(&url)
        )
    })
}

/// `url` without its password, for messages.
fn redact(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

impl PushConfig {
    /// Every problem of this section, prefixed `push.`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                out.push(format!("push.{msg}"));
            }
        };
        let sub = &self.vapid_subject;
        check(
            (sub.starts_with("mailto:") || sub.starts_with("https://")) && sub.len() > 8,
            "vapid_subject must be a mailto: or https:// contact",
        );
        check(
            (1..=100).contains(&self.max_targets_per_user),
            "max_targets_per_user must be between 1 and 100",
        );
        check(
            self.collapse_ms <= 60_000 && self.grace_ms <= 60_000,
            "collapse_ms and grace_ms must be at most 60000",
        );
        check(
            (60..=28 * 86_400).contains(&self.ttl_secs),
            "ttl_secs must be between 60 and 2419200",
        );
        check(
            (1..=1_000_000).contains(&self.max_room_members),
            "max_room_members must be between 1 and 1000000",
        );
        check(
            (1..=10_000_000).contains(&self.max_pending_users),
            "max_pending_users must be between 1 and 10000000",
        );
        check(
            (1..=1_024).contains(&self.concurrency),
            "concurrency must be between 1 and 1024",
        );
        check(
            (100..=120_000).contains(&self.request_timeout_ms),
            "request_timeout_ms must be between 100 and 120000",
        );
        check(
            self.retry_max_secs <= 86_400,
            "retry_max_secs must be at most 86400",
        );
        check(
            (5..=3_600).contains(&self.ack_wait_secs)
                && self.ack_wait_secs * 1_000 > self.collapse_ms.max(self.grace_ms) + 2_000,
            "ack_wait_secs must be between 5 and 3600 and exceed the collapse window by 2 s",
        );
        check(
            (1..=1_000_000).contains(&self.max_ack_pending),
            "max_ack_pending must be between 1 and 1000000",
        );
        if let Some(proxy) = &self.proxy {
            out.extend(proxy_problem(proxy));
        }
        self.fcm.problems(&mut out);
        self.apns.problems(&mut out);
        out
    }

    /// Where the VAPID key is kept: `vapid_key_file`, or `vapid-key` beside `data_dir`.
    pub fn vapid_key_path(&self, data_dir: &Path) -> PathBuf {
        match &self.vapid_key_file {
            Some(path) => path.clone(),
            None => data_dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join("vapid-key"),
        }
    }

    /// How long a notification waits before it is decided.
    pub fn delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.collapse_ms.max(self.grace_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_key_sits_beside_the_store() {
        assert!(PushConfig::default().problems().is_empty());
        let cfg = PushConfig::default();
        assert_eq!(
            cfg.vapid_key_path(Path::new("/d/store")),
            Path::new("/d/vapid-key")
        );
        assert_eq!(
            cfg.vapid_key_path(Path::new("store")),
            Path::new("./vapid-key")
        );
        let bad = PushConfig {
            vapid_subject: "me".into(),
            ..PushConfig::default()
        };
        assert_eq!(bad.problems().len(), 1);
    }

    /// A proxy is an http(s) address with a host and nothing after it; the message never
    /// shows its password.
    #[test]
    fn the_proxy_must_be_a_proxy_address() {
        let with = |proxy: &str| PushConfig {
            proxy: Some(proxy.into()),
            ..PushConfig::default()
        };
        for good in [
            "http://proxy.internal:3128",
            "https://10.0.0.5:8443/",
            "http://user:secret@proxy:3128",
        ] {
            assert!(with(good).problems().is_empty(), "{good}");
        }
        for bad in [
            "proxy:3128",
            "socks5://proxy:1080",
            "http://proxy:3128/path",
            "http://proxy:3128/?q=1",
            "http://user:secret@proxy:3128/x",
            "not a url",
        ] {
            let problems = with(bad).problems();
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(problems[0].starts_with("push.proxy"), "{problems:?}");
            assert!(!problems[0].contains("secret"), "{problems:?}");
        }
    }
}
