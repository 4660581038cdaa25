//! Re-checks after a NATS reconnect. Membership and user events reach gateways over core
//! NATS, which keeps nothing for a client that is away: every event sent while this
//! gateway's connection was down is lost, and so is what the client drops for a slow
//! subscription. What those events keep current (room access, token generations) is asked
//! again after each reconnect or slow-consumer drop ([`natskit::lossy::losses`]) by a task
//! started with [`on_reconnect`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the connection's count of (re)connects is looked at.
const LOOK: Duration = Duration::from_secs(1);
/// Pause before a re-check is repeated because some answers did not come.
const RETRY: Duration = Duration::from_secs(5);
/// Questions a re-check asks the workers at once.
pub const CONCURRENCY: usize = 16;

/// The pause after each batch of [`CONCURRENCY`] questions of a periodic pass over `n` of
/// them, so that the pass takes about half of `every` (the periodic re-checks:
/// [`crate::revocation::Revocation::sweep`], [`crate::access::sweep`]).
pub fn pass_pause(every: Duration, n: usize) -> Duration {
    let batches = n.div_ceil(CONCURRENCY).max(1);
    (every / 2) / u32::try_from(batches).unwrap_or(u32::MAX)
}

/// Waits `wait`; false if `drain` came first.
pub async fn pause(wait: Duration, drain: &CancellationToken) -> bool {
    tokio::select! {
        _ = drain.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// The count of losses (see [`watch`]) after which the catch-up ([`crate::catchup`]: room
/// access and token generations both) has run: what the rooms wait for before they deliver
/// again ([`crate::fanout::RoomEnv::rechecked`]), so neither a user removed from a room nor a
/// session of a revoked token gets what was stored after the missed event.
#[derive(Debug)]
pub struct Rechecked {
    done: watch::Sender<u64>,
}

impl Rechecked {
    /// Caught up to `losses` (the count when the gateway started).
    pub fn new(losses: u64) -> (Arc<Self>, watch::Receiver<u64>) {
        let (done, rx) = watch::channel(losses);
        (Arc::new(Self { done }), rx)
    }

    /// The catch-up that started at `losses` has run; a run that ends late for an older
    /// count moves nothing back.
    pub fn done(&self, losses: u64) {
        self.done.send_if_modified(|done| {
            let newer = losses > *done;
            if newer {
                *done = losses;
            }
            newer
        });
    }
}

/// The number of times `nats` may have lost messages ((re)connects and slow-consumer
/// drops, [`natskit::lossy::losses`]), updated every second until `drain`. It starts at
/// `since`, the count the gateway's state was made at: a loss between then and now is seen
/// as a change at the first look.
pub fn watch(
    nats: &async_nats::Client,
    since: u64,
    background: &crate::supervise::Supervisor,
) -> watch::Receiver<u64> {
    let stats = nats.statistics();
    let (tx, rx) = watch::channel(since);
    let drain = background.drain().clone();
    background.spawn("loss watch", async move {
        let mut look = tokio::time::interval(LOOK);
        loop {
            tokio::select! {
                _ = drain.cancelled() => return,
                _ = look.tick() => {
                    tx.send_if_modified(|seen| {
                        let now = natskit::lossy::losses(&stats);
                        std::mem::replace(seen, now) != now
                    });
                }
            }
        }
    });
    rx
}

/// Runs `recheck` after every reconnect seen by `connects` (reconnects during a run make one
/// more run), until `drain`. `recheck` returns how many of its questions got no answer; while
/// that is not zero, it runs again after [`RETRY`].
pub fn on_reconnect<F, Fut>(
    mut connects: watch::Receiver<u64>,
    background: &crate::supervise::Supervisor,
    recheck: F,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = usize> + Send,
{
    connects.mark_unchanged();
    let drain = background.drain().clone();
    background.spawn("catch-up", async move {
        loop {
            tokio::select! {
                _ = drain.cancelled() => return,
                changed = connects.changed() => if changed.is_err() { return },
            }
            while recheck().await > 0 {
                tokio::select! {
                    _ = drain.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rooms are let go at the count the catch-up ran for; a run that ends late for an
    /// older count moves nothing back.
    #[test]
    fn the_rooms_wait_for_the_catch_up() {
        let (done, rx) = Rechecked::new(1);
        done.done(2);
        assert_eq!(*rx.borrow(), 2);
        done.done(3);
        assert_eq!(*rx.borrow(), 3);
        done.done(2);
        assert_eq!(*rx.borrow(), 3);
    }
}
