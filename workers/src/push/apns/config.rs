//! The `[push.apns]` section: the team's token signing key and its ids, the APNs hosts
//! (Apple's by default; a loopback stand-in in tests, the only place `http://` is taken),
//! and CA certificates to trust beside the system's.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Settings of the APNs provider (`[push.apns]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApnsConfig {
    /// The token signing key (`.p8`, PEM) from the Apple developer account; none: APNs
    /// targets are stored but not pushed.
    pub key_file: Option<PathBuf>,
    /// The key's id, 10 characters (the provider token's `kid`).
    pub key_id: Option<String>,
    /// The developer team's id, 10 characters (the provider token's `iss`).
    pub team_id: Option<String>,
    /// APNs for targets registered without `sandbox` (a local stand-in in tests).
    pub base_url: String,
    /// APNs for targets registered with `"sandbox": true` (development builds of the app).
    pub sandbox_base_url: String,
    /// More CA certificates (PEM) to trust for the APNs hosts, beside the system's: for an
    /// egress proxy that terminates TLS, or a stand-in. None by default: Apple's hosts
    /// chain to the public roots.
    pub ca_file: Option<PathBuf>,
    /// The APNs topics (the apps' bundle ids) targets may be registered for; a target with
    /// another is refused (`bad_request`). Empty: any topic (the provider token signs for
    /// every app of the team, so list them in production).
    pub topics: Vec<String>,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            key_id: None,
            team_id: None,
            base_url: "https://api.push.apple.com".into(),
            sandbox_base_url: "https://api.sandbox.push.apple.com".into(),
            ca_file: None,
            topics: Vec::new(),
        }
    }
}

impl ApnsConfig {
    pub(crate) fn problems(&self, out: &mut Vec<String>) {
        for url in [&self.base_url, &self.sandbox_base_url] {
            if !(url.starts_with("https://") || loopback_http(url)) {
                out.push(format!(
                    "push.apns: {url:?} is not an https:// URL (http:// only to a loopback stand-in)"
                ));
            }
        }
        if self.key_file.is_some() {
            for (name, value) in [("key_id", &self.key_id), ("team_id", &self.team_id)] {
                let ok = value
                    .as_deref()
                    .is_some_and(|v| v.len() == 10 && v.chars().all(|c| c.is_ascii_alphanumeric()));
                if !ok {
                    out.push(format!(
                        "push.apns: {name} must be the 10 letters and digits Apple gives (key_file is set)"
                    ));
                }
            }
        }
    }
}

/// `http://` to 127.0.0.1, localhost or [::1]: cleartext HTTP/2 (h2c) to a test's stand-in.
/// The provider token is a bearer, so it never crosses a network in the clear.
fn loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_wants_https_and_the_whole_identity() {
        let mut out = Vec::new();
        ApnsConfig::default().problems(&mut out);
        assert!(out.is_empty(), "{out:?}");
        let cfg = ApnsConfig {
            key_file: Some("k.p8".into()),
            key_id: Some("ABC123DEFG".into()),
            team_id: Some("short".into()),
            base_url: "http://api.push.apple.com".into(),
            sandbox_base_url: "http://127.0.0.1:4000".into(),
            ca_file: None,
            topics: Vec::new(),
        };
        cfg.problems(&mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            out[0].contains("https") && out[1].contains("team_id"),
            "{out:?}"
        );
        assert!(loopback_http("http://[::1]:80/") && loopback_http("http://localhost"));
        assert!(!loopback_http("http://127.0.0.1.example/"));
    }
}
