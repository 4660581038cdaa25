//! Regions (docs/REGIONS.md): the streams of a deployment and the worker partitions they
//! are cut into.
//!
//! A one-region deployment has one stream, `CHAT`, cut into `P` partitions. With regions
//! `[r0, r1, …]` there is `CHAT` (rooms without a home region, kept in the first region, the
//! primary) and one stream `CHAT_<r>` per region, each cut into `P` partitions. A worker
//! partition number `g` names both: stream `g / P` (0 = `CHAT`, `i + 1` = region `i`) and its
//! partition `g % P`. Partition numbers of `CHAT` are the one-region numbers, so a
//! deployment that adds regions keeps its store checkpoints, leases and consumers.

use std::sync::Arc;

use crate::subjects::{self, home_region, partition};

/// Longest region name.
pub const MAX_REGION_LEN: usize = 16;

/// Checks a region name: `[a-z0-9]{1,16}` (it is a subject token and part of stream names).
pub fn valid_region(name: &str) -> bool {
    (1..=MAX_REGION_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The streams and worker partitions of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    partitions: u32,
    regions: Arc<[String]>,
}

impl Topology {
    /// `partitions` per stream, for `regions` (empty: one region).
    pub fn new(partitions: u32, regions: &[String]) -> Self {
        Self {
            partitions: partitions.max(1),
            regions: regions.into(),
        }
    }

    /// The configured regions, the primary first (empty: one region).
    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    /// Partitions per stream (`mesh.partitions`).
    pub fn per_stream(&self) -> u32 {
        self.partitions
    }

    /// How many streams: `CHAT`, then one per region.
    pub fn streams(&self) -> u32 {
        1 + u32::try_from(self.regions.len()).unwrap_or(u32::MAX - 1)
    }

    /// Worker partitions over every stream.
    pub fn count(&self) -> u32 {
        self.partitions.saturating_mul(self.streams())
    }

    /// The home region of stream `s` (`None` for `CHAT`).
    pub fn stream_region(&self, s: u32) -> Option<&str> {
        let i = usize::try_from(s.checked_sub(1)?).ok()?;
        self.regions.get(i).map(String::as_str)
    }

    /// The stream index of a room id or user name, `None` if it names a region this
    /// deployment does not have.
    pub fn stream_of(&self, key: &str) -> Option<u32> {
        match home_region(key) {
            None => Some(0),
            Some(r) => {
                let i = self.regions.iter().position(|x| x == r)?;
                u32::try_from(i + 1).ok()
            }
        }
    }

    /// The worker partition of a room id or user name (`None`: unknown home region).
    pub fn partition_of(&self, key: &str) -> Option<u32> {
        let s = self.stream_of(key)?;
        Some(s * self.partitions + partition(key, self.partitions))
    }

    /// The home region and the partition within its stream of worker partition `g`.
    pub fn split(&self, g: u32) -> (Option<&str>, u32) {
        (self.stream_region(g / self.partitions), g % self.partitions)
    }

    /// The stream name of stream index `s`.
    pub fn stream_name(&self, s: u32) -> String {
        subjects::region_stream(self.stream_region(s))
    }

    /// The stream worker partition `g` reads.
    pub fn partition_stream(&self, g: u32) -> String {
        self.stream_name(g / self.partitions)
    }

    /// The subject filter of worker partition `g` in its stream.
    pub fn partition_filter(&self, g: u32) -> String {
        let (region, p) = self.split(g);
        subjects::in_partition_filter(region, p)
    }

    /// The service subjects worker partition `g` answers.
    pub fn partition_services(&self, g: u32) -> String {
        let (region, p) = self.split(g);
        subjects::svc_partition_wildcard(region, p)
    }

    /// The region stream `s` lives in: its home, or the primary for `CHAT` (`""` with no
    /// regions).
    pub fn home_of_stream(&self, s: u32) -> &str {
        self.stream_region(s)
            .or_else(|| self.regions.first().map(String::as_str))
            .unwrap_or("")
    }

    /// Whether this deployment has regions.
    pub fn has_regions(&self) -> bool {
        !self.regions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subjects::{in_subject, svc_subject};

    fn two() -> Topology {
        Topology::new(16, &["eu".to_owned(), "us".to_owned()])
    }

    #[test]
    fn one_region_is_the_plain_partitioning() {
        let t = Topology::new(16, &[]);
        assert_eq!(t.count(), 16);
        assert_eq!(t.partition_of("general"), Some(partition("general", 16)));
        assert_eq!(t.partition_of("us~general"), None);
        assert_eq!(t.partition_stream(3), "CHAT");
        assert_eq!(t.partition_filter(3), "chat.in.3.>");
        assert_eq!(t.partition_services(3), "chat.svc.3.*");
    }

    #[test]
    fn regions_add_a_block_of_partitions_per_stream() {
        let t = two();
        assert_eq!(t.count(), 48);
        let p = partition("us~general", 16);
        let g = t.partition_of("us~general").unwrap();
        assert_eq!(g, 32 + p);
        assert_eq!(t.split(g), (Some("us"), p));
        assert_eq!(t.partition_stream(g), "CHAT_us");
        assert_eq!(t.partition_stream(p), "CHAT");
        assert_eq!(t.partition_stream(16 + p), "CHAT_eu");
        assert_eq!(t.partition_of("ap~x"), None);
        // What a partition consumes and answers is what gateways publish and call.
        let subject = in_subject(16, "us~general");
        let filter = t.partition_filter(g);
        assert!(subject.starts_with(filter.trim_end_matches('>')));
        let svc = svc_subject(16, "us~general", "history");
        assert!(svc.starts_with(t.partition_services(g).trim_end_matches('*')));
    }

    #[test]
    fn region_names_are_short_lowercase_tokens() {
        assert!(valid_region("eu"));
        assert!(valid_region("us2"));
        for bad in ["", "EU", "e.u", "e~u", "e_u", &"a".repeat(17)] {
            assert!(!valid_region(bad), "{bad:?}");
        }
    }
}
