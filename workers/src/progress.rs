//! How far each partition's store writer got, in memory, for readers that must not answer
//! from a store behind the stream (history after an `ack`: see `service::fresh`).
//!
//! The store writer reports its checkpoint after every committed batch, once the caches
//! were told (so a reader woken here never finds a cache older than the store), and when a
//! consumer session starts from the stored checkpoint. Readers wait on a `watch` channel
//! per partition: no polling, and a reader that arrives after the store caught up does not
//! wait at all.

use tokio::sync::watch;

/// The stored checkpoint of every partition of this worker.
#[derive(Debug)]
pub struct Progress {
    partitions: Box<[watch::Sender<u64>]>,
}

impl Progress {
    /// Progress of `partitions` partitions, all at 0 until their writers report.
    pub fn new(partitions: u32) -> Self {
        Self {
            partitions: (0..partitions).map(|_| watch::Sender::new(0)).collect(),
        }
    }

    /// Store writer only: partition `p` has every message up to stream seq `checkpoint`.
    pub fn stored(&self, p: u32, checkpoint: u64) {
        if let Some(tx) = self.partitions.get(p as usize) {
            tx.send_if_modified(|at| {
                let moved = checkpoint > *at;
                *at = (*at).max(checkpoint);
                moved
            });
        }
    }

    /// The checkpoint of partition `p` as last reported.
    pub fn at(&self, p: u32) -> u64 {
        self.partitions.get(p as usize).map_or(0, |tx| *tx.borrow())
    }

    /// Waits until partition `p` has stored stream seq `seq`, until `deadline`; whether it
    /// did.
    pub async fn reached(&self, p: u32, seq: u64, deadline: tokio::time::Instant) -> bool {
        let Some(tx) = self.partitions.get(p as usize) else {
            return false;
        };
        let mut rx = tx.subscribe();
        let reached = tokio::time::timeout_at(deadline, rx.wait_for(|at| *at >= seq)).await;
        matches!(reached, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A reader waits for the writer to pass its seq, never for a checkpoint going back,
    /// and gives up at its deadline.
    #[tokio::test(start_paused = true)]
    async fn readers_wait_for_the_writer_up_to_a_deadline() {
        let p = Arc::new(Progress::new(2));
        p.stored(1, 10);
        let soon = tokio::time::Instant::now() + Duration::from_secs(1);
        assert!(p.reached(1, 10, soon).await, "already there: no wait");
        let waiting = tokio::spawn({
            let p = p.clone();
            async move { p.reached(1, 12, soon).await }
        });
        tokio::task::yield_now().await;
        p.stored(1, 11);
        p.stored(1, 5);
        assert_eq!(p.at(1), 11, "a checkpoint never goes back");
        p.stored(1, 12);
        assert!(waiting.await.unwrap());
        assert!(!p.reached(0, 1, soon).await, "nothing stored: times out");
        assert!(!p.reached(7, 1, soon).await, "no such partition");
    }
}
