//! The gateway's replay slots: at most `max_replays` replays (`join` with `since`) run at
//! once on a gateway, at most `max_replays_per_user` of them for one user (over all their
//! sessions; one more is refused `rate_limited`), so one user's slow readers cannot hold
//! every slot and refuse everyone else's resumes; a join waits up to `replay_wait_ms` for a
//! slot, then is refused `unavailable`. Sessions take them through `session::replays`,
//! which adds the per-session bound and the hand-over of a slot to the re-join that
//! replaces a replay.

use std::sync::Arc;
use std::time::Duration;

use chatmesh_protocol::{ApiError, ErrorCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::counts::{Counted, Counts};

/// Replays in progress on this gateway: gauge `chatmesh_replays_running`.
const RUNNING: &str = "chatmesh_replays_running";

/// The gateway's replay slots.
#[derive(Debug)]
pub struct ReplaySlots {
    slots: Arc<Semaphore>,
    per_user: Counts<Arc<str>>,
    max_per_user: usize,
    wait: Duration,
}

/// One of the gateway's replay slots, held while a replay runs.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _user: Counted<Arc<str>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(RUNNING).decrement(1.0);
    }
}

impl ReplaySlots {
    /// `max` slots, `max_per_user` of them for one user; a join waits up to `wait` for one.
    pub fn new(max: usize, max_per_user: usize, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            per_user: Counts::default(),
            max_per_user,
            wait,
        }
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// A free slot for a replay of `user`'s, waiting up to the configured time;
    /// `rate_limited` if the user has their share running, `unavailable` if no slot freed.
    pub(crate) async fn acquire(&self, user: &Arc<str>) -> Result<Slot, ApiError> {
        // Counted before the wait, so a user's concurrent joins cannot all pass the check.
        let Some(counted) = self.per_user.take(user, self.max_per_user) else {
            metrics::counter!("chatmesh_replays_refused_total", "reason" => "user").increment(1);
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "at most {} joins with since of one user may replay at once on this \
                     gateway; join again when one is done",
                    self.max_per_user
                ),
            ));
        };
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await;
        match permit {
            Ok(Ok(permit)) => {
                metrics::gauge!(RUNNING).increment(1.0);
                Ok(Slot {
                    _permit: permit,
                    _user: counted,
                })
            }
            _ => {
                metrics::counter!("chatmesh_replays_refused_total", "reason" => "gateway")
                    .increment(1);
                Err(ApiError::unavailable(
                    "too many replays in progress on this gateway; join again shortly",
                ))
            }
        }
    }
}
