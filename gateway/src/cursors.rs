//! What a user sends is read by that user: after each ack the sender's read cursor should
//! move to the message. Writing the cursor per message would cost the worker one store
//! write (an fsync) per send, so the gateway keeps the highest seq per (room, user) and
//! hands them to the workers at most once per interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_protocol::service::{SetCursor, SetCursorRequest};
use tokio_util::sync::CancellationToken;

use crate::services::Services;

/// How often pending cursor moves are sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

type Pending = HashMap<(Arc<str>, Arc<str>), u64>;

/// Cursor moves waiting to be sent.
#[derive(Debug, Clone, Default)]
pub struct OwnReads {
    pending: Arc<Mutex<Pending>>,
}

impl OwnReads {
    /// `user` sent `seq` in `room`.
    pub fn sent(&self, room: &str, user: &str, seq: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pending
            .entry((Arc::from(room), Arc::from(user)))
            .or_default();
        *entry = (*entry).max(seq);
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sends the pending moves every [`FLUSH_EVERY`] until `stop`, then once more.
    pub fn spawn_flusher(&self, services: Services, stop: CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                let last = tokio::select! {
                    _ = stop.cancelled() => true,
                    _ = tick.tick() => false,
                };
                for ((room, user), seq) in this.take() {
                    let req = SetCursorRequest {
                        room: room.to_string(),
                        user: user.to_string(),
                        seq,
                    };
                    services.notify::<SetCursor>(&room, &req).await;
                }
                if last {
                    break;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_seq_per_room_and_user() {
        let reads = OwnReads::default();
        reads.sent("r", "ann", 5);
        reads.sent("r", "ann", 3);
        reads.sent("r", "bob", 4);
        reads.sent("s", "ann", 1);
        let mut got: Vec<_> = reads
            .take()
            .into_iter()
            .map(|((r, u), s)| (r.to_string(), u.to_string(), s))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("r".into(), "ann".into(), 5),
                ("r".into(), "bob".into(), 4),
                ("s".into(), "ann".into(), 1)
            ]
        );
        assert!(reads.take().is_empty());
    }
}
