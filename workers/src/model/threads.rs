//! Thread records: one per reply, under its root, so a thread is a range scan in seq order
//! and a reader's unread replies a bounded scan above its thread cursor. Written by the
//! store writer with the replies, deleted by retention with them; a reply that is deleted
//! stays listed (as a tombstone), like in the room's history.

use super::records::{self};
use super::{keys, Model};
use crate::store::{Direction, KvStore, StoreError, WriteBatch};

impl Model {
    /// Records reply `seq` (from `from`) in the thread of `root`.
    pub fn put_reply(batch: &mut WriteBatch, room: &str, root: u64, seq: u64, from: &str) {
        batch.put(keys::reply(room, root, seq), from.as_bytes().to_vec());
    }

    pub fn delete_reply(batch: &mut WriteBatch, room: &str, root: u64, seq: u64) {
        batch.delete(keys::reply(room, root, seq));
    }

    /// Up to `limit` seqs of replies to `root` above `after`, oldest first, and whether
    /// more follow.
    pub async fn replies(
        &self,
        room: &str,
        root: u64,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<u64>, bool), StoreError> {
        let pairs = self
            .store
            .scan(
                keys::replies_after(room, root, after),
                Direction::Forward,
                limit + 1,
            )
            .await?;
        let more = pairs.len() > limit;
        let seqs = pairs
            .iter()
            .take(limit)
            .filter_map(|(k, _)| keys::seq_of_reply(k))
            .collect();
        Ok((seqs, more))
    }

    /// How many replies to `root` above `after` are not from `user`, at most `limit`.
    pub async fn replies_unread(
        &self,
        room: &str,
        root: u64,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let pairs = self
            .store
            .scan(
                keys::replies_after(room, root, after),
                Direction::Forward,
                limit.saturating_mul(4),
            )
            .await?;
        let n = pairs
            .iter()
            .filter(|(_, from)| from.as_slice() != user.as_bytes())
            .take(limit)
            .count();
        Ok(n as u64)
    }

    /// `user`'s read cursor in the thread of `root` (0: nothing read).
    pub async fn thread_cursor(
        &self,
        user: &str,
        room: &str,
        root: u64,
    ) -> Result<u64, StoreError> {
        let key = keys::thread_cursor(user, room, root);
        match self.store.get(&key).await? {
            Some(v) => records::decode_u64(&key, &v),
            None => Ok(0),
        }
    }

    pub fn put_thread_cursor(batch: &mut WriteBatch, user: &str, room: &str, root: u64, seq: u64) {
        batch.put(
            keys::thread_cursor(user, room, root),
            records::encode_u64(seq),
        );
    }
}
