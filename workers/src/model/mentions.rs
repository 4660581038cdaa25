//! Mention records: which messages mention which members (and which mention `@room`), so a
//! user's unread mentions in a room are a bounded scan above the read cursor. Written by the
//! store writer with the messages, deleted by retention with them.

use chatmesh_protocol::mentions::Mentions;

use super::{keys, Model};
use crate::store::{Direction, KvStore, StoreError, WriteBatch};

impl Model {
    /// Records that message `seq` of `room`, from `from`, mentions the members among
    /// `mentions` (`@room`: one record for the room; the sender is never counted).
    pub async fn put_mentions(
        &self,
        batch: &mut WriteBatch,
        room: &str,
        seq: u64,
        from: &str,
        mentions: &Mentions,
    ) -> Result<(), StoreError> {
        let mut members = Vec::new();
        if !mentions.room {
            for user in &mentions.users {
                if self.role(room, user).await?.is_some() {
                    members.push(user.as_str());
                }
            }
        }
        Self::put_mentions_of(batch, room, seq, from, mentions, |u| members.contains(&u));
        Ok(())
    }

    /// [`Model::put_mentions`] with membership known (`is_member`), as import knows it.
    pub fn put_mentions_of(
        batch: &mut WriteBatch,
        room: &str,
        seq: u64,
        from: &str,
        mentions: &Mentions,
        is_member: impl Fn(&str) -> bool,
    ) {
        if mentions.room {
            batch.put(keys::room_mention(room, seq), from.as_bytes().to_vec());
            return;
        }
        for user in mentions.users.iter().filter(|u| *u != from && is_member(u)) {
            batch.put(keys::mention(room, user, seq), Vec::new());
        }
    }

    /// Deletes the mention records of message `seq` (retention).
    pub fn delete_mentions(batch: &mut WriteBatch, room: &str, seq: u64, mentions: &Mentions) {
        if mentions.room {
            batch.delete(keys::room_mention(room, seq));
        }
        for user in &mentions.users {
            batch.delete(keys::mention(room, user, seq));
        }
    }

    /// How many messages of `room` after `seq` mention `user` (by name or `@room`, not
    /// counting the user's own), at most `limit`.
    pub async fn mentions_after(
        &self,
        room: &str,
        user: &str,
        seq: u64,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let own = self
            .store
            .scan(
                keys::mentions_after(room, user, seq),
                Direction::Forward,
                limit,
            )
            .await?
            .len();
        let everyone = self
            .store
            .scan(
                keys::room_mentions_after(room, seq),
                Direction::Forward,
                limit,
            )
            .await?
            .iter()
            .filter(|(_, from)| from.as_slice() != user.as_bytes())
            .count();
        Ok((own + everyone).min(limit) as u64)
    }
}
