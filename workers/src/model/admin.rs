//! What the admin API keeps in the store: the audit log, the list of accounts, and the
//! marker of a room being deleted (which says how far the deletion got, so that it goes on
//! where it stopped, on any worker, after any restart).
//!
//! Audit keys are `Z`, then `u64::MAX - ts` (newest first: a page is a forward scan), then
//! the writing process's random node id and a counter, so two workers sharing a store never
//! write the same key, even in the same millisecond. They have no hash prefix: the log is
//! small and read in time order.

use std::ops::Range;

use chatmesh_protocol::admin::AuditEntry;
use serde::{Deserialize, Serialize};

use super::records::{self, UserRecord};
use super::{keys, Model};
use crate::store::{Direction, KvStore, StoreError, WriteBatch};

const AUDIT: u8 = b'Z';
const DELETING: u8 = b'D';
/// The tag of user records (`keys::user`).
const USER: u8 = b'u';

/// How far a room's deletion got; stored under `D h16(room) room` until it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomDeletion {
    /// The admin who started it, and when (ms since the Unix epoch).
    pub by: String,
    pub ts: u64,
    pub phase: DeletePhase,
    /// Where the current phase goes on (a store key; empty: its start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resume: Vec<u8>,
    pub members: u64,
    pub messages: u64,
    pub cursors: u64,
}

/// The phases of a room's deletion, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletePhase {
    /// Members (and their cursors), a page per step; each is told it left.
    Members,
    /// The room's messages in the stream (one purge).
    Stream,
    /// The room's messages in the store with what hangs on them, a page per step.
    Messages,
    /// The room's files (bytes, records, quota use), a page per step.
    Files,
    /// Read cursors of former members: a scan of every cursor, a page per step.
    Cursors,
    /// Stats and the marker; then the name is free.
    Finish,
}

impl DeletePhase {
    pub fn name(self) -> &'static str {
        match self {
            Self::Members => "members",
            Self::Stream => "stream",
            Self::Messages => "messages",
            Self::Files => "files",
            Self::Cursors => "cursors",
            Self::Finish => "finish",
        }
    }
}

/// The key of an audit entry written at `ts` by process `node` as its `n`th.
pub fn audit_key(ts: u64, node: u64, n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(AUDIT);
    k.extend_from_slice(&(u64::MAX - ts).to_be_bytes());
    k.extend_from_slice(&node.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// Every audit key, newest first.
pub fn audit_all() -> Range<Vec<u8>> {
    keys::prefix_range(vec![AUDIT])
}

/// The audit keys of entries written before `ts`.
pub fn audit_before(ts: u64) -> Range<Vec<u8>> {
    let mut start = vec![AUDIT];
    start.extend_from_slice(&(u64::MAX - ts).saturating_add(1).to_be_bytes());
    start..audit_all().end
}

/// The marker of `room`'s deletion.
pub fn deleting(room: &str) -> Vec<u8> {
    keys::named(DELETING, room, 0)
}

/// The id an audit entry is known by: the hex of its key after the tag.
pub fn audit_id(key: &[u8]) -> String {
    hex::encode(key.get(1..).unwrap_or_default())
}

/// The key of the entry with this id, if the id is one.
pub fn audit_key_of(id: &str) -> Option<Vec<u8>> {
    let tail = hex::decode(id).ok().filter(|t| t.len() == 24)?;
    let mut k = vec![AUDIT];
    k.extend_from_slice(&tail);
    Some(k)
}

impl Model {
    pub fn put_audit(batch: &mut WriteBatch, key: Vec<u8>, entry: &AuditEntry) {
        batch.put(key, records::encode(entry));
    }

    /// Up to `limit` audit entries from `range` (newest first), and whether more follow.
    pub async fn audit(
        &self,
        range: Range<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        let pairs = self
            .store
            .scan(range, Direction::Forward, limit + 1)
            .await?;
        let more = pairs.len() > limit;
        let entries = pairs
            .into_iter()
            .take(limit)
            .map(|(k, v)| {
                let mut e: AuditEntry = records::decode(&k, &v)?;
                e.id = audit_id(&k);
                Ok(e)
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((entries, more))
    }

    /// Up to `limit` accounts after the account `after` (all with `None`), in key order
    /// (by the name's hash, then the name: stable, not alphabetical), and whether more follow.
    pub async fn users_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(String, UserRecord)>, bool), StoreError> {
        let all = keys::prefix_range(vec![USER]);
        let start = match after {
            // Names never hold a 0 byte: this is the smallest key above `after`'s.
            Some(user) => {
                let mut k = keys::user(user);
                k.push(0);
                k
            }
            None => all.start,
        };
        let pairs = self
            .store
            .scan(start..all.end, Direction::Forward, limit + 1)
            .await?;
        let more = pairs.len() > limit;
        let users = pairs
            .into_iter()
            .take(limit)
            .map(|(k, v)| {
                let name = std::str::from_utf8(k.get(3..).unwrap_or_default())
                    .map_err(|e| StoreError::Corrupt {
                        key: String::from_utf8_lossy(&k).into_owned(),
                        detail: e.to_string(),
                    })?
                    .to_owned();
                Ok((name, records::decode(&k, &v)?))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((users, more))
    }

    /// The state of `room`'s deletion, if one is under way.
    pub async fn deletion(&self, room: &str) -> Result<Option<RoomDeletion>, StoreError> {
        self.get_json(&deleting(room)).await
    }

    pub fn put_deletion(batch: &mut WriteBatch, room: &str, state: &RoomDeletion) {
        batch.put(deleting(room), records::encode(state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_keys_run_newest_first_and_ids_give_the_key_back() {
        let (old, new) = (audit_key(1_000, 7, 0), audit_key(2_000, 7, 1));
        assert!(new < old);
        assert!(audit_all().contains(&old) && audit_all().contains(&new));
        assert!(audit_before(2_000).contains(&old) && !audit_before(2_000).contains(&new));
        assert_eq!(audit_key_of(&audit_id(&old)), Some(old.clone()));
        assert_eq!(audit_key_of("zz"), None);
        // Two processes in the same millisecond: two keys.
        assert_ne!(audit_key(5, 1, 0), audit_key(5, 2, 0));
    }
}
