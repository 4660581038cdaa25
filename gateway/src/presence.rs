//! Presence: who has a session joined to a room, across every gateway.
//!
//! Each gateway writes ONE key per room it has local members in, `<room>.<gateway>` in the
//! KV bucket `CHAT_PRESENCE`, holding that room's users on that gateway, with a per-key TTL
//! (`Nats-TTL`) it refreshes at a third of the TTL. So a refresh costs one message per
//! (room, gateway) — not per member — and a crashed gateway's users expire within the TTL.
//! The bucket republishes every change and every expiry marker on `chat.pres.<room>.<gw>`,
//! which each gateway's room task follows; a room's initial state is read with one batch
//! direct get (`multi_last`), no consumer needed.
//!
//! The republished events are core NATS (at most once): an expiry marker missed while a
//! gateway was cut off from NATS would keep a dead gateway's users online there for good.
//! So a gateway also forgets another gateway's users of a room when their key has not been
//! refreshed for a whole TTL ([`PresenceState::expire`]), as the bucket does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use chatmesh_protocol::subjects::PRESENCE_BUCKET;

use crate::error::GatewayError;

/// Waits up to `patience` for the presence bucket, which the primary region's workers make
/// (a gateway's key may write and read it, not make it or change its settings): true once
/// it exists. A gateway started before any worker waits here; after `patience` it goes on
/// (logged), and its presence writes fail until the bucket is made.
pub async fn await_bucket(js: &jetstream::Context, patience: Duration) -> bool {
    let stream = format!("KV_{PRESENCE_BUCKET}");
    let give_up = tokio::time::Instant::now() + patience;
    let mut said = false;
    loop {
        match js.get_stream(&stream).await {
            Ok(_) => return true,
            Err(e) if tokio::time::Instant::now() >= give_up => {
                tracing::warn!(error = %crate::error::Chain(&e), "the presence bucket does not exist: presence stays empty until a worker of the primary region makes it");
                return false;
            }
            Err(e) if !said => {
                said = true;
                tracing::info!(error = %crate::error::Chain(&e), "waiting for a worker to make the presence bucket");
            }
            Err(_) => {}
        }
        tokio::time::sleep(BUCKET_POLL).await;
    }
}

/// How often a starting gateway looks for the presence bucket.
const BUCKET_POLL: Duration = Duration::from_millis(250);

/// Writes this gateway's users of `room` with a TTL (an empty list expires like any other).
pub async fn publish(
    js: &jetstream::Context,
    room: &str,
    gateway: &str,
    users: &BTreeSet<String>,
    ttl: Duration,
) -> Result<(), GatewayError> {
    let subject = format!("$KV.{PRESENCE_BUCKET}.{room}.{gateway}");
    let payload =
        serde_json::to_vec(users).map_err(|e| GatewayError::jetstream("encoding presence", e))?;
    natskit::put_ttl(js, subject, payload.into(), ttl, natskit::Expect::Any)
        .await
        .map_err(|e| GatewayError::jetstream("writing presence", e))?;
    Ok(())
}

/// Every gateway's users of `room` now, keyed by gateway.
pub async fn snapshot(
    nats: &async_nats::Client,
    room: &str,
    timeout: Duration,
) -> Result<HashMap<String, BTreeSet<String>>, GatewayError> {
    let filter = format!("$KV.{PRESENCE_BUCKET}.{room}.*");
    let ask = natskit::Batch::Last {
        filter: &filter,
        batch: 10_000,
    };
    let entries = natskit::direct_batch(nats, &format!("KV_{PRESENCE_BUCKET}"), ask, timeout)
        .await
        .map_err(|e| GatewayError::jetstream("reading presence", e))?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let gw = e.subject.rsplit('.').next()?.to_owned();
            Some((gw, parse_users(&e.payload)))
        })
        .collect())
}

/// The users of a presence value; an empty payload (a delete or expiry marker) is none.
pub fn parse_users(payload: &[u8]) -> BTreeSet<String> {
    serde_json::from_slice(payload).unwrap_or_default()
}

/// A room's presence as one gateway sees it.
#[derive(Debug, Default)]
pub struct PresenceState {
    /// Local users and how many local sessions each has in the room.
    local: BTreeMap<String, usize>,
    /// Other gateways' users, and when their key was last written (or read).
    remote: HashMap<String, (BTreeSet<String>, Instant)>,
    /// What members were last told.
    online: BTreeSet<String>,
}

/// A change of who is online.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub joined: Vec<String>,
    pub left: Vec<String>,
}

impl PresenceState {
    pub fn session_joined(&mut self, user: &str) {
        *self.local.entry(user.to_owned()).or_default() += 1;
    }

    pub fn session_left(&mut self, user: &str) {
        if let Some(n) = self.local.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.local.remove(user);
            }
        }
    }

    /// Another gateway's users, as its key said at `now`.
    pub fn set_remote(&mut self, gateway: &str, users: BTreeSet<String>, now: Instant) {
        if users.is_empty() {
            self.remote.remove(gateway);
        } else {
            self.remote.insert(gateway.to_owned(), (users, now));
        }
    }

    /// Forgets the users of other gateways whose key was not refreshed within `ttl` before
    /// `now` (their expiry marker was missed); true if any were.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> bool {
        let before = self.remote.len();
        self.remote
            .retain(|_, (_, at)| now.saturating_duration_since(*at) <= ttl);
        self.remote.len() != before
    }

    /// This gateway's users (what it publishes).
    pub fn local_users(&self) -> BTreeSet<String> {
        self.local.keys().cloned().collect()
    }

    /// Everyone online in the room.
    pub fn current(&self) -> BTreeSet<String> {
        let mut all = self.local_users();
        for (users, _) in self.remote.values() {
            all.extend(users.iter().cloned());
        }
        all
    }

    /// What changed since the last call (empty if nothing did).
    pub fn diff(&mut self) -> Diff {
        let now = self.current();
        let joined = now.difference(&self.online).cloned().collect();
        let left = self.online.difference(&now).cloned().collect();
        self.online = now;
        Diff { joined, left }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(users: &[&str]) -> BTreeSet<String> {
        users.iter().map(|u| u.to_string()).collect()
    }

    /// A user with two sessions, here and elsewhere, stays online until all are gone.
    #[test]
    fn online_until_every_session_is_gone() {
        let now = Instant::now();
        let mut p = PresenceState::default();
        p.session_joined("ann");
        p.session_joined("ann");
        assert_eq!(p.diff().joined, ["ann"]);
        p.set_remote("gw2", set(&["ann", "bob"]), now);
        assert_eq!(
            p.diff(),
            Diff {
                joined: vec!["bob".into()],
                left: vec![]
            }
        );
        p.session_left("ann");
        p.session_left("ann");
        assert_eq!(p.diff(), Diff::default(), "still online through gw2");
        p.set_remote("gw2", BTreeSet::new(), now);
        assert_eq!(p.diff().left, ["ann", "bob"]);
        assert!(p.local_users().is_empty());
    }

    /// Another gateway's users whose key is not refreshed for a whole TTL go offline, as
    /// the bucket's expiry would have said; a refresh keeps them.
    #[test]
    fn a_remote_gateway_not_refreshed_for_a_ttl_is_forgotten() {
        let ttl = Duration::from_secs(3);
        let t0 = Instant::now();
        let mut p = PresenceState::default();
        p.set_remote("gw2", set(&["bob"]), t0);
        p.set_remote("gw3", set(&["cat"]), t0);
        assert_eq!(p.diff().joined, ["bob", "cat"]);
        p.set_remote("gw3", set(&["cat"]), t0 + Duration::from_secs(2));
        assert!(!p.expire(t0 + ttl, ttl));
        assert!(p.expire(t0 + ttl + Duration::from_millis(1), ttl));
        assert_eq!(p.diff().left, ["bob"]);
        assert!(p.expire(t0 + Duration::from_secs(6), ttl));
        assert_eq!(p.diff().left, ["cat"]);
    }
}
