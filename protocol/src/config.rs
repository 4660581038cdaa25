//! Settings every service of one deployment must agree on: the NATS servers, the partition
//! count and the stream's retention. Services read them from the same config file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::subjects::DEFAULT_PARTITIONS;

/// Settings shared by gateways and workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshConfig {
    /// NATS server URLs.
    pub nats_urls: Vec<String>,
    /// Partitions rooms are hashed into. Fixed per deployment.
    pub partitions: u32,
    /// The regions of a multi-region deployment (docs/REGIONS.md), the primary first; each is
    /// the name of its NATS cluster. Empty: one region. Rooms named `<region>~<name>` live in
    /// stream `CHAT_<region>`, placed in that region; other rooms, the accounts and the
    /// workers live in the primary.
    pub regions: Vec<String>,
    /// The region this process runs in (one of `regions`): a room created through this
    /// gateway with `"home": "here"` is homed in it.
    pub region: Option<String>,
    /// Regions (besides the primary) that run workers and a store of their own
    /// (docs/REGIONS.md section 12): their rooms' messages, members, history and services
    /// stay in the region, and keep working while the primary is cut off. The streams of
    /// regions not listed are served by the primary's workers. Accounts, DMs and rooms
    /// without a home region live in the primary. Empty: every worker runs in the primary.
    pub regional_workers: Vec<String>,
    /// Replicas of the message stream (1 on one machine, 3 in a cluster).
    pub replicas: usize,
    /// How long JetStream keeps messages for resume (seconds); older ones come from the store.
    pub stream_max_age_secs: u64,
    /// Most messages of one room the stream holds (-1: no limit). At the cap the next message
    /// of the room is refused, never an old one dropped: the gateway asks the room's worker to
    /// trim what it has stored and retries until the publish deadline.
    pub stream_max_msgs_per_room: i64,
    /// Window in which a resend with the same id returns the original seq (seconds).
    pub duplicate_window_secs: u64,
    /// This service's NATS nkey seed file (`chatmesh nats-auth` writes one per role).
    pub nats_nkey_file: Option<PathBuf>,
    /// A NATS `.creds` file (JWT + nkey, for servers in operator mode), instead of an nkey.
    pub nats_creds_file: Option<PathBuf>,
    /// User name for NATS user/password auth, instead of an nkey.
    pub nats_user: Option<String>,
    /// Password for `nats_user` (prefer `CHATMESH__MESH__NATS_PASSWORD` to the file).
    pub nats_password: Option<Secret>,
    /// CA (PEM) the NATS servers' certificates are checked against; set, TLS is required.
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for servers that verify clients (mutual TLS).
    pub nats_tls_cert: Option<PathBuf>,
    /// Key (PEM) of `nats_tls_cert`.
    pub nats_tls_key: Option<PathBuf>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            nats_urls: vec!["nats://127.0.0.1:4222".into()],
            partitions: DEFAULT_PARTITIONS,
            regions: Vec::new(),
            region: None,
            regional_workers: Vec::new(),
            replicas: 1,
            stream_max_age_secs: 7 * 24 * 3600,
            stream_max_msgs_per_room: 100_000,
            duplicate_window_secs: 120,
            nats_nkey_file: None,
            nats_creds_file: None,
            nats_user: None,
            nats_password: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
        }
    }
}

impl MeshConfig {
    /// The streams and worker partitions of this deployment.
    pub fn topology(&self) -> crate::regions::Topology {
        crate::regions::Topology::new(self.partitions, &self.regions)
            .with_regional_workers(&self.regional_workers)
    }

    /// Every problem with these settings, so a bad config is reported all at once.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.nats_urls.is_empty() {
            out.push("mesh.nats_urls must name at least one server".into());
        }
        if self.partitions == 0 || self.partitions > 1024 {
            out.push("mesh.partitions must be between 1 and 1024".into());
        }
        for r in &self.regions {
            if !crate::regions::valid_region(r) {
                out.push(format!("mesh.regions: {r:?} must be 1-16 of a-z and 0-9"));
            }
        }
        let mut seen = self.regions.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.regions.len() {
            out.push("mesh.regions names a region twice".into());
        }
        if let Some(r) = &self.region {
            if !self.regions.contains(r) {
                out.push(format!("mesh.region {r:?} is not one of mesh.regions"));
            }
        }
        for r in &self.regional_workers {
            if !self.regions.contains(r) {
                out.push(format!(
                    "mesh.regional_workers: {r:?} is not one of mesh.regions"
                ));
            }
        }
        if !(1..=5).contains(&self.replicas) {
            out.push("mesh.replicas must be between 1 and 5".into());
        }
        if self.duplicate_window_secs == 0 {
            out.push("mesh.duplicate_window_secs must be positive".into());
        }
        if self.stream_max_age_secs != 0 && self.stream_max_age_secs < self.duplicate_window_secs {
            out.push("mesh.stream_max_age_secs must be at least the duplicate window".into());
        }
        out.extend(self.credential_problems());
        out
    }

    /// Problems of the NATS credential and TLS settings: at most one way to authenticate,
    /// a password with its user, a client certificate with its key, files that exist.
    fn credential_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let ways = [
            self.nats_nkey_file.is_some(),
            self.nats_creds_file.is_some(),
            self.nats_user.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            out.push("mesh: set only one of nats_nkey_file, nats_creds_file and nats_user".into());
        }
        if self.nats_user.is_some() != self.nats_password.is_some() {
            out.push("mesh.nats_user and mesh.nats_password go together".into());
        }
        if self.nats_tls_cert.is_some() != self.nats_tls_key.is_some() {
            out.push("mesh.nats_tls_cert and mesh.nats_tls_key go together".into());
        }
        let files = [
            ("nats_nkey_file", &self.nats_nkey_file),
            ("nats_creds_file", &self.nats_creds_file),
            ("nats_tls_ca", &self.nats_tls_ca),
            ("nats_tls_cert", &self.nats_tls_cert),
            ("nats_tls_key", &self.nats_tls_key),
        ];
        for (key, path) in files {
            if let Some(path) = path {
                if !path.is_file() {
                    out.push(format!("mesh.{key}: {} does not exist", path.display()));
                }
            }
        }
        out
    }

    /// Whether this service presents any credentials to NATS.
    pub fn has_nats_credentials(&self) -> bool {
        self.nats_nkey_file.is_some() || self.nats_creds_file.is_some() || self.nats_user.is_some()
    }
}

/// A secret setting: read like a string, never printed (its `Debug` is `"<redacted>"`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Credentials are checked together, and a password never shows in a debug print.
    #[test]
    fn credential_settings_are_checked_and_secrets_redacted() {
        let mut cfg = MeshConfig {
            nats_user: Some("gw".into()),
            nats_nkey_file: Some("/nonexistent/gw.nk".into()),
            ..MeshConfig::default()
        };
        let problems = cfg.problems().join("\n");
        assert!(problems.contains("only one of"), "{problems}");
        assert!(problems.contains("go together"), "{problems}");
        assert!(problems.contains("does not exist"), "{problems}");
        cfg.nats_nkey_file = None;
        cfg.nats_password = Some(Secret("hunter2-hunter2".into()));
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(cfg.has_nats_credentials());
    }
}
