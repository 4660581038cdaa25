//! Retention: deleting a room's oldest messages once they are older than a maximum age or
//! beyond a maximum count, in the background, a bounded amount of work per step.
//!
//! Limits are global (`[worker.retention]`) with per-room overrides in the same section
//! (`[worker.retention.rooms.<room>]`): config, not the room record, so an operator changes
//! them without a service call and every worker agrees after a restart. Only the oldest end of
//! a room is ever deleted, oldest first, and nothing else is rewritten but edits' bodies: the remaining messages
//! keep their `prev`, so a resume from a deleted seq sees the first remaining message's `prev`
//! above its cursor and the gateway answers `gap`. Room stats (`last_seq`, `count`) are not
//! touched: positions (`n`) and unread counts stay valid. A trimmed message's mention,
//! reaction and thread records go with it (a thread whose root is trimmed keeps its
//! remaining replies), and the bodies of its edits, which are later messages that stay
//! (their author could not delete them any more: their target is gone). Age is judged by
//! the gateway's `ts`
//! in seq order: deletion stops at the first message that is young enough.
//!
//! A worker trims only the rooms of the partitions it owns (their store writer is its own),
//! and each read-and-delete of a page excludes its store writers ([`Caches::trimming`]):
//! a writer applying an edit, a delete or a reaction reads its target and writes it back,
//! which would bring back a message deleted in between.
//!
//! The same sweep deletes audit entries older than `[admin] audit_retention_days`
//! ([`Retention::with_audit`]), once a minute, whether message retention is on or not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::counter;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::cache::Caches;
use crate::model::{keys, records, Model, StoredMessage};
use crate::store::{Direction, KvStore, StoreError, WriteBatch};

/// Limits of one room; `None` takes the global value; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomRetention {
    pub max_age_secs: Option<u64>,
    pub max_messages: Option<u64>,
}

/// `[worker.retention]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Delete messages older than this (0: keep for ever).
    pub max_age_secs: u64,
    /// Keep at most this many messages per room (0: no limit).
    pub max_messages: u64,
    /// Pause between steps, ms.
    pub interval_ms: u64,
    /// Rooms looked at per step.
    pub rooms_per_step: usize,
    /// Messages deleted per step at most.
    pub deletes_per_step: usize,
    /// Per-room overrides, by room id.
    pub rooms: BTreeMap<String, RoomRetention>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age_secs: 0,
            max_messages: 0,
            interval_ms: 1_000,
            rooms_per_step: 256,
            deletes_per_step: 4_096,
            rooms: BTreeMap::new(),
        }
    }
}

impl RetentionConfig {
    /// Whether any room can have anything to delete.
    pub fn enabled(&self) -> bool {
        self.max_age_secs > 0
            || self.max_messages > 0
            || self.rooms.values().any(|r| {
                r.max_age_secs.is_some_and(|v| v > 0) || r.max_messages.is_some_and(|v| v > 0)
            })
    }

    /// (max age in ms, max messages) of `room`; 0 means unlimited.
    pub fn limits(&self, room: &str) -> (u64, u64) {
        let o = self.rooms.get(room).copied().unwrap_or_default();
        let age = o.max_age_secs.unwrap_or(self.max_age_secs);
        (
            age.saturating_mul(1_000),
            o.max_messages.unwrap_or(self.max_messages),
        )
    }

    pub(crate) fn problems(&self, out: &mut Vec<String>) {
        if !(10..=3_600_000).contains(&self.interval_ms) {
            out.push("worker.retention.interval_ms must be between 10 and 3600000".into());
        }
        if !(1..=100_000).contains(&self.rooms_per_step)
            || !(1..=1_000_000).contains(&self.deletes_per_step)
        {
            out.push(
                "worker.retention.rooms_per_step (1..=100000) and deletes_per_step \
                 (1..=1000000) are out of range"
                    .into(),
            );
        }
        for room in self.rooms.keys() {
            if chatmesh_protocol::validate_name("room", room).is_err() {
                out.push(format!("worker.retention.rooms: {room:?} is not a room id"));
            }
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    pub rooms: usize,
    pub deleted: u64,
    /// The step reached the last room; the next one starts again from the first.
    pub wrapped: bool,
}

/// The retention walker: it remembers where the last step stopped.
pub struct Retention {
    model: Model,
    caches: Option<Arc<Caches>>,
    cfg: RetentionConfig,
    resume: Vec<u8>,
    search: Option<crate::search::Indexes>,
    /// Which rooms this worker owns (`None`: all of them).
    owns: Option<crate::files::Owns>,
    /// Audit entries are kept this long, ms (0: for ever); trimmed at most once a minute.
    audit_keep_ms: u64,
    audit_trimmed_at: u64,
}

/// How often audit entries past their retention are deleted, ms.
const AUDIT_TRIM_EVERY_MS: u64 = 60_000;

/// How many of the oldest messages are read at once while deleting.
const READ_PAGE: usize = 256;

impl Retention {
    /// `caches`: the worker's, so deleted messages leave its recent pages.
    pub fn new(model: Model, caches: Option<Arc<Caches>>, cfg: RetentionConfig) -> Self {
        let resume = keys::stats_all().start;
        Self {
            model,
            caches,
            cfg,
            resume,
            search: None,
            owns: None,
            audit_keep_ms: 0,
            audit_trimmed_at: 0,
        }
    }

    /// Also deletes audit entries older than `days` (0: keeps them for ever).
    pub fn with_audit(mut self, days: u64) -> Self {
        self.audit_keep_ms = days.saturating_mul(86_400_000);
        self
    }

    /// Deletes the audit entries past their retention, if a minute went by since the last
    /// time; answers how many.
    pub async fn trim_audit(&mut self, now_ms: u64) -> Result<u64, StoreError> {
        if self.audit_keep_ms == 0
            || now_ms.saturating_sub(self.audit_trimmed_at) < AUDIT_TRIM_EVERY_MS
        {
            return Ok(0);
        }
        self.audit_trimmed_at = now_ms;
        let cut = now_ms.saturating_sub(self.audit_keep_ms);
        let range = crate::model::admin::audit_before(cut);
        self.model.store().delete_range(range).await
    }

    /// Trims only the rooms `owns` says this worker owns now: another worker's store writer
    /// is not excluded by this one's gate.
    pub fn only_owned(mut self, owns: crate::files::Owns) -> Self {
        self.owns = Some(owns);
        self
    }

    /// Also removes what it deletes from the search indexes.
    pub fn with_search(mut self, search: Option<crate::search::Indexes>) -> Self {
        self.search = search;
        self
    }

    /// Looks at up to `rooms_per_step` rooms and deletes at most `deletes_per_step` messages.
    pub async fn step(&mut self, now_ms: u64) -> Result<StepReport, StoreError> {
        let all = keys::stats_all();
        let rooms = self
            .model
            .store()
            .scan(
                self.resume.clone()..all.end.clone(),
                Direction::Forward,
                self.cfg.rooms_per_step,
            )
            .await?;
        let mut report = StepReport {
            wrapped: rooms.len() < self.cfg.rooms_per_step,
            ..StepReport::default()
        };
        let mut budget = self.cfg.deletes_per_step as u64;
        for (key, value) in &rooms {
            let Some(room) = keys::room_of_stats(key) else {
                continue;
            };
            if self.owns.as_ref().is_some_and(|owns| !owns(room)) {
                self.resume = key.clone();
                self.resume.push(0);
                continue;
            }
            let deleted = match self.room_step(room, key, value, now_ms, budget).await {
                Ok(deleted) => deleted,
                // A record that cannot be read (written by another version, damaged) holds
                // up its own room, not every room after it in key order.
                Err(e @ StoreError::Corrupt { .. }) => {
                    counter!(crate::metrics::RETENTION_SKIPPED).increment(1);
                    warn!(room, error = %chatmesh_protocol::error::Chain(&e), "retention skipped a room it cannot read");
                    0
                }
                Err(e) => return Err(e),
            };
            budget -= deleted;
            report.deleted += deleted;
            report.rooms += 1;
            if budget == 0 {
                // The room may have more: the next step starts with it again.
                self.resume = key.clone();
                report.wrapped = false;
                return Ok(report);
            }
            self.resume = key.clone();
            self.resume.push(0);
        }
        if report.wrapped {
            self.resume = all.start;
        }
        Ok(report)
    }

    /// Trims `room` (its stats record `key`, `value`) to its limits as of `now_ms`, deleting
    /// at most `budget` messages.
    async fn room_step(
        &self,
        room: &str,
        key: &[u8],
        value: &[u8],
        now_ms: u64,
        budget: u64,
    ) -> Result<u64, StoreError> {
        let stats: crate::model::RoomStats = records::decode(key, value)?;
        let (max_age_ms, max_messages) = self.cfg.limits(room);
        let cut_n = match max_messages {
            0 => 0,
            m => stats.count.saturating_sub(m),
        };
        let cut_ts = match max_age_ms {
            0 => 0,
            a => now_ms.saturating_sub(a),
        };
        self.trim(room, cut_n, cut_ts, budget).await
    }

    /// Deletes `room`'s oldest messages while `n <= cut_n` or `ts < cut_ts`, at most `budget`.
    async fn trim(
        &self,
        room: &str,
        cut_n: u64,
        cut_ts: u64,
        budget: u64,
    ) -> Result<u64, StoreError> {
        if cut_n == 0 && cut_ts == 0 {
            return Ok(0);
        }
        let range = keys::messages_of(room);
        let mut deleted = 0u64;
        // Probe the oldest message alone first: most rooms have nothing to delete.
        let mut page = 1usize;
        while deleted < budget {
            let want = page.min(usize::try_from(budget - deleted).unwrap_or(usize::MAX));
            let trimming = match &self.caches {
                Some(c) => Some(c.trimming().await),
                None => None,
            };
            let oldest = self
                .model
                .store()
                .scan(range.clone(), Direction::Reverse, want)
                .await?;
            let mut batch = WriteBatch::new();
            let mut done = oldest.len() < want;
            let mut n = 0u64;
            let mut gone = Vec::new();
            let mut last = 0u64;
            let mut edits = Vec::new();
            for (k, v) in &oldest {
                let m: StoredMessage = records::decode(k, v)?;
                if m.n > cut_n && m.ts >= cut_ts {
                    done = true;
                    break;
                }
                edits.extend(m.edits.iter().map(|e| e.seq));
                if let Some(seq) = keys::seq_of_message(k) {
                    Model::delete_mentions(&mut batch, room, seq, &m.mentions);
                    gone.push((room.to_owned(), seq));
                    if let Some(root) = m.thread_root {
                        Model::delete_reply(&mut batch, room, root, seq);
                    }
                    last = seq;
                }
                batch.delete(k.clone());
                n += 1;
            }
            // The edits of a trimmed message outlive it (their seqs are later) and hold its
            // later versions, which its author could no longer delete (the target is gone):
            // their bodies go with it.
            for seq in edits {
                if gone.iter().any(|(_, s)| *s == seq) {
                    continue;
                }
                if let Some(mut e) = self.model.message(room, seq).await? {
                    if !e.body.is_empty() {
                        e.body.clear();
                        Model::put_message(&mut batch, room, seq, &e);
                    }
                }
            }
            if n > 0 {
                self.model.write(batch).await?;
                deleted += n;
                // Reaction records are keyed by their message's seq: those of every message
                // trimmed so far are one range (taken-off reactions leave records too).
                let all = keys::reactions_all(room);
                let upto = keys::reactions_of(room, last.saturating_add(1)).start;
                self.model.store().delete_range(all.start..upto).await?;
                drop(trimming);
                if let Some(search) = &self.search {
                    if let Err(e) = search.remove(gone).await {
                        counter!(crate::metrics::SEARCH_ERRORS).increment(1);
                        warn!(room, error = %chatmesh_protocol::error::Chain(&e), "could not remove trimmed messages from the search index");
                    }
                }
            }
            if done {
                break;
            }
            page = READ_PAGE;
        }
        if deleted > 0 {
            debug!(room, deleted, "retention deleted old messages");
            if let Some(c) = &self.caches {
                c.trimmed(room).await;
            }
        }
        Ok(deleted)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs retention steps until `shutdown`: back to back while a step finds work, else one
/// step per `interval_ms`.
pub async fn run(mut retention: Retention, shutdown: CancellationToken) {
    let messages = retention.cfg.enabled();
    if !messages && retention.audit_keep_ms == 0 {
        return;
    }
    let interval = Duration::from_millis(retention.cfg.interval_ms);
    loop {
        match retention.trim_audit(now_ms()).await {
            Ok(0) => {}
            Ok(n) => debug!(deleted = n, "retention deleted old audit entries"),
            Err(e) => {
                warn!(error = %chatmesh_protocol::error::Chain(&e), "deleting old audit entries failed")
            }
        }
        if !messages {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            continue;
        }
        let busy = match retention.step(now_ms()).await {
            Ok(r) => {
                metrics::counter!(crate::metrics::RETENTION_DELETED).increment(r.deleted);
                r.deleted > 0 && !r.wrapped
            }
            Err(e) => {
                warn!(error = %chatmesh_protocol::error::Chain(&e), "retention step failed");
                false
            }
        };
        let pause = if busy { Duration::ZERO } else { interval };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_protocol::admin::AuditEntry;

    use super::*;
    use crate::model::admin::{audit_all, audit_key};

    fn entry(ts: u64) -> AuditEntry {
        AuditEntry {
            id: String::new(),
            ts,
            actor: "root".into(),
            action: "disable".into(),
            target: "bob".into(),
            outcome: "ok".into(),
            ip: "127.0.0.1".into(),
            detail: String::new(),
        }
    }

    /// Audit entries older than the retention go, younger ones stay; at most once a minute.
    #[tokio::test]
    async fn old_audit_entries_are_deleted_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::WorkerConfig {
            data_dir: dir.path().to_path_buf(),
            ..crate::WorkerConfig::default()
        };
        let model = Model::new(crate::open_store(&cfg).await.unwrap());
        let day = 86_400_000u64;
        let now = 400 * day;
        let mut batch = WriteBatch::new();
        for (n, age_days) in [400u64, 31, 29, 1].into_iter().enumerate() {
            let ts = now - age_days * day;
            Model::put_audit(&mut batch, audit_key(ts, 1, n as u64), &entry(ts));
        }
        model.write(batch).await.unwrap();
        let mut r = Retention::new(model.clone(), None, RetentionConfig::default()).with_audit(30);
        assert_eq!(r.trim_audit(now).await.unwrap(), 2);
        let (left, _) = model.audit(audit_all(), 10).await.unwrap();
        let ages: Vec<u64> = left.iter().map(|e| (now - e.ts) / day).collect();
        assert_eq!(ages, [1, 29], "newest first, the old ones gone");
        // Within the minute nothing is looked at; a day later the 29-day-old entry goes.
        assert_eq!(r.trim_audit(now + 1_000).await.unwrap(), 0);
        assert_eq!(r.trim_audit(now + 61_000 + day).await.unwrap(), 1);
        let kept = Retention::new(model.clone(), None, RetentionConfig::default());
        let mut kept = kept.with_audit(0);
        assert_eq!(
            kept.trim_audit(now * 2).await.unwrap(),
            0,
            "0 keeps for ever"
        );
    }
}
