//! The notifier's loop: the durable pull consumer `push` on every stored message (never on
//! the send path: it reads what JetStream already stored, like the store writers), each
//! message routed into the collapse window, each closed window handed to a delivery task.
//!
//! The consumer acks explicitly, message by message, once every notification carrying the
//! message is claimed (`collapse.rs`); `max_ack_pending` bounds what the windows hold, and
//! the delivery semaphore bounds the pushes in flight: when both are full the loop stops
//! pulling. A new consumer starts at the stream's end (a fresh deployment does not push
//! its history); an existing one resumes where it was.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::Context;
use chatmesh_protocol::backoff::Backoff;
use chatmesh_protocol::subjects::{IN_ALL, PUSH_CONSUMER, STREAM};
use futures::StreamExt;
use metrics::{counter, gauge};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::collapse::{give_back, release, Held, Window};
use super::deliver::Deliverer;
use super::intake::Intake;
use crate::metrics as m;

/// How long a stop waits for pushes in flight (their marks are written: cut short, they are
/// lost, never repeated).
const DRAIN: Duration = Duration::from_secs(5);

/// Everything the loop owns.
#[derive(Debug)]
pub struct Loop {
    pub js: Context,
    pub intake: Intake,
    pub window: Window,
    pub deliverer: Arc<Deliverer>,
    pub concurrency: usize,
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
}

/// Why a consumer session ended.
#[derive(Debug, thiserror::Error)]
#[error("push consumer: {what}")]
pub struct SessionError {
    what: &'static str,
    #[source]
    source: Option<crate::error::BoxError>,
}

fn fail(what: &'static str) -> impl FnOnce(crate::error::BoxError) -> SessionError {
    move |e| SessionError {
        what,
        source: Some(e),
    }
}

impl Loop {
    /// Runs until `stop`, reconnecting the consumer with backoff when it fails.
    pub async fn run(mut self, stop: CancellationToken) {
        let limit = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        loop {
            match self.session(&limit, &mut tasks, &stop).await {
                Ok(()) => break,
                Err(e) => {
                    warn!(error = %chatmesh_protocol::error::Chain(&e), "push consumer failed; restarting");
                    counter!(m::PUSH_SKIPPED, "why" => "consumer_restart").increment(1);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
        // What waits in windows was never claimed: back to JetStream for the next notifier.
        for held in self.window.drain() {
            give_back(held).await;
        }
        let _ =
            tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
        tasks.abort_all();
        info!("push notifier stopped");
    }

    async fn session(
        &mut self,
        limit: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        stop: &CancellationToken,
    ) -> Result<(), SessionError> {
        let stream = self
            .js
            .get_stream(STREAM)
            .await
            .map_err(|e| fail("getting the stream")(e.into()))?;
        let config = Config {
            durable_name: Some(PUSH_CONSUMER.into()),
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            filter_subject: IN_ALL.into(),
            max_ack_pending: self.max_ack_pending,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(PUSH_CONSUMER, config)
            .await
            .map_err(|e| fail("creating the consumer")(e.into()))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| fail("pulling")(e.into()))?;
        info!("push notifier consuming");
        loop {
            let due = self.window.next_due();
            let sleep = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                _ = sleep => self.flush(limit, tasks).await,
                msg = messages.next() => match msg {
                    Some(Ok(msg)) => self.route(Arc::new(msg)).await,
                    Some(Err(e)) => return Err(fail("receiving")(e.into())),
                    None => return Err(SessionError { what: "the message stream ended", source: None }),
                },
            }
            while tasks.try_join_next().is_some() {}
        }
    }

    /// Puts `held` into the window of every user it may push, or acks it if none.
    async fn route(&mut self, held: Held) {
        match self.intake.svc.anyone_has_push_targets().await {
            Ok(true) => {}
            Ok(false) => return release(held).await,
            Err(e) => {
                warn!(error = %chatmesh_protocol::error::Chain(&e), "routing a message for push failed");
                return;
            }
        }
        let incoming = match self.intake.decode(&held).await {
            Ok(Some(m)) => m,
            Ok(None) => return release(held).await,
            Err(e) => {
                // Unacked: redelivered after ack_wait.
                warn!(error = %chatmesh_protocol::error::Chain(&e), "routing a message for push failed");
                return;
            }
        };
        match self.intake.recipients(&incoming).await {
            Ok(users) => {
                for user in users {
                    if !self.window.add(&user, &incoming, &held) {
                        counter!(m::PUSH_SKIPPED, "why" => "window_full").increment(1);
                    }
                }
                gauge!(m::PUSH_PENDING).set(self.window.len() as f64);
                release(held).await;
            }
            Err(e) => {
                warn!(room = %incoming.room, error = %chatmesh_protocol::error::Chain(&e), "routing a message for push failed");
            }
        }
    }

    /// Hands every closed window to a delivery task (waiting for a free slot).
    async fn flush(&mut self, limit: &Arc<Semaphore>, tasks: &mut JoinSet<()>) {
        while let Some(p) = self.window.pop_due(Instant::now()) {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let deliverer = self.deliverer.clone();
            tasks.spawn(async move {
                deliverer.run(p).await;
                drop(permit);
            });
        }
        gauge!(m::PUSH_PENDING).set(self.window.len() as f64);
    }
}
