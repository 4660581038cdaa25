//! Settings every service of one deployment must agree on: the NATS servers, the partition
//! count and the stream's retention. Services read them from the same config file.

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
    /// Replicas of the message stream (1 on one machine, 3 in a cluster).
    pub replicas: usize,
    /// How long JetStream keeps messages for resume (seconds); older ones come from the store.
    pub stream_max_age_secs: u64,
    /// Messages JetStream keeps per room for resume (-1: no limit).
    pub stream_max_msgs_per_room: i64,
    /// Window in which a resend with the same id returns the original seq (seconds).
    pub duplicate_window_secs: u64,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            nats_urls: vec!["nats://127.0.0.1:4222".into()],
            partitions: DEFAULT_PARTITIONS,
            replicas: 1,
            stream_max_age_secs: 7 * 24 * 3600,
            stream_max_msgs_per_room: 100_000,
            duplicate_window_secs: 120,
        }
    }
}

impl MeshConfig {
    /// Every problem with these settings, so a bad config is reported all at once.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.nats_urls.is_empty() {
            out.push("mesh.nats_urls must name at least one server".into());
        }
        if self.partitions == 0 || self.partitions > 1024 {
            out.push("mesh.partitions must be between 1 and 1024".into());
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
        out
    }
}
