//! What a run measures. Connection tasks send [`Sample`]s in batches to their shard's goose
//! user, which records each in goose and in its own HdrHistograms; counters (sent, acked,
//! delivered, duplicates, errors by code) are shared atomics read by the progress line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// One timing, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub kind: Kind,
    pub us: u64,
}

/// The timed operations; each is one goose request name and one histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// TCP + upgrade + hello → welcome.
    Connect,
    /// join → joined.
    Join,
    /// Scheduled send time → ack.
    Ack,
    /// Scheduled send time → message frame at a member.
    Deliver,
    /// Scheduled time of a `history` page request → its `history` answer.
    History,
    /// `--reconnect`: a lost connection → joined again with `since`.
    Reconnect,
    /// `files`: an upload's due time → its `201`.
    Upload,
    /// `files`: a download's request → its last byte.
    Download,
    /// `mixed`: an edit's scheduled send time → its ack (the worker checks it first).
    EditAck,
    /// `mixed`: a reaction's scheduled send time → its ack.
    ReactionAck,
    /// `mixed`: a search's due time → its answer.
    Search,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Connect,
        Kind::Join,
        Kind::Ack,
        Kind::Deliver,
        Kind::History,
        Kind::Reconnect,
        Kind::Upload,
        Kind::Download,
        Kind::EditAck,
        Kind::ReactionAck,
        Kind::Search,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Join => "join",
            Kind::Ack => "ack",
            Kind::Deliver => "deliver",
            Kind::History => "history",
            Kind::Reconnect => "reconnect",
            Kind::Upload => "upload",
            Kind::Download => "download",
            Kind::EditAck => "edit_ack",
            Kind::ReactionAck => "reaction_ack",
            Kind::Search => "search",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One histogram per [`Kind`], 1 µs to 5 min, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Hists(pub Vec<Histogram<u64>>);

impl Hists {
    pub fn new() -> anyhow::Result<Self> {
        let mut v = Vec::new();
        for _ in Kind::ALL {
            v.push(Histogram::new_with_bounds(1, 300_000_000, 3)?);
        }
        Ok(Self(v))
    }

    pub fn record(&mut self, s: Sample) {
        self.0[s.kind.index()].saturating_record(s.us.max(1));
    }

    pub fn get(&self, kind: Kind) -> &Histogram<u64> {
        &self.0[kind.index()]
    }

    pub fn merge(&mut self, other: &Hists) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            // Same bounds on both sides: `add` cannot fail.
            let _ = a.add(b);
        }
    }
}

/// Counters shared by every task of a run.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub connect_failures: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub prev_breaks: AtomicU64,
    pub lost: AtomicU64,
    pub delivered_unacked: AtomicU64,
    pub dropped_connections: AtomicU64,
    /// `--reconnect`: sends written again, unchanged, after a reconnect.
    pub resent: AtomicU64,
    /// `history` pages answered (whether or not they passed the checks).
    pub history_pages: AtomicU64,
    /// Messages in those pages.
    pub history_messages: AtomicU64,
    /// Walks that reached the room's first message with every page checked.
    pub history_walks: AtomicU64,
    /// `history` requests answered with an error or not answered in time.
    pub history_failed: AtomicU64,
    /// Pages, and messages in them, answered before the measured phase ended (a run that
    /// falls behind answers the rest during the drain).
    pub history_pages_in_phase: AtomicU64,
    pub history_messages_in_phase: AtomicU64,
    /// `mixed`: edits and reactions acked (inside `acked`).
    pub edits: AtomicU64,
    pub reactions: AtomicU64,
    /// `mixed`: searches answered, answered with an error (or not at all), and answered
    /// without the message searched for.
    pub searches: AtomicU64,
    pub search_failed: AtomicU64,
    pub search_missed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    /// Counts one error under `code` (a protocol error code, `closed_1013`, `connect`, …).
    pub fn error(&self, code: &str) {
        if let Ok(mut map) = self.errors.lock() {
            *map.entry(code.to_owned()).or_default() += 1;
        }
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn error_total(&self) -> u64 {
        self.errors().values().sum()
    }

    /// Errors that are a connection ending (`closed_<code>`, `connection_lost`,
    /// `send_failed`), not an answer to a send.
    pub fn connection_errors(&self) -> u64 {
        self.errors()
            .iter()
            .filter(|(code, _)| {
                code.starts_with("closed_")
                    || matches!(code.as_str(), "connection_lost" | "send_failed")
            })
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hists_record_and_merge() {
        let mut a = Hists::new().unwrap();
        let mut b = Hists::new().unwrap();
        a.record(Sample {
            kind: Kind::Deliver,
            us: 1000,
        });
        b.record(Sample {
            kind: Kind::Deliver,
            us: 3000,
        });
        a.merge(&b);
        assert_eq!(a.get(Kind::Deliver).len(), 2);
        assert_eq!(a.get(Kind::Ack).len(), 0);
    }

    #[test]
    fn errors_by_code() {
        let c = Counters::default();
        c.error("rate_limited");
        c.error("rate_limited");
        assert_eq!(c.errors()["rate_limited"], 2);
        assert_eq!(c.error_total(), 2);
        c.error("closed_1001");
        c.error("connection_lost");
        assert_eq!(c.error_total(), 4);
        assert_eq!(c.connection_errors(), 2);
    }
}
