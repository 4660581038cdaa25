//! Edits and reactions among a chatter's sends (the `mixed` scenario's `--edits-fraction`
//! and `--reactions-fraction`). Which of a publisher's scheduled sends is what is decided by
//! its `k` alone ([`Mix::kind_of`]); whether it can be made depends on what the connection
//! has seen, which its reader task records in [`Targets`]:
//! - an **edit** replaces the body of the sender's own latest acked message (at most
//!   [`MAX_EDITS`] times each, under the server's 20); its body is a harness body with its
//!   own `k`, so members check it for loss, duplicates and latency like any message;
//! - a **reaction** puts one of [`KEYS`] on the latest plain message the connection
//!   received and has not reacted to yet (one reaction per user and message, far under the
//!   server's bounds); its body is the key, so members see it only in the `prev` chain, and
//!   its `k` is never counted as a message.
//!
//! A send that cannot be made yet (no own message acked, nothing new to react to) goes out
//! as a plain message. The kind travels in the client id (`…-e-k<k>`, `…-r-k<k>`), so the
//! ack and every member know what each `k` was.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use chatmesh_protocol::frames::ClientFrame;
use chatmesh_protocol::message::Change;

/// Edits of one message at most (the server allows 20).
pub const MAX_EDITS: u64 = 10;

/// The reaction keys, chosen by `k`.
pub const KEYS: [&str; 6] = ["👍", "❤️", "😂", "🎉", "👀", "🙏"];

/// What one scheduled send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    Message,
    Edit,
    Reaction,
}

impl SendKind {
    /// The marker in the client id (`<run>-<conn>-<marker>k<k>`).
    fn marker(self) -> &'static str {
        match self {
            SendKind::Message => "",
            SendKind::Edit => "e-",
            SendKind::Reaction => "r-",
        }
    }

    /// The kind of a send from its client id.
    pub fn of_id(id: &str) -> Self {
        match id.rsplit_once("-k").map(|(head, _)| head) {
            Some(h) if h.ends_with("-e") => SendKind::Edit,
            Some(h) if h.ends_with("-r") => SendKind::Reaction,
            _ => SendKind::Message,
        }
    }
}

/// The shares of edits and reactions among the sends, and the searches beside them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mix {
    pub edits: f64,
    pub reactions: f64,
    /// Searches per second over the run (`crate::search`).
    pub searches_per_s: f64,
}

impl Mix {
    pub fn is_plain(&self) -> bool {
        self.edits <= 0.0 && self.reactions <= 0.0
    }

    /// What send `k` should be: a fixed pseudo-random draw per `k`, so every run of a plan
    /// has the same mix.
    pub fn kind_of(&self, k: u64) -> SendKind {
        let x = (splitmix(k) >> 11) as f64 / (1u64 << 53) as f64;
        if x < self.edits {
            SendKind::Edit
        } else if x < self.edits + self.reactions {
            SendKind::Reaction
        } else {
            SendKind::Message
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a connection's reader saw that its publisher may change: shared by the two tasks.
#[derive(Debug, Default)]
pub struct Targets {
    /// Seq of this connection's latest acked plain message (0: none yet).
    own: AtomicU64,
    /// Edits sent of `own`.
    own_edits: AtomicU64,
    /// Seq of the latest plain message received in the room (0: none yet).
    room: AtomicU64,
    /// The last seq this connection reacted to.
    reacted: AtomicU64,
}

impl Targets {
    /// The reader saw the ack of a plain message of ours.
    pub fn own_acked(&self, seq: u64) {
        if self.own.fetch_max(seq, Relaxed) < seq {
            self.own_edits.store(0, Relaxed);
        }
    }

    /// The reader received a plain message.
    pub fn received(&self, seq: u64) {
        self.room.fetch_max(seq, Relaxed);
    }

    /// The seq to edit now, if any (and counts the edit).
    fn take_edit(&self) -> Option<u64> {
        let own = self.own.load(Relaxed);
        (own > 0 && self.own_edits.fetch_add(1, Relaxed) < MAX_EDITS).then_some(own)
    }

    /// The seq to react to now, if any (and remembers it).
    fn take_reaction(&self) -> Option<u64> {
        let room = self.room.load(Relaxed);
        (room > self.reacted.fetch_max(room, Relaxed)).then_some(room)
    }
}

/// The frame of send `k` as `mix` and `targets` allow, with `body` (a harness body) for a
/// message or an edit; and its kind.
pub fn frame(
    mix: &Mix,
    targets: &Targets,
    room: &str,
    id_head: &str,
    k: u64,
    body: String,
) -> (ClientFrame, SendKind) {
    let (kind, target) = match mix.kind_of(k) {
        SendKind::Edit => match targets.take_edit() {
            Some(seq) => (SendKind::Edit, Some(seq)),
            None => (SendKind::Message, None),
        },
        SendKind::Reaction => match targets.take_reaction() {
            Some(seq) => (SendKind::Reaction, Some(seq)),
            None => (SendKind::Message, None),
        },
        SendKind::Message => (SendKind::Message, None),
    };
    let body = match kind {
        SendKind::Reaction => KEYS[(k % KEYS.len() as u64) as usize].to_owned(),
        _ => body,
    };
    let id = format!("{id_head}-{}k{k}", kind.marker());
    let frame = match (kind, target) {
        (SendKind::Edit, Some(seq)) => ClientFrame::send_change(room, id, body, Change::Edit(seq)),
        (SendKind::Reaction, Some(seq)) => {
            ClientFrame::send_change(room, id, body, Change::React(seq))
        }
        _ => ClientFrame::send(room, id, body),
    };
    (frame, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_the_fractions() {
        let mix = Mix {
            edits: 0.05,
            reactions: 0.2,
            ..Mix::default()
        };
        let n = 100_000;
        let count = |kind| (0..n).filter(|&k| mix.kind_of(k) == kind).count() as f64 / n as f64;
        assert!((count(SendKind::Edit) - 0.05).abs() < 0.005);
        assert!((count(SendKind::Reaction) - 0.2).abs() < 0.005);
        assert!(Mix::default().is_plain());
        assert_eq!(Mix::default().kind_of(7), SendKind::Message);
    }

    #[test]
    fn sends_change_only_what_was_seen() {
        let mix = Mix {
            edits: 0.5,
            reactions: 0.5,
            ..Mix::default()
        };
        let t = Targets::default();
        let edit = (0..).find(|&k| mix.kind_of(k) == SendKind::Edit).unwrap();
        let react = (0..)
            .find(|&k| mix.kind_of(k) == SendKind::Reaction)
            .unwrap();
        // Nothing seen: plain messages.
        assert_eq!(
            frame(&mix, &t, "r", "x-1", edit, "b".into()).1,
            SendKind::Message
        );
        assert_eq!(
            frame(&mix, &t, "r", "x-1", react, "b".into()).1,
            SendKind::Message
        );
        t.own_acked(5);
        t.received(9);
        let (f, kind) = frame(&mix, &t, "r", "x-1", edit, "b".into());
        assert_eq!(kind, SendKind::Edit);
        let ClientFrame::Send { id, edit_of, .. } = f else {
            panic!()
        };
        assert_eq!(
            (id.as_str(), edit_of),
            (format!("x-1-e-k{edit}").as_str(), Some(5))
        );
        assert_eq!(SendKind::of_id(&id), SendKind::Edit);
        let (f, kind) = frame(&mix, &t, "r", "x-1", react, "b".into());
        assert_eq!(kind, SendKind::Reaction);
        let ClientFrame::Send {
            id, react_to, body, ..
        } = f
        else {
            panic!()
        };
        assert_eq!(
            (react_to, SendKind::of_id(&id)),
            (Some(9), SendKind::Reaction)
        );
        assert!(KEYS.contains(&body.as_str()));
        // Reacted to 9 already: the next reaction waits for a newer message.
        assert_eq!(
            frame(&mix, &t, "r", "x-1", react, "b".into()).1,
            SendKind::Message
        );
        // At most MAX_EDITS edits of one message; a newer own message starts again.
        for _ in 1..MAX_EDITS {
            assert_eq!(
                frame(&mix, &t, "r", "x-1", edit, "b".into()).1,
                SendKind::Edit
            );
        }
        assert_eq!(
            frame(&mix, &t, "r", "x-1", edit, "b".into()).1,
            SendKind::Message
        );
        t.own_acked(12);
        assert_eq!(
            frame(&mix, &t, "r", "x-1", edit, "b".into()).1,
            SendKind::Edit
        );
        assert_eq!(SendKind::of_id("run-3-k7"), SendKind::Message);
    }
}
