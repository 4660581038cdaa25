//! The gateway's replay slots: at most `max_replays` replays (`join` with `since`) run at
//! once on a gateway, at most `max_replays_per_user` of them for one user (over all their
//! sessions) and `max_replays_per_ip` for one client address (over all its accounts; one
//! more of either is refused `rate_limited`), so neither one user's nor one address's slow
//! readers can hold every slot and refuse everyone else's resumes; a join waits up to
//! `replay_wait_ms` for a slot, then is refused `unavailable`. Sessions take them through `session::replays`,
//! which adds the per-session bound and the hand-over of a slot to the re-join that
//! replaces a replay.

use std::net::IpAddr;
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
    per_ip: Counts<IpAddr>,
    max_per_ip: usize,
    wait: Duration,
}

/// How many replays one user, and one client address, may run at once.
#[derive(Debug, Clone, Copy)]
pub struct Shares {
    pub per_user: usize,
    pub per_ip: usize,
}

/// One of the gateway's replay slots, held while a replay runs.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _user: Counted<Arc<str>>,
    _ip: Option<Counted<IpAddr>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(RUNNING).decrement(1.0);
    }
}

impl ReplaySlots {
    /// `max` slots, `shares` of them for one user and one address; a join waits up to
    /// `wait` for one.
    pub fn new(max: usize, shares: Shares, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            per_user: Counts::default(),
            max_per_user: shares.per_user,
            per_ip: Counts::default(),
            max_per_ip: shares.per_ip,
            wait,
        }
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// A free slot for a replay of `user`'s from client address `ip` (`None`: not counted,
    /// a trusted proxy), waiting up to the configured time; `rate_limited` if the user or
    /// the address has its share running, `unavailable` if no slot freed.
    pub(crate) async fn acquire(
        &self,
        user: &Arc<str>,
        ip: Option<IpAddr>,
    ) -> Result<Slot, ApiError> {
        // Counted before the wait, so concurrent joins cannot all pass the checks.
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
        let from = match ip {
            None => None,
            Some(ip) => match self.per_ip.take(&ip, self.max_per_ip) {
                Some(counted) => Some(counted),
                None => {
                    metrics::counter!("chatmesh_replays_refused_total", "reason" => "address")
                        .increment(1);
                    return Err(ApiError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "at most {} joins with since from one address may replay at once \
                             on this gateway; join again when one is done",
                            self.max_per_ip
                        ),
                    ));
                }
            },
        };
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await;
        match permit {
            Ok(Ok(permit)) => {
                metrics::gauge!(RUNNING).increment(1.0);
                Ok(Slot {
                    _permit: permit,
                    _user: counted,
                    _ip: from,
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
