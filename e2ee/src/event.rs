//! What processing one `message` of an e2ee room gives the application.

use crate::device::MemberId;

/// The outcome of [`Device::process`](crate::Device::process). More kinds may come:
/// applications match the ones they show and ignore the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A chat message from a member whose credential matches the server-attested sender,
    /// stored at `seq` (what a later [`Event::Deleted`] names).
    Text {
        seq: u64,
        from: MemberId,
        text: String,
    },
    /// The message at `seq` was deleted by `by` (its author, a room admin or the owner, as
    /// the server authenticated and checked them: the server's word, nothing end to end
    /// vouches for it): an application that shows it takes it down. Reported for any seq,
    /// shown or not, and possibly more than once (see [`Device::process_deletion`](crate::Device::process_deletion)).
    Deleted { seq: u64, by: String },
    /// This device joined the room's group through a welcome, and is at `epoch`: the
    /// welcome's, or later when commits made after the welcome's own were stored before it
    /// (the device applied them, see docs/E2EE.md).
    Joined {
        by: MemberId,
        epoch: u64,
        members: Vec<MemberId>,
    },
    /// A commit moved the group to `epoch`: members added and removed (both empty for a
    /// self-update).
    Committed {
        by: MemberId,
        epoch: u64,
        added: Vec<MemberId>,
        removed: Vec<MemberId>,
    },
    /// A commit removed this device: its group for the room is gone.
    Removed { by: MemberId },
    /// Nothing to show; the reason, for logs and tests.
    Ignored(Ignored),
}

/// Why a message changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Its seq was already processed.
    Duplicate,
    /// This device's own application message coming back.
    OwnMessage,
    /// A commit for an epoch the group already passed: this device's own commit coming back
    /// after the ack, or one the server stored as void.
    StaleCommit,
    /// A welcome for other devices.
    NotForMe,
    /// This device has no group for the room (before its welcome, after its removal); a
    /// commit is kept for a welcome that may follow (docs/E2EE.md, "Epochs").
    NotMember,
    /// A standalone proposal (the SDK commits its changes directly and makes none).
    Proposal,
    /// The epoch in the frame is not the one inside the MLS message.
    EpochMismatch,
}
