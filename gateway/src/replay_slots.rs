//! The gateway's replay slots: at most `max_replays` replays (`join` with `since`) run at
//! once on a gateway; a join waits up to `replay_wait_ms` for a slot, then is refused
//! `unavailable`. Sessions take them through `session::replays`, which adds the per-session
//! bound and the hand-over of a slot to the re-join that replaces a replay.

use std::sync::Arc;
use std::time::Duration;

use chatmesh_protocol::ApiError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Replays in progress on this gateway: gauge `chatmesh_replays_running`.
const RUNNING: &str = "chatmesh_replays_running";

/// The gateway's replay slots.
#[derive(Debug)]
pub struct ReplaySlots {
    slots: Arc<Semaphore>,
    wait: Duration,
}

/// One of the gateway's replay slots, held while a replay runs.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(RUNNING).decrement(1.0);
    }
}

impl ReplaySlots {
    /// `max` slots; a join waits up to `wait` for one.
    pub fn new(max: usize, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            wait,
        }
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// A free slot, waiting up to the configured time; `unavailable` if none freed.
    pub(crate) async fn acquire(&self) -> Result<Slot, ApiError> {
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await;
        match permit {
            Ok(Ok(permit)) => {
                metrics::gauge!(RUNNING).increment(1.0);
                Ok(Slot { _permit: permit })
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
