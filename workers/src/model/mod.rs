//! The chat model, written once above [`KvStore`] for every backend: messages and their
//! per-partition checkpoints, rooms and their stats, members and the reverse index of a
//! user's rooms, users, read cursors, shared files (their records, the messages that
//! carry them and the bytes each room and user holds), push targets, settings and delivery
//! marks, mentions, reactions and threads, bans, mutes and room names, and the key-package
//! directory of e2ee rooms. No rules live here (who may do what is the service
//! layer's job) and no caching (the cache wraps the model, not the backends).

pub mod admin;
pub mod e2ee;
mod files;
pub mod keys;
mod mentions;
mod messages;
mod moderation;
mod push;
mod reactions;
pub mod records;
mod rooms;
mod threads;
mod users;

use std::ops::Range;

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::store::{Direction, GroupCommit, KvStore, Store, StoreError, WriteBatch};

pub use messages::HistoryQuery;
pub use records::{
    BanRecord, Cursor, Deletion, EditRef, FileRecord, MarkRemoval, MuteRecord, PushTargetRecord,
    ReactionMark, RoomMeta, RoomStats, StoredMessage, UserReactions, UserRecord,
};

/// Data access for the chat model. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Model {
    store: Store,
    /// Where writes go when they are group-committed (a running worker); else to the store.
    group: Option<GroupCommit>,
}

impl Model {
    pub fn new(store: Store) -> Self {
        Self { store, group: None }
    }

    /// This model with every write group-committed: one store write per `linger` window
    /// (at most `max_ops` operations) for all of its clones. Needs a tokio runtime.
    pub fn with_group_commit(self, linger: std::time::Duration, max_ops: usize) -> Self {
        let group = GroupCommit::start(self.store.clone(), linger, max_ops);
        Self {
            group: Some(group),
            ..self
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Commits `batch` atomically (one fsync with the default policy), with whatever else
    /// is written in the same window when writes are group-committed.
    pub async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        match &self.group {
            Some(group) => group.write(batch).await,
            None => self.store.write(batch).await,
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.store.get(key).await? {
            Some(bytes) => Ok(Some(records::decode(key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` records of an index range whose keys end in a second name (a user's
    /// rooms, devices or push targets, a room's members or bans), as (that name, record),
    /// in key order.
    async fn scan_named<T: DeserializeOwned>(
        &self,
        range: Range<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let pairs = self.store.scan(range, Direction::Forward, limit).await?;
        pairs
            .into_iter()
            .map(|(k, v)| {
                let name = keys::second_name(&k).ok_or_else(|| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    detail: "index key without a second name".into(),
                })?;
                Ok((name.to_owned(), records::decode(&k, &v)?))
            })
            .collect()
    }
}

/// The id of the one DM room of users `a` and `b` (in either order): `dm_` and the hex of
/// the first 12 bytes of sha256(min + "\n" + max). 27 characters, a valid room id.
pub fn dm_room(a: &str, b: &str) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = Sha256::new();
    h.update(lo.as_bytes());
    h.update(b"\n");
    h.update(hi.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(27);
    out.push_str("dm_");
    for b in &digest[..12] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Prefix reserved for DM room ids: nobody may create a room with it.
pub const DM_PREFIX: &str = "dm_";
