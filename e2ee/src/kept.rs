//! Commits a device sees in a room whose group it is not in, kept until its welcome comes.
//!
//! The server takes a welcome for an earlier epoch than the room's (another member may commit
//! between a commit's ack and its welcome, docs/PROTOCOL.md), so in seq order a new member
//! can meet commits of the epochs after its welcome's before the welcome itself, while it
//! cannot apply them yet. It keeps them, saved with the device (the last [`KEPT_COMMITS`], at
//! most [`KEPT_CHARS`] of `mls.data` together), and right after its welcome applies those of
//! the welcome's epoch and later, in seq order. Without them its group would stay an epoch
//! behind the room for good (every later message an epoch gap).

use crate::device::{Device, MemberId};
use crate::event::Event;
use crate::wire::{Incoming, MlsKind};
use crate::ErrorKind;

/// Most commits kept per room.
pub(crate) const KEPT_COMMITS: usize = 64;
/// Most characters of `mls.data` kept per room (about 768 KiB of commits).
pub(crate) const KEPT_CHARS: usize = 1024 * 1024;

impl Device {
    /// Keeps `msg` if it is a commit (of a room this device is not in), dropping the oldest
    /// kept past the bounds.
    pub(crate) fn keep_commit(&mut self, msg: &Incoming) {
        if msg.mls.kind != MlsKind::Commit {
            return;
        }
        let kept = &mut self.meta.rooms.entry(msg.room.clone()).or_default().kept;
        kept.push(msg.clone());
        let mut chars: usize = kept.iter().map(|m| m.mls.data.len()).sum();
        let mut old = 0;
        while kept.len() - old > KEPT_COMMITS || chars > KEPT_CHARS {
            chars -= kept[old].mls.data.len();
            old += 1;
        }
        kept.drain(..old);
    }

    /// Right after this device joined `room` at `epoch`: applies the kept commits of that
    /// epoch and later, in seq order, and forgets every kept commit. A commit at fault is
    /// skipped, as a catch-up skips it; any other error stops there (the next message of a
    /// later epoch reports the gap). Who removed this device, if a kept commit did.
    pub(crate) fn apply_kept(&mut self, room: &str, epoch: u64) -> Option<MemberId> {
        let kept = std::mem::take(&mut self.meta.rooms.entry(room.to_owned()).or_default().kept);
        for msg in kept.iter().filter(|m| m.mls.epoch >= epoch) {
            match self.process_group_message(msg) {
                Ok(Event::Removed { by }) => return Some(by),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::Rejected | ErrorKind::Untrusted) => {
                    tracing::warn!(room, seq = msg.seq, error = %e, "kept e2ee commit skipped");
                }
                Err(e) => {
                    tracing::warn!(room, seq = msg.seq, error = %e, "kept e2ee commits not applied");
                    break;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::mls_message;

    fn commit(seq: u64, bytes: usize) -> Incoming {
        Incoming {
            room: "r".into(),
            seq,
            from: "alice".into(),
            mls: mls_message(MlsKind::Commit, seq, &vec![0; bytes]),
        }
    }

    fn kept_seqs(device: &Device) -> Vec<u64> {
        device.meta.rooms["r"].kept.iter().map(|m| m.seq).collect()
    }

    /// Only commits are kept, the newest [`KEPT_COMMITS`] within [`KEPT_CHARS`]: a flood of
    /// commits (or one huge one) from a room this device is not in cannot grow its state.
    #[test]
    fn kept_commits_are_bounded_by_count_and_size() {
        let mut device = Device::ephemeral("bob", "phone").unwrap();
        let mut app = commit(1, 10);
        app.mls.kind = MlsKind::App;
        device.keep_commit(&app);
        assert!(device.meta.rooms.get("r").is_none_or(|r| r.kept.is_empty()));
        for seq in 1..=100 {
            device.keep_commit(&commit(seq, 10));
        }
        assert_eq!(kept_seqs(&device), (37..=100).collect::<Vec<_>>());
        // each a little over half the budget
        let big = KEPT_CHARS / 4 * 3 / 2 + 3;
        device.keep_commit(&commit(101, big));
        device.keep_commit(&commit(102, big));
        assert_eq!(kept_seqs(&device), [102], "the older ones made room");
        device.keep_commit(&commit(103, KEPT_CHARS));
        assert_eq!(
            kept_seqs(&device),
            Vec::<u64>::new(),
            "too big to keep at all"
        );
    }
}
