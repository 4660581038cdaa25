//! The recent page of a room: its latest messages, oldest first, contiguous along the `prev`
//! chain. Most history reads (a join, a scroll-back of one page) are answered from it; a
//! query it cannot answer exactly falls through to the store.

use chatmesh_protocol::message::Message;

use crate::model::HistoryQuery;

/// The latest messages of one room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    msgs: Vec<Message>,
}

impl Page {
    /// `msgs` must be a room's latest messages, oldest first.
    pub fn new(msgs: Vec<Message>) -> Self {
        Self { msgs }
    }

    /// Seq of the newest message held (0 for a room without messages).
    pub fn last_seq(&self) -> u64 {
        self.msgs.last().map_or(0, |m| m.seq)
    }

    /// Every message with a seq above this one is held (0: the page reaches the room's start).
    fn base(&self) -> u64 {
        self.msgs.first().map_or(0, |m| m.prev)
    }

    /// Answers `q` if the page holds everything the answer depends on.
    pub fn serve(&self, q: &HistoryQuery) -> Option<(Vec<Message>, bool)> {
        let below = q.before.unwrap_or(u64::MAX);
        let end = self.msgs.partition_point(|m| m.seq < below);
        let held = &self.msgs[..end];
        match q.after {
            Some(a) => {
                if a < self.base() {
                    return None;
                }
                let start = held.partition_point(|m| m.seq <= a);
                let rest = &held[start..];
                let take = rest.len().min(q.limit);
                Some((rest[..take].to_vec(), rest.len() > q.limit))
            }
            None if held.len() > q.limit => Some((held[held.len() - q.limit..].to_vec(), true)),
            None if self.base() == 0 => Some((held.to_vec(), false)),
            None => None,
        }
    }

    /// This page with `new` (the next messages of the room, oldest first) appended, trimmed to
    /// the newest `cap`; `None` if `new` does not continue the page (then drop the page).
    pub fn extended(&self, new: &[Message], cap: usize) -> Option<Page> {
        let first = new.first()?;
        if first.prev != self.last_seq() {
            return None;
        }
        let keep = (self.msgs.len() + new.len()).saturating_sub(cap);
        let mut msgs = Vec::with_capacity(cap.min(self.msgs.len() + new.len()));
        msgs.extend(self.msgs.iter().skip(keep).cloned());
        msgs.extend(
            new.iter()
                .skip(keep.saturating_sub(self.msgs.len()))
                .cloned(),
        );
        Some(Page { msgs })
    }

    /// Approximate bytes held, for the cache's weigher.
    pub fn weight(&self) -> u32 {
        let bytes: usize = self
            .msgs
            .iter()
            .map(|m| 96 + m.room.len() + m.id.len() + m.from.len() + m.body.len())
            .sum();
        u32::try_from(bytes + 64).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(seqs: &[u64], first_prev: u64) -> Vec<Message> {
        let mut prev = first_prev;
        seqs.iter()
            .map(|&seq| {
                let m = Message {
                    room: "r".into(),
                    seq,
                    prev,
                    id: seq.to_string(),
                    from: "a".into(),
                    ts: 0,
                    body: String::new(),
                    attachments: Vec::new(),
                    mentions: Default::default(),
                    ..Default::default()
                };
                prev = seq;
                m
            })
            .collect()
    }

    fn q(before: Option<u64>, after: Option<u64>, limit: usize) -> HistoryQuery {
        HistoryQuery {
            before,
            after,
            limit,
        }
    }

    fn seqs(r: Option<(Vec<Message>, bool)>) -> Option<(Vec<u64>, bool)> {
        r.map(|(m, more)| (m.iter().map(|m| m.seq).collect(), more))
    }

    #[test]
    fn complete_page_answers_everything_below() {
        let p = Page::new(msgs(&[2, 5, 9], 0));
        assert_eq!(seqs(p.serve(&q(None, None, 2))), Some((vec![5, 9], true)));
        assert_eq!(
            seqs(p.serve(&q(None, None, 3))),
            Some((vec![2, 5, 9], false))
        );
        assert_eq!(seqs(p.serve(&q(Some(5), None, 5))), Some((vec![2], false)));
        assert_eq!(seqs(p.serve(&q(None, Some(2), 1))), Some((vec![5], true)));
        assert_eq!(
            seqs(p.serve(&q(Some(9), Some(2), 5))),
            Some((vec![5], false))
        );
    }

    #[test]
    fn partial_page_defers_to_the_store() {
        let p = Page::new(msgs(&[7, 8], 4));
        assert_eq!(seqs(p.serve(&q(None, None, 1))), Some((vec![8], true)));
        assert_eq!(p.serve(&q(None, None, 2)), None);
        assert_eq!(p.serve(&q(None, Some(3), 2)), None);
        assert_eq!(
            seqs(p.serve(&q(None, Some(4), 5))),
            Some((vec![7, 8], false))
        );
    }

    #[test]
    fn extension_keeps_the_chain_and_the_cap() {
        let p = Page::new(msgs(&[1, 2], 0));
        let q2 = p.extended(&msgs(&[3, 4, 5], 2), 4).unwrap();
        assert_eq!(
            q2.msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        assert!(p.extended(&msgs(&[7], 6), 4).is_none());
        let big = Page::default().extended(&msgs(&[1, 2, 3], 0), 2).unwrap();
        assert_eq!(
            big.msgs.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }
}
