//! Rooms, their members and the two indexes over them: the rooms of a user (for
//! `rooms_list`) and the directory of public rooms. A member record and its mirror in the
//! user's index are always written in the same batch.

use chatmesh_protocol::service::{Role, RoomKind};

use super::records::{self, RoomMeta};
use super::{keys, Model};
use crate::store::{Direction, KvStore, StoreError, WriteBatch};

impl Model {
    pub async fn room(&self, room: &str) -> Result<Option<RoomMeta>, StoreError> {
        self.get_json(&keys::room(room)).await
    }

    /// Writes a new room record, and its directory entry if it is public.
    pub fn put_room(batch: &mut WriteBatch, room: &str, meta: &RoomMeta) {
        batch.put(keys::room(room), records::encode(meta));
        if meta.kind == RoomKind::Public {
            batch.put(keys::public(room), Vec::new());
        }
    }

    /// `user`'s role in `room`, if a member.
    pub async fn role(&self, room: &str, user: &str) -> Result<Option<Role>, StoreError> {
        self.get_json(&keys::member(room, user)).await
    }

    /// Makes `user` a member of `room` with `role` (or changes the role).
    pub fn put_member(batch: &mut WriteBatch, room: &str, user: &str, role: Role) {
        let v = records::encode(&role);
        batch.put(keys::member(room, user), v.clone());
        batch.put(keys::user_room(user, room), v);
    }

    pub fn delete_member(batch: &mut WriteBatch, room: &str, user: &str) {
        batch.delete(keys::member(room, user));
        batch.delete(keys::user_room(user, room));
    }

    /// Up to `limit` rooms `user` is a member of, with the role, in key order.
    pub async fn rooms_of(
        &self,
        user: &str,
        limit: usize,
    ) -> Result<Vec<(String, Role)>, StoreError> {
        self.scan_named(keys::rooms_of(user), limit).await
    }

    /// Up to `limit` rooms `user` is a member of whose names sort after `after` (from the
    /// first with `None`), by name, with the user's roles.
    pub async fn rooms_of_after(
        &self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Role)>, StoreError> {
        let all = keys::rooms_of(user);
        let start = match after {
            // The smallest key above `after`'s own: names never contain a 0 byte.
            Some(room) => {
                let mut k = keys::user_room(user, room);
                k.push(0);
                k
            }
            None => all.start,
        };
        self.scan_named(start..all.end, limit).await
    }

    /// Up to `limit` members of `room`, with their roles.
    pub async fn members(
        &self,
        room: &str,
        limit: usize,
    ) -> Result<Vec<(String, Role)>, StoreError> {
        let prefix = keys::member(room, "");
        let end = keys::prefix_end(&prefix);
        self.scan_named(prefix..end, limit).await
    }

    /// Up to `limit` members of `room` whose names sort after `after` (all with `None`), by
    /// name, with their roles.
    pub async fn members_after(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Role)>, StoreError> {
        let prefix = keys::member(room, "");
        let end = keys::prefix_end(&prefix);
        let start = match after {
            // The smallest key above `after`'s own: names never contain a 0 byte.
            Some(user) => {
                let mut k = keys::member(room, user);
                k.push(0);
                k
            }
            None => prefix,
        };
        self.scan_named(start..end, limit).await
    }

    /// The room's topic, if set. Read from the store every time (never cached): it changes.
    pub async fn topic(&self, room: &str) -> Result<Option<String>, StoreError> {
        let key = keys::topic(room);
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

    /// Sets (`Some`) or clears (`None`) the room's topic.
    pub fn put_topic(batch: &mut WriteBatch, room: &str, topic: Option<&str>) {
        match topic {
            Some(t) => batch.put(keys::topic(room), t.as_bytes().to_vec()),
            None => batch.delete(keys::topic(room)),
        }
    }

    /// Up to `limit` public rooms, by name.
    pub async fn public_rooms(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let pairs = self
            .store
            .scan(keys::public_all(), Direction::Forward, limit)
            .await?;
        Ok(pairs
            .iter()
            .filter_map(|(k, _)| keys::room_of_public(k).map(str::to_owned))
            .collect())
    }
}
