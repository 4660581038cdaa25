//! Loss and duplicate detection for one member of one room. Every harness message carries
//! its room-local index `k`; a member keeps a bitset of the `k`s it received, and the room
//! keeps a bitset of the `k`s that were acked. Loss is an acked message a member never got
//! (exact, at the end); duplicates are a `k` seen twice; the `seq`/`prev` chain flags gaps
//! and reordering live, as a client would see them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::clock::now_us;
use crate::stats::{Counters, Kind, Sample};

/// The `k`s of one room that were acked, written by publishers, read by members at the end.
#[derive(Debug)]
pub struct AckedSet {
    bits: Vec<AtomicU64>,
}

impl AckedSet {
    pub fn new(messages: u64) -> Self {
        Self {
            bits: (0..messages.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    pub fn insert(&self, k: u64) {
        if let Some(word) = self.bits.get((k / 64) as usize) {
            word.fetch_or(1 << (k % 64), Relaxed);
        }
    }

    pub fn contains(&self, k: u64) -> bool {
        self.bits
            .get((k / 64) as usize)
            .is_some_and(|w| w.load(Relaxed) & (1 << (k % 64)) != 0)
    }

    pub fn count(&self) -> u64 {
        self.bits
            .iter()
            .map(|w| u64::from(w.load(Relaxed).count_ones()))
            .sum()
    }
}

/// What one delivery was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    New,
    Duplicate,
    /// A `k` outside this run's schedule (another client's message).
    Foreign,
}

/// One member's view of one room.
#[derive(Debug)]
pub struct MemberTracker {
    received: Vec<u64>,
    last_seq: u64,
    pub prev_breaks: u64,
}

impl MemberTracker {
    /// `messages` = the room's scheduled sends; `last_seq` = `joined.last_seq`.
    pub fn new(messages: u64, last_seq: u64) -> Self {
        Self {
            received: vec![0; messages.div_ceil(64) as usize],
            last_seq,
            prev_breaks: 0,
        }
    }

    /// Records delivery of message `k` (`seq`, `prev`, scheduled at `due` µs): counts it as
    /// delivered or duplicated, and, once past `warm_from`, samples its latency into `batch`.
    #[allow(clippy::too_many_arguments)]
    pub fn deliver(
        &mut self,
        k: u64,
        seq: u64,
        prev: u64,
        due: u64,
        warm_from: u64,
        counters: &Counters,
        batch: &mut Vec<Sample>,
    ) {
        match self.on_message(k, seq, prev) {
            Seen::New => {
                Counters::add(&counters.delivered, 1);
                if due >= warm_from {
                    let us = now_us().saturating_sub(due);
                    batch.push(Sample {
                        kind: Kind::Deliver,
                        us,
                    });
                }
            }
            Seen::Duplicate => Counters::add(&counters.duplicates, 1),
            Seen::Foreign => {}
        }
    }

    /// The highest seq this member holds (what a resume asks `since`).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Records message `k` with its `seq` and `prev`.
    pub fn on_message(&mut self, k: u64, seq: u64, prev: u64) -> Seen {
        if seq <= self.last_seq || prev != self.last_seq {
            // A repeat, a reordering, or a message this member never saw before `seq`.
            self.prev_breaks += 1;
        }
        self.last_seq = self.last_seq.max(seq);
        let Some(word) = self.received.get_mut((k / 64) as usize) else {
            return Seen::Foreign;
        };
        let bit = 1 << (k % 64);
        if *word & bit != 0 {
            return Seen::Duplicate;
        }
        *word |= bit;
        Seen::New
    }

    /// `(lost, delivered but never acked)` once every ack is in.
    pub fn settle(&self, acked: &AckedSet) -> (u64, u64) {
        let mut lost = 0;
        let mut unacked = 0;
        for (i, mine) in self.received.iter().enumerate() {
            let a = acked.bits.get(i).map_or(0, |w| w.load(Relaxed));
            lost += u64::from((a & !mine).count_ones());
            unacked += u64::from((mine & !a).count_ones());
        }
        (lost, unacked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_loss_duplicates_and_gaps() {
        let acked = AckedSet::new(130);
        for k in [0, 1, 2, 129] {
            acked.insert(k);
        }
        let mut m = MemberTracker::new(130, 10);
        assert_eq!(m.on_message(0, 11, 10), Seen::New);
        assert_eq!(m.on_message(1, 12, 11), Seen::New);
        assert_eq!(m.on_message(1, 12, 11), Seen::Duplicate);
        // k=2 (seq 13) missed: prev of the next one does not match.
        assert_eq!(m.on_message(129, 14, 13), Seen::New);
        assert_eq!(m.on_message(500, 15, 14), Seen::Foreign);
        assert_eq!(m.prev_breaks, 2);
        assert_eq!(m.settle(&acked), (1, 0));
        assert_eq!(acked.count(), 4);
        assert!(acked.contains(129) && !acked.contains(3));
    }
}
