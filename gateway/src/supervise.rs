//! The gateway's background tasks that it cannot do without: the account and membership
//! event listeners, the periodic session and access passes, the event log's looks and the
//! catch-up after a loss. They run until the gateway drains; one that ends before (a panic,
//! a subscription that ended) would leave revoked tokens and removed members in their rooms
//! while the process looks healthy. So each runs under a [`Supervisor`], which notes the
//! first that ends unasked: `/healthz` and `/readyz` then answer 503 (the process is
//! restarted and taken out of the load balancer) and the log and
//! `chatmesh_gateway_tasks_ended_total{task}` say which.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Runs background tasks until `drain`, noting the first that ends before it. Cheap to
/// clone (shared).
#[derive(Debug, Clone)]
pub struct Supervisor {
    drain: CancellationToken,
    ended: Arc<Mutex<Option<&'static str>>>,
}

impl Supervisor {
    /// Tasks that are to run until `drain` is cancelled.
    pub fn new(drain: CancellationToken) -> Self {
        Self {
            drain,
            ended: Arc::default(),
        }
    }

    /// The gateway's drain: the tasks end when it is cancelled.
    pub fn drain(&self) -> &CancellationToken {
        &self.drain
    }

    /// Runs `task`, called `name` in the log and the metric.
    pub fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let (drain, ended) = (self.drain.clone(), self.ended.clone());
        tokio::spawn(async move {
            let outcome = handle.await;
            if drain.is_cancelled() {
                return;
            }
            match outcome {
                Ok(()) => tracing::error!(task = name, "a background task ended before the drain"),
                Err(e) => tracing::error!(task = name, error = %e, "a background task failed"),
            }
            metrics::counter!("chatmesh_gateway_tasks_ended_total", "task" => name).increment(1);
            ended
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(name);
        });
    }

    /// The first task that ended before the drain, if one did.
    pub fn ended(&self) -> Option<&'static str> {
        *self.ended.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn settled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// A task that panics or returns before the drain is noted (the first one); those that
    /// end after the drain, or run on, are not.
    #[tokio::test]
    async fn a_task_that_ends_before_the_drain_is_noted() {
        let drain = CancellationToken::new();
        let sup = Supervisor::new(drain.clone());
        sup.spawn("runs on", std::future::pending());
        let stop = drain.clone();
        sup.spawn("ends with the drain", async move { stop.cancelled().await });
        settled().await;
        assert_eq!(sup.ended(), None);
        sup.spawn("panics", async { panic!("a listener that broke") });
        settled().await;
        assert_eq!(sup.ended(), Some("panics"));
        sup.spawn("returns", async {});
        settled().await;
        assert_eq!(sup.ended(), Some("panics"), "the first one");

        let drain = CancellationToken::new();
        let sup = Supervisor::new(drain.clone());
        let stop = drain.clone();
        sup.spawn("ends with the drain", async move { stop.cancelled().await });
        drain.cancel();
        settled().await;
        assert_eq!(sup.ended(), None, "asked to end");
    }
}
