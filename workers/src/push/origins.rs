//! Request slots per push service origin (scheme, host, port). The requests in flight to one
//! origin hold at most its share of `concurrency` (a quarter, at least one): a push service
//! that takes requests and never answers (a vendor's outage, or one host behind many
//! accounts' endpoints) holds only that share of the shared slots until its requests time
//! out, and the pushes to every other service go on.
//!
//! Shares alone would let four hanging origins hold every slot, and an attacker can register
//! endpoints on as many hosts or ports as it likes. So an origin not known to answer
//! ([`super::answering`]: new, or a request of it timed out or failed at transport level and
//! it answered none since) also takes one of the `unproven` slots (a quarter of
//! `concurrency`, at least one) that all such origins share: together they hold at most
//! those, whatever their number, and the origins that answer keep the rest. An answer makes
//! the origin known: its next requests go without.
//!
//! A push waits for its origin's slot, then for an unproven slot if its origin is not known
//! to answer, and only then for a shared one: while it waits it holds none of the slots
//! taken after. Each origin's entry lives while a push holds or waits for one of its
//! slots: the map is bounded by the pushes in progress, whatever origins users register.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use metrics::gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::answering::Answering;
use super::webpush::Outcome;
use crate::metrics as m;

/// One origin's share of the request slots, and the share of all origins not known to
/// answer: this fraction of `concurrency` (at least one).
const SHARE_DIVISOR: usize = 4;

/// The slots of each origin with a push in progress.
#[derive(Debug, Clone)]
pub struct Origins {
    share: usize,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    /// Taken by each request to an origin not known to answer, besides its own slot.
    unproven: Arc<Semaphore>,
    answering: Answering,
}

#[derive(Debug)]
struct Entry {
    slots: Arc<Semaphore>,
    /// Pushes holding or waiting for one of `slots`.
    users: usize,
}

/// A slot of one origin's share (and of the unproven ones, when its origin is not known to
/// answer); given back when dropped.
#[derive(Debug)]
pub struct OriginSlot {
    _unproven: Option<OwnedSemaphorePermit>,
    _permit: Option<OwnedSemaphorePermit>,
    user: User,
    /// When the slot was taken: no later than its request was sent.
    taken: Instant,
}

/// A push counted as a user of its origin's entry, from before it waits for a slot (so a
/// push given up while waiting is counted out too).
#[derive(Debug)]
struct User {
    origins: Origins,
    origin: String,
    slots: Arc<Semaphore>,
}

/// A push waiting for an unproven slot, counted in [`m::PUSH_UNPROVEN_WAITING`] from
/// [`UnprovenWait::start`] until dropped (also when the wait is given up).
struct UnprovenWait;

impl UnprovenWait {
    fn start() -> Self {
        gauge!(m::PUSH_UNPROVEN_WAITING).increment(1.0);
        Self
    }
}

impl Drop for UnprovenWait {
    fn drop(&mut self) {
        gauge!(m::PUSH_UNPROVEN_WAITING).decrement(1.0);
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let mut entries = self.origins.lock();
        if let Some(entry) = entries.get_mut(&self.origin) {
            entry.users -= 1;
            if entry.users == 0 {
                entries.remove(&self.origin);
            }
        }
    }
}

impl Origins {
    /// Shares of `concurrency` shared request slots; the `operator`'s origins (its FCM and
    /// APNs) count as answering from the start.
    pub fn new(concurrency: usize, operator: impl IntoIterator<Item = String>) -> Self {
        let share = (concurrency / SHARE_DIVISOR).max(1);
        Self {
            share,
            entries: Arc::default(),
            unproven: Arc::new(Semaphore::new(share)),
            answering: Answering::new(operator),
        }
    }

    /// How many slots one origin may hold, and all the origins not known to answer together.
    pub fn share(&self) -> usize {
        self.share
    }

    /// A slot of `origin` (an [`origin_of`]), once one of its share is free; and once an
    /// unproven slot is, when it is not known to answer.
    pub async fn take(&self, origin: &str) -> OriginSlot {
        let user = self.join(origin);
        // Never closed: always a permit.
        let permit = user.slots.clone().acquire_owned().await.ok();
        let unproven = match self.answering.answers(origin).await {
            true => None,
            false => {
                let _waiting = UnprovenWait::start();
                self.unproven.clone().acquire_owned().await.ok()
            }
        };
        OriginSlot {
            _unproven: unproven,
            _permit: permit,
            user,
            taken: Instant::now(),
        }
    }

    fn join(&self, origin: &str) -> User {
        let mut entries = self.lock();
        let entry = entries.entry(origin.to_owned()).or_insert_with(|| Entry {
            slots: Arc::new(Semaphore::new(self.share)),
            users: 0,
        });
        entry.users += 1;
        User {
            origins: self.clone(),
            origin: origin.to_owned(),
            slots: entry.slots.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl OriginSlot {
    /// Records what the request sent with this slot came to: any HTTP answer makes its
    /// origin known to answer, none (a timeout, a transport failure) unknown unless it
    /// answered another request since. A request never made (`Err`: the push could not be
    /// built) says nothing.
    pub async fn settle<E>(&self, sent: &Result<Outcome, E>) {
        let (answering, origin) = (&self.user.origins.answering, &self.user.origin);
        match sent {
            Ok(Outcome::Retry { status: None, .. }) => answering.silent(origin, self.taken).await,
            Ok(_) => answering.answered(origin).await,
            Err(_) => {}
        }
    }
}

/// The origin of `url` that its requests are counted by: scheme, host in lower case, and
/// port unless the scheme's default; `url` itself when it is not a URL.
pub fn origin_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::Duration;

    use super::*;

    const A: &str = "https://a.example";
    const B: &str = "https://b.example";
    const C: &str = "https://c.example";

    /// `f`'s output if it comes without waiting for a slot (time is paused: a second passes
    /// at once when nothing else can run).
    async fn now<F: Future>(f: F) -> Option<F::Output> {
        tokio::time::timeout(Duration::from_secs(1), f).await.ok()
    }

    fn answered() -> Result<Outcome, ()> {
        Ok(Outcome::Delivered)
    }

    fn no_answer() -> Result<Outcome, ()> {
        Ok(Outcome::Retry {
            status: None,
            retry_after: None,
        })
    }

    /// An origin holds at most its share (a quarter of the slots), another origin is not
    /// held up by it, and a slot given back lets the next push of the origin go.
    #[tokio::test(start_paused = true)]
    async fn an_origin_holds_at_most_its_share() {
        let origins = Origins::new(8, [A.to_owned(), B.to_owned()]);
        assert_eq!(origins.share(), 2);
        let a1 = origins.take(A).await;
        let _a2 = origins.take(A).await;
        let mut a3 = Box::pin(origins.take(A));
        assert!(now(&mut a3).await.is_none(), "a third slot of a");
        assert!(now(origins.take(B)).await.is_some());
        drop(a1);
        assert!(now(a3).await.is_some(), "a's freed slot");
        assert_eq!(Origins::new(3, []).share(), 1);
    }

    /// The origins not known to answer hold at most a share of the slots together, however
    /// many they are; an origin known to answer is not held up by them.
    #[tokio::test(start_paused = true)]
    async fn origins_not_known_to_answer_together_hold_at_most_a_share() {
        let origins = Origins::new(8, ["https://fcm.example".to_owned()]);
        let a = origins.take(A).await;
        let _b = origins.take(B).await;
        let mut c = Box::pin(origins.take(C));
        assert!(
            now(&mut c).await.is_none(),
            "a third request of unknown origins"
        );
        let fcm: Vec<_> = (0..2)
            .map(|_| origins.take("https://fcm.example"))
            .collect();
        for slot in fcm {
            assert!(now(slot).await.is_some(), "the operator's origin");
        }
        drop(a);
        let _c = now(c).await.expect("the unproven slot a gave back");
        assert!(now(origins.take(A)).await.is_none(), "both are held");
    }

    /// An answer lets an origin's next requests go without an unproven slot; a request that
    /// gets none makes it wait for one again, unless it answered another request since that
    /// one was sent.
    #[tokio::test(start_paused = true)]
    async fn an_answer_proves_an_origin_and_no_answer_unproves_it() {
        let origins = Origins::new(8, []);
        let a1 = origins.take(A).await;
        let _b = origins.take(B).await;
        assert!(
            now(origins.take(C)).await.is_none(),
            "the unproven slots are held"
        );
        let stalled = now(origins.take(A)).await;
        assert!(stalled.is_none(), "a is not known to answer yet");
        a1.settle(&answered()).await;
        let a2 = now(origins.take(A)).await.expect("a is known to answer");
        drop(a1);
        let _c = origins.take(C).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let a3 = origins.take(A).await;
        a3.settle(&answered()).await;
        a2.settle(&no_answer()).await;
        drop((a2, a3));
        assert!(
            now(origins.take(A)).await.is_some(),
            "a answered since a2 was sent"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let a4 = origins.take(A).await;
        a4.settle(&no_answer()).await;
        drop(a4);
        assert!(
            now(origins.take(A)).await.is_none(),
            "a waits for an unproven slot"
        );
    }

    /// Nothing is kept for an origin once no push holds or waits for its slots, including a
    /// push given up while it waited.
    #[tokio::test(start_paused = true)]
    async fn nothing_is_kept_for_an_origin_nobody_uses() {
        let origins = Origins::new(4, []);
        let held = origins.take(A).await;
        let mut waiting = Box::pin(origins.take(A));
        assert!(now(&mut waiting).await.is_none());
        assert_eq!(origins.lock().len(), 1);
        drop(waiting);
        drop(held);
        assert!(origins.lock().is_empty());
        assert!(now(origins.take(A)).await.is_some(), "a fresh share");
    }

    /// Endpoints are counted by origin: the path, the case of the host and a default port
    /// do not matter; another port is another origin.
    #[test]
    fn endpoints_are_counted_by_origin() {
        let a = origin_of("https://Push.Example/send/1");
        assert_eq!(a, "https://push.example");
        assert_eq!(origin_of("https://push.example:443/send/2?x"), a);
        assert_ne!(origin_of("https://push.example:8443/send/1"), a);
        assert_ne!(origin_of("http://push.example/send/1"), a);
        assert_eq!(origin_of("not a url"), "not a url");
    }
}
