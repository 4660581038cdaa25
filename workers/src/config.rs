//! The worker's own settings (the `[worker]` section of the config file), with defaults that
//! suit one machine. Settings every service must agree on live in
//! [`chatmesh_protocol::MeshConfig`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::store::{FsyncPolicy, TikvConfig};

/// Storage backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Embedded fjall database in `data_dir`.
    #[default]
    Fjall,
    /// A TiKV cluster (`[worker.tikv]`); needs a build with the `tikv` feature.
    Tikv,
}

pub use crate::retention::RetentionConfig;

/// Settings of one worker process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Storage backend.
    pub backend: Backend,
    /// Directory of the embedded database.
    pub data_dir: PathBuf,
    /// When a write batch reaches the disk: `sync_data` (one fdatasync per batch) or `buffered`.
    pub fsync: FsyncPolicy,
    /// fjall block cache, MiB.
    pub store_cache_mb: u64,
    /// fjall memtable flushed to a table file at this size, MiB.
    pub store_memtable_mb: u64,
    /// Most messages one partition's store-writer batch holds; a group commit holds at most
    /// four times as many store operations.
    pub batch_max_messages: usize,
    /// How long the group commit waits for more partitions' batches after the first, ms: one
    /// store write and one fsync per window.
    pub batch_linger_ms: u64,
    /// Seconds JetStream waits for a store writer's ack before redelivering.
    pub ack_wait_secs: u64,
    /// Longest time a stored message waits for its store writer's (lazy) ack, ms. Acks only
    /// let JetStream forget what the store holds already; each costs nats-server a consumer
    /// state write, so fewer are cheaper (docs/PERFORMANCE.md).
    pub ack_interval_ms: u64,
    /// Messages kept per room in the recent-page cache.
    pub recent_page_len: usize,
    /// Size of the recent-page cache, MiB.
    pub page_cache_mb: u64,
    /// Entries of the (room, user) access cache.
    pub access_cache_entries: u64,
    /// Entries of the room record cache.
    pub room_cache_entries: u64,
    /// Entries of the room stats cache.
    pub stats_cache_entries: u64,
    /// Service requests handled at once (password requests are admitted apart: see
    /// `password_queue`). At most half of them wait for the stream or the store writer
    /// longer than 50 ms (docs/OPERATIONS.md).
    pub service_concurrency: usize,
    /// argon2id memory cost, KiB (OWASP minimum: 19,456).
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
    /// Most entries one page of `rooms_list` returns (more rooms of the user's come on the
    /// next pages).
    pub rooms_list_max: usize,
    /// The TiKV cluster, when `backend = "tikv"`.
    pub tikv: TikvConfig,
    /// How long messages are kept in the store.
    pub retention: RetentionConfig,
    /// How partitions are shared with other workers.
    pub ownership: crate::ownership::OwnershipConfig,
    /// When another live process holds the embedded (fjall) store, wait as a hot standby and
    /// take over once it is released (the OS releases it when that process dies), instead
    /// of failing at start.
    pub standby: bool,
    /// Password requests (register, login) that may wait for a hashing thread; one more is
    /// refused at once with `rate_limited` (HTTP 429).
    pub password_queue: usize,
    /// Threads that hash passwords; 0: one less than the cores, at least 1, at most 4.
    pub password_threads: usize,
    /// Wrong passwords per account per minute from every gateway together (the owner of the
    /// account's partition counts them); past `login_account_burst`, logins of the account
    /// are refused `rate_limited` before any hashing. Each gateway has its own bucket too.
    pub login_account_failures_per_minute: u32,
    /// Wrong passwords an account may take at once before the per-minute rate applies.
    pub login_account_burst: u32,
    /// Most rooms one user may create (`forbidden` beyond it).
    pub max_rooms_per_user: u64,
    /// Most users one room may hold banned (`forbidden` beyond it; unban someone first).
    pub max_bans_per_room: u64,
    /// Longest a history read waits for this worker's store to catch up with the stream
    /// (so it includes every acked message), ms; then it is answered `unavailable`.
    pub history_wait_ms: u64,
    /// Most bytes of JSON-encoded messages in one history page (fewer messages, with
    /// `more`, beyond it; at least one). Also kept under the NATS server's `max_payload`.
    pub history_page_max_bytes: usize,
    /// Most public rooms the user is not in that `rooms_list` appends after the user's own.
    pub rooms_list_public_max: usize,
    /// Most rooms of one owner among those public rooms (so one owner cannot fill the list).
    pub rooms_list_public_per_owner: usize,
    /// Full-text search: the worker's index.
    pub search: crate::search::SearchConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Fjall,
            data_dir: PathBuf::from("data/worker"),
            fsync: FsyncPolicy::SyncData,
            store_cache_mb: 64,
            store_memtable_mb: 16,
            batch_max_messages: 512,
            batch_linger_ms: 4,
            ack_wait_secs: 60,
            ack_interval_ms: 100,
            recent_page_len: 128,
            page_cache_mb: 64,
            access_cache_entries: 200_000,
            room_cache_entries: 100_000,
            stats_cache_entries: 200_000,
            service_concurrency: 64,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            rooms_list_max: 1_000,
            tikv: TikvConfig::default(),
            retention: RetentionConfig::default(),
            ownership: crate::ownership::OwnershipConfig::default(),
            standby: false,
            password_queue: 64,
            password_threads: 0,
            login_account_failures_per_minute: 20,
            login_account_burst: 40,
            max_rooms_per_user: 100,
            max_bans_per_room: chatmesh_protocol::moderation::DEFAULT_MAX_BANS_PER_ROOM,
            rooms_list_public_max: 100,
            rooms_list_public_per_owner: 10,
            history_wait_ms: 2_000,
            history_page_max_bytes: 512 * 1024,
            search: crate::search::SearchConfig::default(),
        }
    }
}

impl WorkerConfig {
    /// Where the search indexes live: `search.dir`, or beside `data_dir` (`<data_dir>.search`:
    /// the embedded store owns its folder).
    pub fn search_dir(&self) -> PathBuf {
        if self.search.dir.as_os_str().is_empty() {
            let mut dir = self.data_dir.clone().into_os_string();
            dir.push(".search");
            PathBuf::from(dir)
        } else {
            self.search.dir.clone()
        }
    }
}

impl WorkerConfig {
    /// The caches' sizes.
    pub fn cache_sizes(&self) -> crate::cache::CacheSizes {
        crate::cache::CacheSizes {
            page_cache_mb: self.page_cache_mb,
            room_cache_entries: self.room_cache_entries,
            access_cache_entries: self.access_cache_entries,
            stats_cache_entries: self.stats_cache_entries,
            recent_page_len: self.recent_page_len,
        }
    }

    /// Every problem with these settings, so a bad config is reported all at once.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                out.push(format!("worker.{msg}"));
            }
        };
        check(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir must not be empty",
        );
        check(
            (1..=100_000).contains(&self.store_cache_mb),
            "store_cache_mb must be between 1 and 100000",
        );
        check(
            (1..=1_024).contains(&self.store_memtable_mb),
            "store_memtable_mb must be between 1 and 1024",
        );
        check(
            (1..=10_000).contains(&self.batch_max_messages),
            "batch_max_messages must be between 1 and 10000",
        );
        check(
            self.batch_linger_ms <= 1_000,
            "batch_linger_ms must be at most 1000",
        );
        check(
            (5..=3_600).contains(&self.ack_wait_secs),
            "ack_wait_secs must be between 5 and 3600",
        );
        check(
            (1..=self.ack_wait_secs.saturating_mul(250)).contains(&self.ack_interval_ms),
            "ack_interval_ms must be between 1 and a quarter of ack_wait_secs",
        );
        check(
            (1..=10_000).contains(&self.recent_page_len),
            "recent_page_len must be between 1 and 10000",
        );
        check(self.page_cache_mb >= 1, "page_cache_mb must be at least 1");
        check(
            self.access_cache_entries >= 1,
            "access_cache_entries must be at least 1",
        );
        check(
            self.room_cache_entries >= 1,
            "room_cache_entries must be at least 1",
        );
        check(
            self.stats_cache_entries >= 1,
            "stats_cache_entries must be at least 1",
        );
        check(
            (1..=10_000).contains(&self.service_concurrency),
            "service_concurrency must be between 1 and 10000",
        );
        check(
            (8..=4 * 1024 * 1024).contains(&self.argon2_memory_kib),
            "argon2_memory_kib must be between 8 and 4194304",
        );
        check(
            (1..=100).contains(&self.argon2_iterations),
            "argon2_iterations must be between 1 and 100",
        );
        check(
            (1..=10_000).contains(&self.rooms_list_max),
            "rooms_list_max must be between 1 and 10000",
        );
        check(
            self.password_queue <= 100_000,
            "password_queue must be at most 100000",
        );
        check(
            self.password_threads <= 64,
            "password_threads must be at most 64 (0: automatic)",
        );
        check(
            (1..=100_000).contains(&self.login_account_failures_per_minute),
            "login_account_failures_per_minute must be between 1 and 100000",
        );
        check(
            (1..=100_000).contains(&self.login_account_burst),
            "login_account_burst must be between 1 and 100000",
        );
        check(
            (1..=1_000_000).contains(&self.max_rooms_per_user),
            "max_rooms_per_user must be between 1 and 1000000",
        );
        check(
            (1..=1_000_000).contains(&self.max_bans_per_room),
            "max_bans_per_room must be between 1 and 1000000",
        );
        check(
            self.rooms_list_public_max <= self.rooms_list_max,
            "rooms_list_public_max must be at most rooms_list_max",
        );
        check(
            (1..=30_000).contains(&self.history_wait_ms),
            "history_wait_ms must be between 1 and 30000",
        );
        check(
            (16 * 1024..=64 * 1024 * 1024).contains(&self.history_page_max_bytes),
            "history_page_max_bytes must be between 16384 and 67108864",
        );
        check(
            self.rooms_list_public_per_owner >= 1,
            "rooms_list_public_per_owner must be at least 1",
        );
        if self.backend == Backend::Tikv {
            self.tikv.problems(&mut out);
            if self.standby {
                out.push(
                    "worker.standby waits for the lock of an embedded fjall store; with \
                     backend = \"tikv\" every worker opens the store at once (no standby needed)"
                        .into(),
                );
            }
        }
        self.retention.problems(&mut out);
        out.extend(self.ownership.problems());
        out.extend(
            self.search
                .problems()
                .into_iter()
                .map(|p| format!("worker.{p}")),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_problem_is_reported() {
        assert!(WorkerConfig::default().problems().is_empty());
        let bad = WorkerConfig {
            data_dir: PathBuf::new(),
            batch_max_messages: 0,
            service_concurrency: 0,
            max_rooms_per_user: 0,
            rooms_list_public_per_owner: 0,
            search: crate::search::SearchConfig {
                commit_ms: 10,
                commits_per_second: 0,
                ..Default::default()
            },
            ..WorkerConfig::default()
        };
        assert_eq!(bad.problems().len(), 7, "{:?}", bad.problems());
        assert!(bad
            .problems()
            .contains(&"worker.search.commits_per_second must be between 1 and 100".to_owned()));
        let standby_tikv = WorkerConfig {
            backend: Backend::Tikv,
            standby: true,
            ..WorkerConfig::default()
        };
        assert!(
            standby_tikv
                .problems()
                .iter()
                .any(|p| p.starts_with("worker.standby")),
            "{:?}",
            standby_tikv.problems()
        );
        let standby_fjall = WorkerConfig {
            standby: true,
            ..WorkerConfig::default()
        };
        assert!(standby_fjall.problems().is_empty());
    }

    #[test]
    fn parses_partial_config_and_refuses_unknown_fields() {
        let c: WorkerConfig = serde_json::from_str(r#"{"fsync":"buffered"}"#).unwrap();
        assert_eq!(c.fsync, FsyncPolicy::Buffered);
        assert!(serde_json::from_str::<WorkerConfig>(r#"{"fsynk":"buffered"}"#).is_err());
    }
}
