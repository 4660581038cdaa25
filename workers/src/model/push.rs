//! Push notification records: a user's targets, settings, and the delivery marks that make
//! a push happen at most once per (message, target).

use chatmesh_protocol::push::PushSettings;

use super::records::{self, PushTargetRecord};
use super::{keys, Model};
use crate::store::{Direction, KvStore, StoreError, WriteBatch};

impl Model {
    /// Up to `limit` push targets of `user`, by id.
    pub async fn push_targets(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<(String, PushTargetRecord)>, StoreError> {
        self.scan_named(keys::push_targets_of(user), limit).await
    }

    /// Is there any push target, of any user?
    pub async fn any_push_target(&self) -> Result<bool, StoreError> {
        let found = self
            .store
            .scan(keys::push_targets_all(), Direction::Forward, 1)
            .await?;
        Ok(!found.is_empty())
    }

    pub async fn push_target(
        &self,
        user: &str,
        id: &str,
    ) -> Result<Option<PushTargetRecord>, StoreError> {
        self.get_json(&keys::push_target(user, id)).await
    }

    pub fn put_push_target(batch: &mut WriteBatch, user: &str, id: &str, rec: &PushTargetRecord) {
        batch.put(keys::push_target(user, id), records::encode(rec));
    }

    /// The user that last registered push target `id` (one device's address), if any.
    pub async fn push_owner(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.get_json(&keys::push_owner(id)).await
    }

    pub fn put_push_owner(batch: &mut WriteBatch, id: &str, user: &str) {
        batch.put(keys::push_owner(id), records::encode(&user));
    }

    pub fn delete_push_owner(batch: &mut WriteBatch, id: &str) {
        batch.delete(keys::push_owner(id));
    }

    /// Adds the delete of a target, without its delivery marks, to `batch`.
    pub fn delete_push_target_only(batch: &mut WriteBatch, user: &str, id: &str) {
        batch.delete(keys::push_target(user, id));
    }

    /// Adds the deletes of a target and of its delivery marks (up to `max_marks`, one per
    /// room it was pushed for; marks left over are harmless: a new target gets a new id only
    /// if its address differs) to `batch`.
    pub async fn delete_push_target(
        &self,
        batch: &mut WriteBatch,
        user: &str,
        id: &str,
        max_marks: usize,
    ) -> Result<(), StoreError> {
        batch.delete(keys::push_target(user, id));
        let marks = self
            .store
            .scan(keys::push_marks_of(user, id), Direction::Forward, max_marks)
            .await?;
        for (k, _) in marks {
            batch.delete(k);
        }
        Ok(())
    }

    /// The user's settings (the defaults when never set).
    pub async fn push_settings(&self, user: &str) -> Result<PushSettings, StoreError> {
        Ok(self
            .get_json(&keys::push_settings(user))
            .await?
            .unwrap_or_default())
    }

    pub fn put_push_settings(batch: &mut WriteBatch, user: &str, settings: &PushSettings) {
        batch.put(keys::push_settings(user), records::encode(settings));
    }

    /// The last seq of `room` claimed for target `id` of `user` (0: none).
    pub async fn push_mark(&self, user: &str, id: &str, room: &str) -> Result<u64, StoreError> {
        let key = keys::push_mark(user, id, room);
        match self.store.get(&key).await? {
            Some(bytes) => records::decode_u64(&key, &bytes),
            None => Ok(0),
        }
    }

    pub fn put_push_mark(batch: &mut WriteBatch, user: &str, id: &str, room: &str, seq: u64) {
        batch.put(keys::push_mark(user, id, room), records::encode_u64(seq));
    }
}
