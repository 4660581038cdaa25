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
    /// Regions (not the primary) whose own workers serve their stream (`mesh.regional_workers`).
    regional: Arc<[String]>,
}

impl Topology {
    /// `partitions` per stream, for `regions` (empty: one region).
    pub fn new(partitions: u32, regions: &[String]) -> Self {
        Self {
            partitions: partitions.max(1),
            regions: regions.into(),
            regional: Arc::new([]),
        }
    }

    /// The same, with `regions` (`mesh.regional_workers`) running workers and a store of
    /// their own for the rooms homed in them; every other stream is served by the primary's
    /// workers.
    pub fn with_regional_workers(mut self, regions: &[String]) -> Self {
        let primary = self.regions.first().cloned();
        self.regional = regions
            .iter()
            .filter(|r| self.regions.contains(r) && Some(*r) != primary.as_ref())
            .cloned()
            .collect();
        self
    }

    /// Whether `region` runs workers and a store of its own (the primary always does).
    pub fn has_own_workers(&self, region: &str) -> bool {
        self.regions.first().is_some_and(|p| p == region)
            || self.regional.iter().any(|r| r == region)
    }

    /// The regions (not the primary) whose own workers serve their rooms.
    pub fn regional_workers(&self) -> &[String] {
        &self.regional
    }

    /// The region whose workers serve stream `s`: its home when that region has workers of
    /// its own, else the primary (`None`).
    pub fn serving_region(&self, s: u32) -> Option<&str> {
        self.stream_region(s)
            .filter(|r| self.regional.iter().any(|x| x == r))
    }

    /// The workers' region a process of `region` belongs to: `None` (the primary's) for the
    /// primary, no region, or a region without workers of its own.
    pub fn workers_of<'a>(&self, region: Option<&'a str>) -> Option<&'a str> {
        region.filter(|r| self.regional.iter().any(|x| x == r))
    }

    /// The streams the workers of `workers` (see [`Topology::workers_of`]) serve.
    pub fn served_streams(&self, workers: Option<&str>) -> Vec<u32> {
        (0..self.streams())
            .filter(|s| self.serving_region(*s) == workers)
            .collect()
    }

    /// The worker partitions the workers of `workers` run.
    pub fn served_partitions(&self, workers: Option<&str>) -> Vec<u32> {
        self.served_streams(workers)
            .into_iter()
            .flat_map(|s| s * self.partitions..(s + 1) * self.partitions)
            .collect()
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
    fn regional_workers_serve_their_own_stream_and_the_primary_the_rest() {
        let regions = ["eu".to_owned(), "us".to_owned(), "ap".to_owned()];
        let t =
            Topology::new(4, &regions).with_regional_workers(&["us".to_owned(), "eu".to_owned()]);
        // The primary is listed to no effect: its workers serve it anyway.
        assert_eq!(t.regional_workers(), ["us".to_owned()]);
        assert!(t.has_own_workers("eu") && t.has_own_workers("us") && !t.has_own_workers("ap"));
        assert_eq!(t.served_streams(None), vec![0, 1, 3]);
        assert_eq!(t.served_streams(Some("us")), vec![2]);
        assert_eq!(t.served_partitions(Some("us")), vec![8, 9, 10, 11]);
        assert_eq!(t.served_partitions(None).len(), 12);
        assert_eq!(t.workers_of(Some("us")), Some("us"));
        assert_eq!(t.workers_of(Some("ap")), None);
        assert_eq!(t.workers_of(Some("eu")), None);
        // Every partition is served by exactly one region's workers.
        let mut all = t.served_partitions(None);
        all.extend(t.served_partitions(Some("us")));
        all.sort_unstable();
        assert_eq!(all, (0..t.count()).collect::<Vec<_>>());
        // Without regional workers the primary serves everything, as in phase 1.
        let plain = Topology::new(4, &regions);
        assert_eq!(plain.served_partitions(None), (0..16).collect::<Vec<_>>());
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
