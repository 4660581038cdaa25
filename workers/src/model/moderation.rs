//! Bans and mutes of a room, when members were last removed by someone else, and the room's
//! display name (moderation extension). A ban record and
//! its room's ban count change in the same batch; the rules (who bans whom, the bound on
//! bans) are the service's.

use super::records::{self, BanRecord, MuteRecord};
use super::{keys, Model};
use crate::store::{KvStore, StoreError, WriteBatch};

impl Model {
    /// `user`'s ban from `room`, if banned.
    pub async fn ban(&self, room: &str, user: &str) -> Result<Option<BanRecord>, StoreError> {
        self.get_json(&keys::ban(room, user)).await
    }

    /// How many bans `room` holds.
    pub async fn ban_count(&self, room: &str) -> Result<u64, StoreError> {
        let key = keys::ban_count(room);
        match self.store.get(&key).await? {
            Some(bytes) => records::decode_u64(&key, &bytes),
            None => Ok(0),
        }
    }

    /// Records a ban and the room's new ban count.
    pub fn put_ban(batch: &mut WriteBatch, room: &str, user: &str, ban: &BanRecord, count: u64) {
        batch.put(keys::ban(room, user), records::encode(ban));
        batch.put(keys::ban_count(room), records::encode_u64(count));
    }

    /// Lifts a ban, with the room's new ban count.
    pub fn delete_ban(batch: &mut WriteBatch, room: &str, user: &str, count: u64) {
        batch.delete(keys::ban(room, user));
        batch.put(keys::ban_count(room), records::encode_u64(count));
    }

    /// Up to `limit` bans of `room` whose users sort after `after`, by user name.
    pub async fn bans_after(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, BanRecord)>, StoreError> {
        self.scan_named(keys::bans_after(room, after), limit).await
    }

    /// `user`'s mute in `room`, if one was recorded (it may have ended: see
    /// [`MuteRecord::holds`]).
    pub async fn mute(&self, room: &str, user: &str) -> Result<Option<MuteRecord>, StoreError> {
        self.get_json(&keys::mute(room, user)).await
    }

    /// When someone else last removed `user` from `room` (unix ms), if ever.
    pub async fn removed_at(&self, room: &str, user: &str) -> Result<Option<u64>, StoreError> {
        let key = keys::removed(room, user);
        match self.store.get(&key).await? {
            Some(bytes) => records::decode_u64(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Records that someone else removed `user` from `room` at `ts` (unix ms).
    pub fn put_removed(batch: &mut WriteBatch, room: &str, user: &str, ts: u64) {
        batch.put(keys::removed(room, user), records::encode_u64(ts));
    }

    pub fn put_mute(batch: &mut WriteBatch, room: &str, user: &str, mute: &MuteRecord) {
        batch.put(keys::mute(room, user), records::encode(mute));
    }

    pub fn delete_mute(batch: &mut WriteBatch, room: &str, user: &str) {
        batch.delete(keys::mute(room, user));
    }

    /// The room's display name, if set. Read from the store every time, like the topic.
    pub async fn room_name(&self, room: &str) -> Result<Option<String>, StoreError> {
        let key = keys::room_name(room);
        match self.store.get(&key).await? {
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    detail: e.to_string(),
                }),
            None => Ok(None),
        }
    }

    /// Sets (`Some`) or clears (`None`) the room's display name.
    pub fn put_room_name(batch: &mut WriteBatch, room: &str, name: Option<&str>) {
        match name {
            Some(n) => batch.put(keys::room_name(room), n.as_bytes().to_vec()),
            None => batch.delete(keys::room_name(room)),
        }
    }
}
