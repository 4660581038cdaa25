//! Messages, room stats and the per-partition checkpoints of the store writers. Only the
//! store writer puts these; everyone reads them.

use chatmesh_protocol::e2ee::MlsKind;
use chatmesh_protocol::message::Message;

use super::records::{self, RoomStats, StoredMessage};
use super::{keys, Model};
use crate::store::{Direction, KvPair, KvStore, StoreError, WriteBatch};

/// Which page of a room's history to read. With `after`, the page starts just above it;
/// otherwise it ends just below `before` (or at the latest message). Both bound the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub limit: usize,
}

impl Model {
    /// The last stream seq whose message partition `p` has stored (0 if none).
    pub async fn checkpoint(&self, p: u32) -> Result<u64, StoreError> {
        let key = keys::checkpoint(p);
        match self.store.get(&key).await? {
            Some(v) => records::decode_u64(&key, &v),
            None => Ok(0),
        }
    }

    pub fn put_checkpoint(batch: &mut WriteBatch, p: u32, seq: u64) {
        batch.put(keys::checkpoint(p), records::encode_u64(seq));
    }

    /// How far the store writer got in `room` (zeros for a room without messages).
    pub async fn stats(&self, room: &str) -> Result<RoomStats, StoreError> {
        Ok(self.get_json(&keys::stats(room)).await?.unwrap_or_default())
    }

    pub fn put_stats(batch: &mut WriteBatch, room: &str, stats: &RoomStats) {
        batch.put(keys::stats(room), records::encode(stats));
    }

    /// Writes one message. Keyed by (room, seq): writing it again is harmless.
    pub fn put_message(batch: &mut WriteBatch, room: &str, seq: u64, msg: &StoredMessage) {
        batch.put(keys::message(room, seq), records::encode(msg));
    }

    /// Message `seq` of `room` as stored, if it is.
    pub async fn message(&self, room: &str, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        self.get_json(&keys::message(room, seq)).await
    }

    /// Up to `limit` of `room`'s stored messages below seq `below` (`u64::MAX`: all), newest
    /// first, as stored.
    pub async fn stored_below(
        &self,
        room: &str,
        below: u64,
        limit: usize,
    ) -> Result<Vec<(u64, StoredMessage)>, StoreError> {
        let all = keys::messages_of(room);
        let start = match below {
            0 | 1 => return Ok(Vec::new()),
            u64::MAX => all.start,
            b => keys::message(room, b - 1),
        };
        let pairs = self
            .store
            .scan(start..all.end, Direction::Forward, limit)
            .await?;
        pairs
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    keys::seq_of_message(&k).unwrap_or_default(),
                    records::decode(&k, &v)?,
                ))
            })
            .collect()
    }

    /// Marks `room` for the search index to take in its stored messages (import).
    pub fn put_reindex(batch: &mut WriteBatch, room: &str) {
        batch.put(keys::reindex(room), Vec::new());
    }

    pub fn delete_reindex(batch: &mut WriteBatch, room: &str) {
        batch.delete(keys::reindex(room));
    }

    /// Up to `limit` rooms marked with [`Model::put_reindex`].
    pub async fn rooms_to_reindex(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let pairs = self
            .store
            .scan(keys::reindex_all(), Direction::Forward, limit)
            .await?;
        Ok(pairs
            .iter()
            .filter_map(|(k, _)| keys::room_of_reindex(k).map(str::to_owned))
            .collect())
    }

    /// A page of `room`'s history, oldest first, and whether more messages lie beyond it in
    /// the direction read.
    pub async fn history(
        &self,
        room: &str,
        q: HistoryQuery,
    ) -> Result<(Vec<Message>, bool), StoreError> {
        let all = keys::messages_of(room);
        if q.limit == 0 {
            return Ok((Vec::new(), false));
        }
        // Keys run newest first, so the key range of seqs (lo, hi) is [key(hi-1), key(lo+1)].
        let start = match q.before {
            Some(0 | 1) => return Ok((Vec::new(), false)),
            Some(b) => keys::message(room, b - 1),
            None => all.start,
        };
        if let Some(a) = q.after {
            if a == u64::MAX || q.before.is_some_and(|b| b <= a + 1) {
                return Ok((Vec::new(), false));
            }
            let mut end = keys::message(room, a + 1);
            end.push(0);
            let pairs = self
                .store
                .scan(start..end, Direction::Reverse, q.limit + 1)
                .await?;
            let more = pairs.len() > q.limit;
            let msgs = decode_all(room, pairs.into_iter().take(q.limit))?;
            return Ok((msgs, more));
        }
        let pairs = self
            .store
            .scan(start..all.end, Direction::Forward, q.limit + 1)
            .await?;
        let more = pairs.len() > q.limit;
        let mut msgs = decode_all(room, pairs.into_iter().take(q.limit))?;
        msgs.reverse();
        Ok((msgs, more))
    }

    /// The seq and ts of the message `from` sent to `room` with client id `id`, if it is
    /// among the first `max` messages stored after seq `after`, and within their first
    /// `max_bytes` (read oldest first, from where the sender says it first sent it, a page
    /// at a time; only a message whose bytes hold the id is decoded). Any stored record of
    /// that sender and id counts (an edit, a void marker too): the stream's dedupe key is
    /// the same pair. The task yields between pages: a look of many large messages (the
    /// embedded store reads on the calling thread) must not hold a runtime thread.
    pub async fn sent_after(
        &self,
        room: &str,
        from: &str,
        id: &str,
        after: u64,
        (max, max_bytes): (usize, usize),
    ) -> Result<Option<(u64, u64)>, StoreError> {
        // Values of e2ee rooms may be tens of KiB each.
        const PAGE: usize = 100;
        let Some(oldest) = after.checked_add(1) else {
            return Ok(None);
        };
        let mut needle = b"\"id\":".to_vec();
        needle.extend(records::encode(&id));
        // Keys run newest first: seqs above `after` are [all.start, key(after + 1)], read
        // backwards from its end (the oldest); each next page ends before the last key read.
        let start = keys::messages_of(room).start;
        let mut end = keys::message(room, oldest);
        end.push(0);
        let finder = memchr::memmem::Finder::new(&needle);
        let mut left = max;
        let mut bytes = 0usize;
        while left > 0 {
            let want = left.min(PAGE);
            let pairs = self
                .store
                .scan(start.clone()..end.clone(), Direction::Reverse, want)
                .await?;
            for (k, v) in &pairs {
                bytes += v.len();
                if bytes > max_bytes {
                    return Ok(None);
                }
                if finder.find(v).is_none() {
                    continue;
                }
                let m: StoredMessage = records::decode(k, v)?;
                if m.from == from && m.id == id {
                    return Ok(keys::seq_of_message(k).map(|seq| (seq, m.ts)));
                }
            }
            let Some((last, _)) = pairs.last().filter(|_| pairs.len() == want) else {
                break;
            };
            end = last.clone();
            left -= want;
            tokio::task::yield_now().await;
        }
        Ok(None)
    }

    /// The sender of the commit that started `epoch` (the one not void among those labelled
    /// `epoch - 1`), if it is among the `max` messages stored before seq `before`, read
    /// newest first a page at a time (only a value that names a commit is decoded), up to
    /// the first commit of an earlier epoch.
    pub async fn commit_starting(
        &self,
        room: &str,
        epoch: u64,
        before: u64,
        max: usize,
    ) -> Result<Option<String>, StoreError> {
        const PAGE: usize = 100;
        let (Some(label), Some(newest)) = (epoch.checked_sub(1), before.checked_sub(1)) else {
            return Ok(None);
        };
        let needle = b"\"kind\":\"commit\"";
        // Keys run newest first: seqs below `before` are [key(before - 1), all.end).
        let mut start = keys::message(room, newest);
        let end = keys::messages_of(room).end;
        let mut left = max;
        while left > 0 {
            let want = left.min(PAGE);
            let pairs = self
                .store
                .scan(start.clone()..end.clone(), Direction::Forward, want)
                .await?;
            for (k, v) in &pairs {
                if !v.windows(needle.len()).any(|w| w == needle) {
                    continue;
                }
                let m: StoredMessage = records::decode(k, v)?;
                if let Some(mls) = m.mls.as_ref().filter(|_| !m.void) {
                    if mls.kind == MlsKind::Commit && mls.epoch == label {
                        return Ok(Some(m.from));
                    }
                    // Commits that moved the epoch have rising labels: one below means
                    // the commit looked for is not there.
                    if mls.kind == MlsKind::Commit && mls.epoch < label {
                        return Ok(None);
                    }
                }
            }
            let Some((last, _)) = pairs.last().filter(|_| pairs.len() == want) else {
                break;
            };
            start = last.clone();
            start.push(0);
            left -= want;
        }
        Ok(None)
    }

    /// The latest `n` messages of `room`, oldest first.
    pub async fn latest(&self, room: &str, n: usize) -> Result<Vec<Message>, StoreError> {
        let q = HistoryQuery {
            before: None,
            after: None,
            limit: n,
        };
        Ok(self.history(room, q).await?.0)
    }

    /// Position (`n`, `quiet`) of the room's messages up to seq `seq`: those of the newest
    /// stored message with seq <= `seq`; when retention removed every one of those, the
    /// position just before the oldest stored message above `seq` (zeros if none is
    /// stored). Before, a cursor whose messages retention had all removed counted as
    /// position 0, and the room's unread count became every message it ever had.
    pub async fn position_at(&self, room: &str, seq: u64) -> Result<(u64, u64), StoreError> {
        let all = keys::messages_of(room);
        let range = keys::message(room, seq)..all.end.clone();
        let pairs = self.store.scan(range, Direction::Forward, 1).await?;
        if let Some((k, v)) = pairs.first() {
            let m = records::decode::<StoredMessage>(k, v)?;
            return Ok((m.n, m.quiet));
        }
        let above = all.start..keys::message(room, seq);
        let pairs = self.store.scan(above, Direction::Reverse, 1).await?;
        match pairs.first() {
            Some((k, v)) => {
                let m = records::decode::<StoredMessage>(k, v)?;
                let own = u64::from(m.is_quiet());
                Ok((m.n.saturating_sub(1), m.quiet.saturating_sub(own)))
            }
            None => Ok((0, 0)),
        }
    }
}

fn decode_all(room: &str, pairs: impl Iterator<Item = KvPair>) -> Result<Vec<Message>, StoreError> {
    pairs
        .map(|(k, v)| {
            let seq = keys::seq_of_message(&k).ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                detail: "short message key".into(),
            })?;
            let stored: StoredMessage = records::decode(&k, &v)?;
            Ok(stored.into_message(room, seq))
        })
        .collect()
}
