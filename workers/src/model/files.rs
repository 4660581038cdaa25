//! Shared files: their records, the references messages hold to them (written by the store
//! writer with the messages, so a file is known to be in use exactly when a stored message
//! carries it), the mark of a file whose last carrying message a delete took (it is gone
//! for good: a moderator's delete must not be undone by attaching the file again), and the
//! bytes of files each room and each user in a room holds (quotas).

use super::records::{self, FileRecord};
use super::{keys, Model};
use crate::store::{Direction, KvPair, KvStore, StoreError, WriteBatch};

impl Model {
    pub async fn file(&self, room: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
        self.get_json(&keys::file(room, id)).await
    }

    pub fn put_file(batch: &mut WriteBatch, room: &str, id: &str, file: &FileRecord) {
        batch.put(keys::file(room, id), records::encode(file));
    }

    /// Deletes a file's references now, a bounded chunk of keys at a time (a file attached to
    /// a million messages has a million), and adds its record's deletion to `batch`. A crash
    /// in between leaves the record without references: the next sweep deletes it again.
    pub async fn delete_file(
        &self,
        batch: &mut WriteBatch,
        room: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        self.store.delete_range(keys::file_refs(room, id)).await?;
        batch.delete(keys::file_detached(room, id));
        batch.delete(keys::file(room, id));
        Ok(())
    }

    /// File `id` of `room` if it can be read and attached: complete, and not detached.
    pub async fn live_file(&self, room: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
        let Some(file) = self.file(room, id).await?.filter(|f| f.complete) else {
            return Ok(None);
        };
        Ok((!self.file_detached(room, id).await?).then_some(file))
    }

    /// Whether a delete took the last message that carried file `id` of `room`.
    pub async fn file_detached(&self, room: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get(&keys::file_detached(room, id))
            .await?
            .is_some())
    }

    /// A delete took the last message that carried file `id` of `room` (store writer only).
    pub fn put_file_detached(batch: &mut WriteBatch, room: &str, id: &str) {
        batch.put(keys::file_detached(room, id), Vec::new());
    }

    /// Whether a stored message other than those of `seqs` carries file `id` of `room`.
    pub async fn file_carried_besides(
        &self,
        room: &str,
        id: &str,
        seqs: &[u64],
    ) -> Result<bool, StoreError> {
        // Enough references that one is not of `seqs`, if there is one.
        let refs = self
            .store
            .scan(
                keys::file_refs(room, id),
                Direction::Forward,
                seqs.len() + 1,
            )
            .await?;
        Ok(refs
            .iter()
            .filter_map(|(k, _)| keys::seq_of_file_ref(k))
            .any(|seq| !seqs.contains(&seq)))
    }

    /// Message `seq` of `room` carries file `id`.
    pub fn put_file_ref(batch: &mut WriteBatch, room: &str, id: &str, seq: u64) {
        batch.put(keys::file_ref(room, id, seq), Vec::new());
    }

    /// Message `seq` of `room` no longer carries file `id` (it was deleted).
    pub fn delete_file_ref(batch: &mut WriteBatch, room: &str, id: &str, seq: u64) {
        batch.delete(keys::file_ref(room, id, seq));
    }

    /// The highest seq of a message that carries file `id` (stored references only).
    pub async fn last_file_ref(&self, room: &str, id: &str) -> Result<Option<u64>, StoreError> {
        let last = self
            .store
            .scan(keys::file_refs(room, id), Direction::Reverse, 1)
            .await?;
        Ok(last.first().and_then(|(k, _)| keys::seq_of_file_ref(k)))
    }

    /// The seq of `room`'s oldest stored message.
    pub async fn oldest_seq(&self, room: &str) -> Result<Option<u64>, StoreError> {
        // Newest first in key order: the oldest is the last key.
        let oldest = self
            .store
            .scan(keys::messages_of(room), Direction::Reverse, 1)
            .await?;
        Ok(oldest.first().and_then(|(k, _)| keys::seq_of_message(k)))
    }

    /// Up to `limit` file records from `from` on (all rooms, key order).
    pub async fn files_from(&self, from: Vec<u8>, limit: usize) -> Result<Vec<KvPair>, StoreError> {
        let end = keys::files_all().end;
        self.store.scan(from..end, Direction::Forward, limit).await
    }

    /// Bytes of files `room` holds, and `user` holds in it.
    pub async fn file_bytes(&self, room: &str, user: &str) -> Result<(u64, u64), StoreError> {
        Ok((
            self.get_u64(&keys::room_file_bytes(room)).await?,
            self.get_u64(&keys::user_file_bytes(room, user)).await?,
        ))
    }

    pub fn put_file_bytes(batch: &mut WriteBatch, room: &str, user: &str, bytes: (u64, u64)) {
        batch.put(keys::room_file_bytes(room), records::encode_u64(bytes.0));
        batch.put(
            keys::user_file_bytes(room, user),
            records::encode_u64(bytes.1),
        );
    }

    async fn get_u64(&self, key: &[u8]) -> Result<u64, StoreError> {
        match self.store.get(key).await? {
            Some(v) => records::decode_u64(key, &v),
            None => Ok(0),
        }
    }
}
