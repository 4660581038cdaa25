//! The membership and account events (`chat.mem.<room>`, `chat.user.<user>`) as the workers
//! publish them: through JetStream, so that each is confirmed stored in the event log
//! ([`EVENT_LOG`]) from which gateways read back what they missed.
//!
//! Gateways get an event the moment it is published, stored or not. One the log did not
//! confirm (JetStream refusing it, busy or not answering) is published again, marked late
//! ([`LATE_HEADER`], same `Nats-Msg-Id`, so a store whose confirmation was lost keeps one
//! copy), until the log stores it: one at a time, [`FIRST_WAIT`] after a failure and twice
//! as long after each further one, up to [`LONGEST_WAIT`]. A gateway takes a late event as
//! word that what it names changed, not as the change itself (it may be older than what
//! the gateway knows since), and asks the workers again. At most [`MAX_UNSTORED`] events
//! wait to be stored; past that the oldest is given up, counted and logged.
//!
//! Without the log (it could not be made: a bus whose permissions predate it) the events
//! are plain NATS messages, and gateways catch up after a loss by asking about everyone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::Client;
use bytes::Bytes;
use chatmesh_protocol::subjects::{EVENT_LOG, LATE_HEADER};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Events whose confirmation may be awaited at once; more are kept to be published again.
const IN_FLIGHT: usize = 1024;
/// How long the log has to confirm an event.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);
/// The wait before the first retry after a failure.
pub const FIRST_WAIT: Duration = Duration::from_millis(250);
/// The longest wait between retries.
pub const LONGEST_WAIT: Duration = Duration::from_secs(8);
/// Events kept to be published again at most; the oldest is given up past it.
pub const MAX_UNSTORED: usize = 10_000;

/// Events waiting to be stored in the log: gauge.
const UNSTORED: &str = "chatmesh_event_log_unstored";

/// Publishes the membership and account events. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Events {
    nats: Client,
    /// `None` without the log.
    logged: Option<Arc<Logged>>,
}

/// What publishes to the event log.
#[derive(Debug)]
struct Logged {
    js: async_nats::jetstream::Context,
    /// To the confirmer.
    queue: mpsc::Sender<Sent>,
    /// This process's events' ids: a random prefix and a count.
    prefix: String,
    next: AtomicU64,
}

/// One event, as published.
#[derive(Debug, Clone)]
struct Event {
    subject: String,
    /// A header naming what kind of event it is, for events other than the usual ones.
    kind: Option<&'static str>,
    body: Bytes,
    /// Its `Nats-Msg-Id`: a retry whose first store went through is not kept twice.
    id: String,
}

/// An event published, with its confirmation if one is awaited.
struct Sent {
    event: Event,
    ack: Option<PublishAckFuture>,
}

impl Events {
    /// Events on `nats`, confirmed stored in the event log when `log` (it exists or was just
    /// made); the confirmer runs until every clone is dropped.
    pub fn new(nats: Client, log: bool) -> Self {
        if !log {
            return Self { nats, logged: None };
        }
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(CONFIRM_WAIT)
            .max_ack_inflight(IN_FLIGHT)
            .backpressure_on_inflight(false)
            .build(nats.clone());
        let (queue, rx) = mpsc::channel(2 * IN_FLIGHT);
        tokio::spawn(confirm(js.clone(), rx));
        let logged = Logged {
            js,
            queue,
            prefix: crate::ownership::new_worker_id(),
            next: AtomicU64::new(0),
        };
        Self {
            nats,
            logged: Some(Arc::new(logged)),
        }
    }

    /// The NATS client the events go out on.
    pub fn nats(&self) -> &Client {
        &self.nats
    }

    /// Publishes `body` on `subject` to the gateways and the event log.
    pub async fn publish(&self, subject: String, body: Bytes) {
        self.publish_kind(subject, None, body).await;
    }

    /// Like [`Self::publish`], with header `kind` (set to `1`) saying what kind of event it is.
    pub async fn publish_kind(&self, subject: String, kind: Option<&'static str>, body: Bytes) {
        let Some(logged) = &self.logged else {
            let sent = match kind {
                None => self.nats.publish(subject.clone(), body).await,
                Some(kind) => {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(kind, "1");
                    let subject = subject.clone();
                    self.nats.publish_with_headers(subject, headers, body).await
                }
            };
            if let Err(e) = sent {
                tracing::warn!(subject, error = %chatmesh_protocol::error::Chain(&e), "could not publish an event");
            }
            return;
        };
        let event = Event {
            subject,
            kind,
            body,
            id: format!(
                "{}-{}",
                logged.prefix,
                logged.next.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let ack = match logged
            .js
            .send_publish(event.subject.clone(), message(&event, false))
            .await
        {
            Ok(ack) => Some(ack),
            Err(e) => {
                tracing::debug!(subject = event.subject, error = %e, "event not published to the log; published again later");
                None
            }
        };
        if logged.queue.try_send(Sent { event, ack }).is_err() {
            // Room for twice as many as may be awaited: the confirmer is stuck or gone.
            metrics::counter!("chatmesh_event_log_given_up_total").increment(1);
            tracing::error!("an event may be missing from the event log: its confirmer is behind");
        }
    }
}

/// The message of `event`, marked `late` when published again.
fn message(event: &Event, late: bool) -> PublishMessage {
    let mut msg = PublishMessage::build()
        .payload(event.body.clone())
        .message_id(&event.id);
    if let Some(kind) = event.kind {
        msg = msg.header(kind, "1");
    }
    match late {
        true => msg.header(LATE_HEADER, "1"),
        false => msg,
    }
}

/// Awaits the log's confirmations and publishes again, late, what it did not confirm,
/// until the queue closes (every [`Events`] dropped).
async fn confirm(js: async_nats::jetstream::Context, mut queue: mpsc::Receiver<Sent>) {
    let mut waiting = FuturesUnordered::new();
    let mut unstored = Unstored::default();
    loop {
        let retry = unstored.due();
        tokio::select! {
            sent = queue.recv() => match sent {
                Some(Sent { event, ack: Some(ack) }) => waiting.push(stored(event, ack, false)),
                Some(Sent { event, ack: None }) => unstored.failed(event, false),
                None => break,
            },
            Some((event, late, ok)) = waiting.next(), if !waiting.is_empty() => match ok {
                true if late => unstored.stored_late(),
                true => {}
                false => unstored.failed(event, late),
            },
            () = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {
                let Some(event) = unstored.take() else { continue };
                metrics::counter!("chatmesh_event_log_retries_total").increment(1);
                match js.send_publish(event.subject.clone(), message(&event, true)).await {
                    Ok(ack) => waiting.push(stored(event, ack, true)),
                    Err(_) => unstored.failed(event, true),
                }
            }
        }
    }
    if unstored.len() > 0 {
        tracing::warn!(
            events = unstored.len(),
            "stopping with events the event log has not stored: a gateway that missed them asks about them only after its access cache expires"
        );
    }
}

/// Waits for the confirmation of `event`: whether the log stored it.
async fn stored(event: Event, ack: PublishAckFuture, late: bool) -> (Event, bool, bool) {
    let ok = match ack.await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(subject = event.subject, stream = EVENT_LOG, error = %e, "the event log did not confirm an event");
            false
        }
    };
    (event, late, ok)
}

/// The events to publish again, oldest first, and when the next may go.
#[derive(Default)]
struct Unstored {
    events: VecDeque<Event>,
    /// A retry is out: the next waits for its answer.
    out: bool,
    wait: Option<Duration>,
    next: Option<Instant>,
}

impl Unstored {
    fn len(&self) -> usize {
        self.events.len() + usize::from(self.out)
    }

    /// When the next retry may go, if one is due at all.
    fn due(&self) -> Option<Instant> {
        match self.out || self.events.is_empty() {
            true => None,
            false => Some(self.next.unwrap_or_else(Instant::now)),
        }
    }

    /// The oldest event, now out as a retry.
    fn take(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        self.out = true;
        self.gauge();
        Some(event)
    }

    /// `event` was not stored (`late`: it was a retry): kept for later, the wait doubled.
    fn failed(&mut self, event: Event, late: bool) {
        if late {
            self.out = false;
        }
        if self.events.len() >= MAX_UNSTORED {
            self.events.pop_front();
            metrics::counter!("chatmesh_event_log_given_up_total").increment(1);
            tracing::error!(
                kept = MAX_UNSTORED,
                "gave up storing an event in the event log: a gateway that missed it asks about it only after its access cache expires"
            );
        }
        self.events.push_back(event);
        let wait = self.wait.map_or(FIRST_WAIT, |w| (w * 2).min(LONGEST_WAIT));
        self.wait = Some(wait);
        self.next = Some(Instant::now() + wait);
        self.gauge();
    }

    /// A retry was stored: the next goes at once.
    fn stored_late(&mut self) {
        self.out = false;
        self.wait = None;
        self.next = None;
        self.gauge();
    }

    fn gauge(&self) {
        metrics::gauge!(UNSTORED).set(self.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Event {
        Event {
            subject: format!("chat.mem.r{n}"),
            kind: None,
            body: Bytes::new(),
            id: n.to_string(),
        }
    }

    /// Failures double the wait up to the longest; a stored retry makes the next go at
    /// once; one retry is out at a time; past the bound the oldest is given up.
    #[tokio::test(start_paused = true)]
    async fn retries_wait_longer_after_each_failure_and_are_bounded() {
        let mut u = Unstored::default();
        assert_eq!(u.due(), None);
        let start = Instant::now();
        u.failed(event(1), false);
        assert_eq!(u.due(), Some(start + FIRST_WAIT));
        u.failed(event(2), false);
        assert_eq!(u.due(), Some(start + FIRST_WAIT * 2));
        let first = u.take().unwrap();
        assert_eq!(first.id, "1");
        assert_eq!(u.due(), None, "one retry out at a time");
        u.failed(first, true);
        assert_eq!(u.due(), Some(start + FIRST_WAIT * 4));
        for _ in 0..10 {
            let e = u.take().unwrap();
            u.failed(e, true);
        }
        assert_eq!(u.due(), Some(start + LONGEST_WAIT));
        u.take().unwrap();
        u.stored_late();
        assert!(u.due().unwrap() <= Instant::now(), "after a store, at once");
        assert_eq!(u.len(), 1);

        for n in 0..MAX_UNSTORED as u32 + 5 {
            u.failed(event(n + 10), false);
        }
        assert_eq!(u.len(), MAX_UNSTORED);
        assert_eq!(u.take().unwrap().id, "15", "the oldest were given up");
    }
}
