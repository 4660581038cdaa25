//! The sends of one session waiting for their PubAck, polled by the session's own task.
//!
//! A send is published in read order and then waits for its PubAck (with retries, see
//! `publish.rs`) and queues its `ack`. That wait used to be a task of its own per send: the
//! PubAck woke that task, which then woke the session's writer, two thread wake-ups per
//! message where one does. Here the waits live in the session: the PubAck wakes the session,
//! which queues the ack and writes it in the same turn.
//!
//! The set is polled whenever the session waits for the client ([`progress`] beside the
//! socket read) and while a send waits for admission ([`during`]): admission waits for slots
//! that only these waits free, so a session that stopped polling them there would wait on
//! itself. Sessions that never send never allocate the set.

use std::future::Future;
use std::pin::Pin;

use futures::stream::{FuturesUnordered, StreamExt};
use sync_wrapper::SyncWrapper;

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The waits of one session; created at its first send. `SyncWrapper`: the session is
/// borrowed across awaits in a `Send` task, so it must be `Sync`; the set is only ever used
/// through `&mut`.
pub type Acks = Option<Box<SyncWrapper<FuturesUnordered<Wait>>>>;

/// Adds a wait for one send's PubAck.
pub fn push(acks: &mut Acks, wait: impl Future<Output = ()> + Send + 'static) {
    acks.get_or_insert_with(|| Box::new(SyncWrapper::new(FuturesUnordered::new())))
        .get_mut()
        .push(Box::pin(wait));
}

/// Completes when one wait has finished; never while none is pending.
pub async fn progress(acks: &mut Acks) {
    match acks.as_mut().map(|set| set.get_mut()) {
        Some(set) if !set.is_empty() => {
            set.next().await;
        }
        _ => std::future::pending().await,
    }
}

/// Runs `f` to completion while the waits make progress beside it.
pub async fn during<F: Future>(acks: &mut Acks, f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    loop {
        tokio::select! {
            biased;
            out = &mut f => return out,
            () = progress(acks) => {}
        }
    }
}

/// Finishes every pending wait (the session is closing: its acks go out first).
pub async fn drain(acks: &mut Acks) {
    if let Some(set) = acks {
        while set.get_mut().next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A wait that needs a slot held by another wait completes, because `during` polls the
    /// waits while it waits (the admission case).
    #[tokio::test(start_paused = true)]
    async fn a_wait_for_a_slot_held_by_a_pending_ack_completes() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let held = slots.clone().acquire_owned().await.expect("slot");
        let mut acks: Acks = None;
        push(&mut acks, async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(held);
        });
        let got = tokio::time::timeout(
            Duration::from_secs(1),
            during(&mut acks, slots.acquire_owned()),
        )
        .await;
        assert!(got.is_ok(), "admission waited on its own session's ack");
    }

    #[tokio::test(start_paused = true)]
    async fn progress_pends_while_empty_and_drain_finishes_all() {
        let mut acks: Acks = None;
        let idle = tokio::time::timeout(Duration::from_secs(1), progress(&mut acks)).await;
        assert!(idle.is_err(), "progress without waits must pend");
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..5u64 {
            let done = done.clone();
            push(&mut acks, async move {
                tokio::time::sleep(Duration::from_millis(i * 3)).await;
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        progress(&mut acks).await;
        assert_eq!(done.load(Ordering::Relaxed), 1);
        drain(&mut acks).await;
        assert_eq!(done.load(Ordering::Relaxed), 5);
    }
}
