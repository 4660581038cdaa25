//! Reaction records: which keys each user put on a message, one record per (message, user),
//! so the rules (one key once, at most `MAX_PER_USER` per user, take off only one's own)
//! and dedupe are a point read, and the aggregate on the message can be refilled. Written
//! by the store writer with the reactions; deleted with their message (delete, retention).

use super::records::{self, UserReactions};
use super::{keys, Model};
use crate::store::{Direction, KvStore, StoreError, WriteBatch};

/// Reaction records read at once when a message's records are listed.
const PAGE: usize = 1_024;

impl Model {
    /// `user`'s reactions on message `seq` of `room` (empty if none).
    pub async fn user_reactions(
        &self,
        room: &str,
        seq: u64,
        user: &str,
    ) -> Result<UserReactions, StoreError> {
        Ok(self
            .get_json(&keys::reactions(room, seq, user))
            .await?
            .unwrap_or_default())
    }

    pub fn put_user_reactions(
        batch: &mut WriteBatch,
        room: &str,
        seq: u64,
        user: &str,
        r: &UserReactions,
    ) {
        batch.put(keys::reactions(room, seq, user), records::encode(r));
    }

    /// Every user's reactions on message `seq` of `room`, by user name.
    pub async fn reactions_on(
        &self,
        room: &str,
        seq: u64,
    ) -> Result<Vec<(String, UserReactions)>, StoreError> {
        self.first_reactions_on(room, seq, usize::MAX).await
    }

    /// The reactions on message `seq` of `room` of its first `max` reacting users by name
    /// (rounded up to a page).
    pub async fn first_reactions_on(
        &self,
        room: &str,
        seq: u64,
        max: usize,
    ) -> Result<Vec<(String, UserReactions)>, StoreError> {
        let range = keys::reactions_of(room, seq);
        let mut out = Vec::new();
        let mut start = range.start.clone();
        loop {
            if out.len() >= max {
                return Ok(out);
            }
            let page = self
                .store
                .scan(start.clone()..range.end.clone(), Direction::Forward, PAGE)
                .await?;
            for (k, v) in &page {
                if let Some((_, user)) = keys::seq_and_user_of_reactions(room, k) {
                    out.push((user.to_owned(), records::decode(k, v)?));
                }
            }
            match page.last() {
                Some((k, _)) if page.len() == PAGE => {
                    start = k.clone();
                    start.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    /// Deletes every reaction record of message `seq` of `room` (the message was deleted or
    /// trimmed).
    pub async fn delete_reactions(
        &self,
        batch: &mut WriteBatch,
        room: &str,
        seq: u64,
    ) -> Result<(), StoreError> {
        for (user, _) in self.reactions_on(room, seq).await? {
            batch.delete(keys::reactions(room, seq, &user));
        }
        Ok(())
    }
}
