//! Replies and threads (extension, docs/PROTOCOL.md "Replies and threads"): a message may
//! reply to an earlier one (`reply_to`); every reply belongs to the thread of one root, the
//! first message of the chain of replies (`thread_root`). The root carries a
//! [`ThreadSummary`] in history; the thread view pages through the replies of one root.

use serde::{Deserialize, Serialize};

/// The replies of a thread, as its root shows them in history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSummary {
    /// Replies stored (retention and deletes do not lower it: a deleted reply stays as a
    /// tombstone).
    pub count: u64,
    /// Seq and ts of the latest reply.
    pub last_seq: u64,
    pub last_ts: u64,
}
