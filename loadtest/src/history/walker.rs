//! The checks of one reader's walk through a room's history, page by page (see the
//! `history` module's docs for what is checked and the error codes). No I/O.

use crate::plan::Expect;

/// One message of a page, as the checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageMsg {
    pub seq: u64,
    pub prev: u64,
    /// `Some(k)` for a fill message.
    pub fill: Option<u64>,
}

/// What one page did to the walk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Violations, as error codes (empty for a good page).
    pub errors: Vec<&'static str>,
    /// The walk reached the room's first message with every page good.
    pub walk_done: bool,
}

/// One reader's walk from the newest message back to the first, page by page.
#[derive(Debug)]
pub struct Walker {
    expect: Expect,
    /// Oldest message read so far in this walk.
    oldest: Option<PageMsg>,
    /// The last fill `k` seen in this walk (walking backwards).
    last_fill: Option<u64>,
    /// Messages read in this walk.
    read: u64,
}

impl Walker {
    pub fn new(expect: Expect) -> Self {
        Self {
            expect,
            oldest: None,
            last_fill: None,
            read: 0,
        }
    }

    /// The `before` of the next request (`None`: the newest page).
    pub fn before(&self) -> Option<u64> {
        self.oldest.map(|m| m.seq)
    }

    /// Starts again from the newest message.
    pub fn restart(&mut self) {
        self.oldest = None;
        self.last_fill = None;
        self.read = 0;
    }

    /// Checks one answer (`messages` as received, `more`) against the walk so far.
    pub fn on_page(&mut self, msgs: &[PageMsg], more: bool) -> Outcome {
        let mut errors = Vec::new();
        let e = self.expect;
        // Oldest first: seqs increase and each `prev` is the seq before it.
        for w in msgs.windows(2) {
            if w[1].seq <= w[0].seq {
                errors.push("history_order");
                break;
            }
            if w[1].prev != w[0].seq {
                errors.push("history_gap");
                break;
            }
        }
        if msgs.len() as u64 > e.limit || (more && (msgs.len() as u64) < e.limit) {
            errors.push("history_size");
        }
        match (self.oldest, msgs.last()) {
            // The page ends right before what was read already.
            (Some(o), Some(newest)) if newest.seq >= o.seq => errors.push("history_order"),
            (Some(o), Some(newest)) if newest.seq != o.prev => errors.push("history_gap"),
            // Asked for what lies before a message whose `prev` is not 0, got nothing.
            (Some(_), None) => errors.push("history_gap"),
            (None, newest) => {
                let top = newest.map_or(0, |m| m.seq);
                if (e.exact && top != e.newest) || top < e.newest {
                    errors.push("history_stale");
                }
            }
            _ => {}
        }
        // `more` is false exactly when the first message of the room is in the page.
        let at_first = msgs.first().is_none_or(|m| m.prev == 0);
        if more == at_first {
            errors.push("history_more");
        }
        // Fill indices count down to 0, and nothing older than a fill message is not one.
        for m in msgs.iter().rev() {
            let want = match self.last_fill {
                None => e.fill.checked_sub(1),
                Some(k) => k.checked_sub(1),
            };
            match (m.fill, want) {
                (Some(k), Some(w)) if k == w => self.last_fill = Some(k),
                (None, _) if self.last_fill.is_none() && !e.exact => {}
                _ => {
                    errors.push("history_fill");
                    break;
                }
            }
        }
        self.read += msgs.len() as u64;
        if errors.is_empty() && !more {
            let fills_complete = e.fill == 0 || self.last_fill == Some(0);
            if !fills_complete || (e.exact && self.read != e.fill) {
                errors.push("history_count");
            }
        }
        errors.dedup();
        let walk_done = errors.is_empty() && !more;
        if !errors.is_empty() || !more {
            self.restart();
        } else {
            self.oldest = msgs.first().copied();
        }
        Outcome { errors, walk_done }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(fill: u64, newest: u64, exact: bool) -> Expect {
        Expect {
            limit: 3,
            fill,
            newest,
            exact,
        }
    }

    /// A room of fill messages `h0..h{n}` with seqs `first, first+step, …` (seqs need not
    /// be consecutive: other rooms share the stream).
    fn room(n: u64, first: u64, step: u64) -> Vec<PageMsg> {
        (0..n)
            .map(|k| PageMsg {
                seq: first + k * step,
                prev: if k == 0 { 0 } else { first + (k - 1) * step },
                fill: Some(k),
            })
            .collect()
    }

    /// The page a correct server answers: up to `limit` messages with seq < before.
    fn page(all: &[PageMsg], before: Option<u64>, limit: usize) -> (Vec<PageMsg>, bool) {
        let older: Vec<PageMsg> = all
            .iter()
            .copied()
            .filter(|m| before.is_none_or(|b| m.seq < b))
            .collect();
        let from = older.len().saturating_sub(limit);
        (older[from..].to_vec(), from > 0)
    }

    #[test]
    fn a_healthy_room_walks_cleanly_and_repeats() {
        let all = room(7, 10, 4);
        let mut w = Walker::new(expect(7, all[6].seq, true));
        let mut walks = 0;
        for n in 0..9 {
            let (msgs, more) = page(&all, w.before(), 3);
            let out = w.on_page(&msgs, more);
            assert!(out.errors.is_empty(), "{out:?} at page {n}");
            walks += u64::from(out.walk_done);
        }
        // 7 messages in pages of 3: 3 pages a walk, so 9 pages are 3 walks.
        assert_eq!(walks, 3);
        assert_eq!(w.before(), None);
    }

    #[test]
    fn a_missing_message_is_a_gap() {
        let mut all = room(7, 10, 1);
        all.remove(2); // seq 12 lost; seq 13 still names it as prev
        let mut w = Walker::new(expect(7, 16, true));
        let (p1, more) = page(&all, w.before(), 3);
        assert!(w.on_page(&p1, more).errors.is_empty());
        let (p2, more) = page(&all, w.before(), 3);
        let out = w.on_page(&p2, more);
        assert!(out.errors.contains(&"history_gap"), "{out:?}");
        assert!(!out.walk_done);
        // The walk starts over from the newest page.
        assert_eq!(w.before(), None);
    }

    #[test]
    fn pages_that_do_not_join_are_a_gap() {
        let all = room(9, 100, 1);
        let mut w = Walker::new(expect(9, 108, true));
        let (p1, more) = page(&all, None, 3);
        assert!(w.on_page(&p1, more).errors.is_empty());
        // The server skipped three messages: answered "before 103" with seqs 100..=102.
        let (p2, more) = page(&all, Some(103), 3);
        let out = w.on_page(&p2, more);
        assert_eq!(out.errors, vec!["history_gap", "history_fill"]);
    }

    #[test]
    fn newest_first_is_out_of_order() {
        let all = room(6, 1, 1);
        let mut w = Walker::new(expect(6, 6, true));
        let (mut p1, more) = page(&all, None, 3);
        p1.reverse();
        let out = w.on_page(&p1, more);
        assert!(out.errors.contains(&"history_order"), "{out:?}");
    }

    #[test]
    fn more_must_be_false_exactly_at_the_first_message() {
        let all = room(4, 1, 1);
        let mut w = Walker::new(expect(4, 4, true));
        let (p1, _) = page(&all, None, 3);
        assert!(w.on_page(&p1, true).errors.is_empty());
        let (p2, _) = page(&all, w.before(), 3);
        // The first message is in the page, yet the server says there is more.
        assert!(w.on_page(&p2, true).errors.contains(&"history_more"));
        // A full page claiming to be the end while its oldest has a prev.
        let (p1, _) = page(&all, None, 3);
        let out = w.on_page(&p1, false);
        assert!(out.errors.contains(&"history_more"), "{out:?}");
        assert!(!out.walk_done);
    }

    #[test]
    fn short_pages_with_more_and_stale_tops_are_caught() {
        let all = room(6, 1, 1);
        let mut w = Walker::new(expect(6, 6, true));
        let (p1, more) = page(&all, None, 2);
        assert!(more);
        assert_eq!(w.on_page(&p1, more).errors, vec!["history_size"]);
        // The newest page does not reach the room's newest message.
        let (p1, more) = page(&all, Some(6), 3);
        assert!(w.on_page(&p1, more).errors.contains(&"history_stale"));
    }

    #[test]
    fn a_walk_must_read_every_fill_message() {
        // The server lost h0 and the chain was relinked around it: seqs and prevs look
        // fine, only the fill indices and the count show it.
        let mut all = room(5, 1, 1);
        all.remove(0);
        all[0].prev = 0;
        let mut w = Walker::new(expect(5, 5, true));
        let (p1, more) = page(&all, None, 3);
        assert!(w.on_page(&p1, more).errors.is_empty());
        let (p2, more) = page(&all, w.before(), 3);
        let out = w.on_page(&p2, more);
        assert_eq!(out.errors, vec!["history_count"]);
        assert!(!out.walk_done);
    }

    #[test]
    fn mixed_rooms_allow_newer_chat_but_not_older() {
        let mut all = room(4, 1, 1);
        for s in 5..=8 {
            all.push(PageMsg {
                seq: s,
                prev: s - 1,
                fill: None,
            });
        }
        let mut w = Walker::new(expect(4, 4, false));
        let mut walks = 0;
        for _ in 0..3 {
            let (msgs, more) = page(&all, w.before(), 3);
            let out = w.on_page(&msgs, more);
            assert!(out.errors.is_empty(), "{out:?}");
            walks += u64::from(out.walk_done);
        }
        assert_eq!(walks, 1);
        // A chat message older than a fill message: the fill is not where it should be.
        all[1].fill = None;
        let mut w = Walker::new(expect(4, 4, false));
        let mut errors = Vec::new();
        for _ in 0..3 {
            let (msgs, more) = page(&all, w.before(), 3);
            errors.extend(w.on_page(&msgs, more).errors);
        }
        assert!(errors.contains(&"history_fill"), "{errors:?}");
        // The exact (history-only) room accepts no message but the fill.
        let mut w = Walker::new(expect(4, 8, true));
        let (msgs, more) = page(&all, None, 3);
        assert_eq!(w.on_page(&msgs, more).errors, vec!["history_fill"]);
    }

    #[test]
    fn empty_room_is_one_empty_page() {
        let mut w = Walker::new(expect(0, 0, true));
        let out = w.on_page(&[], false);
        assert!(out.errors.is_empty() && out.walk_done);
        let mut w = Walker::new(expect(3, 9, true));
        assert!(w.on_page(&[], false).errors.contains(&"history_stale"));
    }
}
