//! The notifier's loop: the durable pull consumer `push` on every stored message (never on
//! the send path: it reads what JetStream already stored, like the store writers), each
//! message routed into the collapse window, each closed window handed to a delivery task.
//! At most `push.concurrency` requests to push services are in flight (the deliverer's
//! slots, taken per attempt, so a failing service's retries wait without one), and at most
//! [`WINDOWS_PER_SLOT`] times as many closed windows are being decided and sent.
//!
//! The consumer acks explicitly, message by message, once every notification carrying the
//! message is claimed (`collapse.rs`); `max_ack_pending` bounds what the windows hold, and
//! the delivery semaphore bounds the windows in flight: when both are full the loop stops
//! pulling. An existing consumer resumes where it was.
//!
//! **Idle while nobody has a target.** A consumer costs nats-server a delivery and an ack
//! per stored message, so the notifier keeps none while no user of the deployment has a
//! push target: it deletes the consumer and asks again every [`IDLE_POLL`]. Once someone
//! has one it creates the consumer to deliver from [`LOOKBACK`] ago (what was stored while
//! the first registration was being noticed; anything pushed already has its delivery
//! marks), and it goes idle again when nobody has had one for a check and nothing waits.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::Context;
use chatmesh_protocol::backoff::Backoff;
use chatmesh_protocol::subjects::PUSH_CONSUMER;
use futures::StreamExt;
use metrics::{counter, gauge};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::collapse::{give_back, release, Held, Window};
use super::deliver::Deliverer;
use super::intake::{Intake, Routed};
use crate::metrics as m;

/// Closed windows being decided and sent at once, per request slot (`push.concurrency`):
/// a window waiting out a push service's retries holds one of these, not a request slot.
const WINDOWS_PER_SLOT: usize = 16;
/// How long a stop waits for pushes in flight (their marks are written: cut short, they are
/// lost, never repeated).
const DRAIN: Duration = Duration::from_secs(5);
/// How often an idle notifier asks whether anyone has a push target (the answer is
/// remembered by the service; a registration on this worker sets it at once).
pub const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often an active notifier asks whether it may go idle.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// A consumer created when the first target appears delivers from this long ago: longer
/// than a registration takes to be noticed (`IDLE_POLL` plus the service's memory of a no).
pub const LOOKBACK: Duration = Duration::from_secs(15);

/// Everything the loop owns.
#[derive(Debug)]
pub struct Loop {
    pub js: Context,
    /// The message stream this loop reads (one loop per stream, docs/REGIONS.md).
    pub stream: String,
    /// Its subjects (the consumer's filter).
    pub filter: String,
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

/// How a consumer session ended without an error.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Stopped,
    /// Nobody has a push target and nothing waits: the consumer can go.
    Idle,
}

fn fail(what: &'static str) -> impl FnOnce(crate::error::BoxError) -> SessionError {
    move |e| SessionError {
        what,
        source: Some(e),
    }
}

impl Loop {
    /// Runs until `stop`: idle while nobody has a push target, otherwise a consumer session,
    /// reconnected with backoff when it fails.
    pub async fn run(mut self, stop: CancellationToken) {
        let limit = Arc::new(Semaphore::new(self.concurrency * WINDOWS_PER_SLOT));
        let mut tasks = JoinSet::new();
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        loop {
            if !self.wait_for_targets(&stop).await {
                break;
            }
            match self.session(&limit, &mut tasks, &stop).await {
                Ok(Ended::Stopped) => break,
                Ok(Ended::Idle) => continue,
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

    /// Returns at once if anyone has a push target; otherwise deletes the consumer (so
    /// nats-server stops delivering to it) and waits until someone has one. `false`: stopped.
    async fn wait_for_targets(&mut self, stop: &CancellationToken) -> bool {
        let mut deleted = false;
        loop {
            match self.intake.svc.anyone_has_push_targets().await {
                Ok(true) => {
                    if deleted {
                        info!("a push target exists: push notifier active");
                    }
                    return true;
                }
                Ok(false) if !deleted => deleted = self.delete_consumer().await,
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %chatmesh_protocol::error::Chain(&e), "reading whether anyone has a push target failed")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// Deletes the notifier's consumer (none is fine). `true` once it is gone.
    async fn delete_consumer(&self) -> bool {
        let gone = match self.js.get_stream(&self.stream).await {
            Ok(stream) => match stream.delete_consumer(PUSH_CONSUMER).await {
                Ok(_) => true,
                Err(e) => matches!(
                    e.kind(),
                    async_nats::jetstream::stream::ConsumerErrorKind::JetStream(j)
                        if j.error_code() == async_nats::jetstream::ErrorCode::CONSUMER_NOT_FOUND
                ),
            },
            Err(e) => {
                warn!(error = %chatmesh_protocol::error::Chain(&e), "getting the stream to idle the push consumer failed");
                false
            }
        };
        if gone {
            info!("nobody has a push target: push notifier idle (no consumer)");
        }
        gone
    }

    async fn session(
        &mut self,
        limit: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        stop: &CancellationToken,
    ) -> Result<Ended, SessionError> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| fail("getting the stream")(e.into()))?;
        let config = Config {
            durable_name: Some(PUSH_CONSUMER.into()),
            deliver_policy: DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::now_utc() - LOOKBACK,
            },
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            filter_subject: self.filter.clone(),
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
        let mut idle_check = tokio::time::interval(IDLE_CHECK);
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        idle_check.reset();
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
                _ = stop.cancelled() => return Ok(Ended::Stopped),
                _ = sleep => self.flush(limit, tasks).await,
                _ = idle_check.tick() => {
                    if self.window.is_empty() && tasks.is_empty()
                        && matches!(self.intake.svc.anyone_has_push_targets().await, Ok(false))
                    {
                        return Ok(Ended::Idle);
                    }
                }
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
            Ok(Some(Routed::New(m))) => m,
            Ok(Some(Routed::Revision(r))) => {
                let emptied = self.window.revise(&r);
                if emptied > 0 {
                    counter!(m::PUSH_SKIPPED, "why" => "deleted").increment(emptied as u64);
                }
                return release(held).await;
            }
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
        while let Some(mut p) = self.window.pop_due(Instant::now()) {
            let Some(turn) = self.deliverer.begin(&p.user) else {
                // The user's previous notification is still being sent: skip this one.
                counter!(m::PUSH_SKIPPED, "why" => "user_busy").increment(1);
                for held in std::mem::take(&mut p.held) {
                    release(held).await;
                }
                continue;
            };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let deliverer = self.deliverer.clone();
            tasks.spawn(async move {
                deliverer.run(p).await;
                drop((permit, turn));
            });
        }
        gauge!(m::PUSH_PENDING).set(self.window.len() as f64);
    }
}
