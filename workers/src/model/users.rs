//! Users of the built-in identity provider and their read cursors.

use super::records::{self, BlockRecord, Cursor, InvitationRecord, UserRecord};
use super::{keys, Model};
use crate::store::{KvStore, StoreError, WriteBatch};

impl Model {
    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.get_json(&keys::user(name)).await
    }

    pub fn put_user(batch: &mut WriteBatch, name: &str, rec: &UserRecord) {
        batch.put(keys::user(name), records::encode(rec));
    }

    /// `user`'s block of `other`, if there is one.
    pub async fn block(&self, user: &str, other: &str) -> Result<Option<BlockRecord>, StoreError> {
        self.get_json(&keys::block(user, other)).await
    }

    /// Up to `limit` of `user`'s blocks, by the blocked user's name, after `after`.
    pub async fn blocks_after(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, BlockRecord)>, StoreError> {
        self.scan_named(keys::blocks_after(user, after), limit)
            .await
    }

    pub fn put_block(batch: &mut WriteBatch, user: &str, other: &str, rec: &BlockRecord) {
        batch.put(keys::block(user, other), records::encode(rec));
    }

    pub fn delete_block(batch: &mut WriteBatch, user: &str, other: &str) {
        batch.delete(keys::block(user, other));
    }

    /// `user`'s invitation to `room`, if there is one.
    pub async fn invitation(
        &self,
        user: &str,
        room: &str,
    ) -> Result<Option<InvitationRecord>, StoreError> {
        self.get_json(&keys::invitation(user, room)).await
    }

    /// Up to `limit` of `user`'s invitations, by room, after `after`.
    pub async fn invitations_after(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, InvitationRecord)>, StoreError> {
        self.scan_named(keys::invitations_after(user, after), limit)
            .await
    }

    pub fn put_invitation(batch: &mut WriteBatch, user: &str, room: &str, rec: &InvitationRecord) {
        batch.put(keys::invitation(user, room), records::encode(rec));
    }

    pub fn delete_invitation(batch: &mut WriteBatch, user: &str, room: &str) {
        batch.delete(keys::invitation(user, room));
    }

    /// The last seq DM `room` had when `user` closed it, if `user` closed it.
    pub async fn dm_closed(&self, user: &str, room: &str) -> Result<Option<u64>, StoreError> {
        let key = keys::dm_closed(user, room);
        match self.store.get(&key).await? {
            Some(bytes) => records::decode_u64(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn put_dm_closed(batch: &mut WriteBatch, user: &str, room: &str, seq: u64) {
        batch.put(keys::dm_closed(user, room), records::encode_u64(seq));
    }

    pub fn delete_dm_closed(batch: &mut WriteBatch, user: &str, room: &str) {
        batch.delete(keys::dm_closed(user, room));
    }

    /// How many rooms `user` has created (0 if none, or none since quotas were counted).
    pub async fn rooms_created(&self, user: &str) -> Result<u64, StoreError> {
        let key = keys::rooms_created(user);
        match self.store.get(&key).await? {
            Some(bytes) => records::decode_u64(&key, &bytes),
            None => Ok(0),
        }
    }

    pub fn put_rooms_created(batch: &mut WriteBatch, user: &str, count: u64) {
        batch.put(keys::rooms_created(user), records::encode_u64(count));
    }

    pub async fn cursor(&self, user: &str, room: &str) -> Result<Option<Cursor>, StoreError> {
        self.get_json(&keys::cursor(user, room)).await
    }

    pub fn put_cursor(batch: &mut WriteBatch, user: &str, room: &str, cursor: &Cursor) {
        batch.put(keys::cursor(user, room), records::encode(cursor));
    }

    /// Up to `limit` cursors of `user`, by room.
    pub async fn cursors_of(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<(String, Cursor)>, StoreError> {
        self.scan_named(keys::cursors_of(user), limit).await
    }
}
