//! Request slots per push service origin (scheme, host, port). The requests in flight to one
//! origin hold at most its share of `concurrency` (a quarter, at least one): a push service
//! that takes requests and never answers (a vendor's outage, or one host behind many
//! accounts' endpoints) holds only that share of the shared slots until its requests time
//! out, and the pushes to every other service go on. A push waits for its origin's slot
//! before it takes a shared one, so while it waits it holds none.
//!
//! Each origin's entry lives while a push holds or waits for one of its slots: the map is
//! bounded by the pushes in progress, whatever origins users register.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One origin's share of the request slots: this fraction of `concurrency` (at least one).
const SHARE_DIVISOR: usize = 4;

/// The slots of each origin with a push in progress.
#[derive(Debug, Clone)]
pub struct Origins {
    share: usize,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    slots: Arc<Semaphore>,
    /// Pushes holding or waiting for one of `slots`.
    users: usize,
}

/// A slot of one origin's share; given back when dropped.
#[derive(Debug)]
pub struct OriginSlot {
    _permit: Option<OwnedSemaphorePermit>,
    _user: User,
}

/// A push counted as a user of its origin's entry, from before it waits for a slot (so a
/// push given up while waiting is counted out too).
#[derive(Debug)]
struct User {
    origins: Origins,
    origin: String,
    slots: Arc<Semaphore>,
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
    /// Shares of `concurrency` shared request slots.
    pub fn new(concurrency: usize) -> Self {
        Self {
            share: (concurrency / SHARE_DIVISOR).max(1),
            entries: Arc::default(),
        }
    }

    /// How many slots one origin may hold.
    pub fn share(&self) -> usize {
        self.share
    }

    /// A slot of `origin` (an [`origin_of`]), once one of its share is free.
    pub async fn take(&self, origin: &str) -> OriginSlot {
        let user = self.join(origin);
        // Never closed: always a permit.
        let permit = user.slots.clone().acquire_owned().await.ok();
        OriginSlot {
            _permit: permit,
            _user: user,
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
    use super::*;
    use futures::FutureExt;

    /// An origin holds at most its share (a quarter of the slots), another origin is not
    /// held up by it, and a slot given back lets the next push of the origin go.
    #[tokio::test]
    async fn an_origin_holds_at_most_its_share() {
        let origins = Origins::new(8);
        assert_eq!(origins.share(), 2);
        let a1 = origins.take("https://a.example").await;
        let _a2 = origins.take("https://a.example").await;
        let mut a3 = Box::pin(origins.take("https://a.example"));
        assert!((&mut a3).now_or_never().is_none(), "a third slot of a");
        assert!(origins.take("https://b.example").now_or_never().is_some());
        drop(a1);
        assert!(a3.now_or_never().is_some(), "a's freed slot");
        assert_eq!(Origins::new(3).share(), 1);
    }

    /// Nothing is kept for an origin once no push holds or waits for its slots, including a
    /// push given up while it waited.
    #[tokio::test]
    async fn nothing_is_kept_for_an_origin_nobody_uses() {
        let origins = Origins::new(4);
        let held = origins.take("https://a.example").await;
        let mut waiting = Box::pin(origins.take("https://a.example"));
        assert!((&mut waiting).now_or_never().is_none());
        assert_eq!(origins.lock().len(), 1);
        drop(waiting);
        drop(held);
        assert!(origins.lock().is_empty());
        let again = origins.take("https://a.example").now_or_never();
        assert!(again.is_some(), "a fresh share");
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
