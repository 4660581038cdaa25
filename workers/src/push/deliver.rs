//! Deciding and sending one closed notification: who is still a member, offline and wants it,
//! which of its messages each target has not been pushed yet (the delivery marks) and was
//! registered before (a device added now is not pushed what came earlier), then the
//! pushes themselves with retries: one notification of a user at a time, to two of its
//! targets at a time, so that one user's stalling push services hold few of the shared
//! request slots; and each request first takes a slot of its push service's origin
//! ([`super::origins`]), so that a push service that hangs holds at most its share of them,
//! and the push services not known to answer hold at most one share together.
//!
//! At most once per (message, target): the marks of a target are written, in one store
//! write, BEFORE its push is attempted, and the stream messages are acked only after that
//! write. A notifier killed after the write and before the push loses that push (it is never
//! sent twice); killed before the write, its messages are redelivered and pushed then.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chatmesh_protocol::backoff::Backoff;
use chatmesh_protocol::push::{
    preview_of, NewTarget, PushPayload, PushSettings, RoomCount, TargetRequest,
};
use chatmesh_protocol::service::{GetAccess, RoomKind, RoomUserRequest};
use futures::StreamExt;
use metrics::{counter, histogram};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::apns::Apns;
use super::collapse::{pushed_since, release, Pending, RoomPending};
use super::fcm::{Access, Fcm};
use super::origins::{origin_of, OriginSlot, Origins};
use super::presence::{Online, Presence};
use super::vapid::Vapid;
use super::webpush::{Outcome, WebPush};
use crate::metrics as m;
use crate::model::{Model, PushTargetRecord};
use crate::service::Service;
use crate::store::{StoreError, WriteBatch};

/// What delivering needs; shared by every delivery task.
#[derive(Debug)]
pub struct Deliverer {
    pub svc: Service,
    /// Who is online, read again for each closed window (shared briefly by the windows of
    /// one room's members that close together; a room's read holds up no other room's).
    pub presence: Presence,
    pub vapid: Vapid,
    pub web: WebPush,
    /// FCM, when a service account is configured.
    pub fcm: Option<Fcm>,
    /// APNs, when a token signing key is configured.
    pub apns: Option<Apns>,
    /// How long push services keep an undelivered push.
    pub ttl: Duration,
    pub max_targets: usize,
    pub retry_max: Duration,
    /// Requests to push services in flight at once (`push.concurrency`): taken for each
    /// attempt, never across a retry's wait, so a push service that keeps failing delays
    /// only its own pushes; one that hangs holds at most its origin's share of them, and all
    /// those not known to answer together at most one such share.
    pub sends: Arc<tokio::sync::Semaphore>,
    /// Each push service origin's share of `sends`, taken before one of them.
    pub origins: Origins,
    /// Users with a notification being sent ([`Deliverer::begin`]): one at a time per user.
    pub busy: Busy,
    /// The workers of other regions, asked whether a user is still a member of a room they
    /// store (`None`: every room is stored here).
    pub peers: Option<crate::peers::Peers>,
}

/// Targets of one notification sent to at once: one user's stalling push services hold at
/// most this many of the shared request slots.
const TARGETS_AT_ONCE: usize = 2;

/// The users with a notification being sent.
#[derive(Debug, Default, Clone)]
pub struct Busy(Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

/// A user's turn to be sent a notification; over when dropped.
#[derive(Debug)]
pub struct Turn {
    busy: Busy,
    user: String,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut busy = self.busy.0.lock().unwrap_or_else(|e| e.into_inner());
        busy.remove(&self.user);
    }
}

/// Why a push can never be made, whichever its provider.
type PushError = Box<dyn std::error::Error + Send + Sync>;
/// What one attempt came to.
type Attempt = Result<Outcome, PushError>;

/// The provider a target is pushed through, as metrics name it.
fn provider(target: &NewTarget) -> &'static str {
    match target {
        NewTarget::WebPush { .. } => "web_push",
        NewTarget::Fcm { .. } => "fcm",
        NewTarget::Apns { .. } => "apns",
    }
}

/// One target's push, decided and marked.
struct Claimed {
    id: String,
    target: PushTargetRecord,
    payload: PushPayload,
    /// `payload` as JSON: what Web Push encrypts and FCM carries.
    json: Vec<u8>,
}

/// Does `settings` let a message of `room` (of `kind`) push?
pub fn wanted(settings: &PushSettings, room: &str, kind: RoomKind) -> bool {
    let muted = settings.mute_all
        || (settings.dms_only && kind != RoomKind::Dm)
        || settings.muted_rooms.iter().any(|r| r == room);
    !muted
}

/// What a push to a user with `settings` carries for `rooms` (latest room first, each with
/// the count still to push).
pub fn payload(settings: &PushSettings, rooms: &[(&RoomPending, u32)]) -> Option<PushPayload> {
    let (latest, _) = rooms.first()?;
    let preview = settings.preview;
    Some(PushPayload {
        kind: "messages".into(),
        room: latest.room.clone(),
        count: rooms.iter().map(|(_, n)| n).sum(),
        rooms: rooms
            .iter()
            .map(|(r, n)| RoomCount {
                room: r.room.clone(),
                count: *n,
                last_seq: r.last_seq,
            })
            .collect(),
        from: preview
            .then(|| latest.last_from.clone())
            .filter(|f| !f.is_empty()),
        body: preview
            .then(|| preview_of(&latest.last_body))
            .filter(|b| !b.is_empty()),
        seq: latest.last_seq,
    })
}

impl Deliverer {
    /// `user`'s turn to be sent a notification, or `None` while one of theirs is still being
    /// sent (a slow or failing push service): that one is skipped, so one user's pushes
    /// cannot pile up in the shared slots while messages keep coming for it.
    pub fn begin(&self, user: &str) -> Option<Turn> {
        let mut busy = self.busy.0.lock().unwrap_or_else(|e| e.into_inner());
        busy.insert(user.to_owned()).then(|| Turn {
            busy: self.busy.clone(),
            user: user.to_owned(),
        })
    }

    /// Decides and sends `p`, to [`TARGETS_AT_ONCE`] of its targets at a time. A store
    /// error leaves its messages unacked (redelivered).
    pub async fn run(self: Arc<Self>, mut p: Pending) {
        let held = std::mem::take(&mut p.held);
        match self.claim(&mut p).await {
            Ok(claimed) => {
                for h in held {
                    release(h).await;
                }
                let (me, user, first) = (&*self, p.user.as_str(), p.first_stored);
                futures::stream::iter(claimed)
                    .for_each_concurrent(TARGETS_AT_ONCE, |c| async move {
                        me.push(user, &c, first).await
                    })
                    .await;
            }
            Err(e) => {
                warn!(user = %p.user, error = %chatmesh_protocol::error::Chain(&e), "a push could not be decided; its messages will be redelivered");
            }
        }
    }

    /// Drops what no longer applies, writes the delivery marks, and returns each target's
    /// payload.
    async fn claim(&self, p: &mut Pending) -> Result<Vec<Claimed>, StoreError> {
        let model = self.svc.model();
        let settings = model.push_settings(&p.user).await?;
        let mut rooms = Vec::new();
        for r in std::mem::take(&mut p.rooms) {
            // Came back within the grace, muted or removed meanwhile: no push for this room.
            if !wanted(&settings, &r.room, r.kind) {
                counter!(m::PUSH_SKIPPED, "why" => "muted").increment(1);
            } else if !self.member(&r, &p.user).await? {
                counter!(m::PUSH_SKIPPED, "why" => "not_member").increment(1);
                debug!(user = %p.user, room = %r.room, "not pushed: no longer a member");
            } else if self.online(&r.room).await.contains(&p.user) {
                counter!(m::PUSH_SKIPPED, "why" => "online").increment(1);
                debug!(user = %p.user, room = %r.room, "not pushed: back online within the grace");
            } else {
                rooms.push(r);
            }
        }
        rooms.sort_by_key(|r| std::cmp::Reverse(r.last_stored));
        let targets = model.push_targets(&p.user, self.max_targets).await?;
        let mut batch = WriteBatch::new();
        let mut out = Vec::new();
        for (id, target) in targets {
            let supported = match target.target {
                NewTarget::WebPush { .. } => true,
                NewTarget::Fcm { .. } => self.fcm.is_some(),
                NewTarget::Apns { .. } => self.apns.is_some(),
            };
            if !supported {
                counter!(m::PUSH_FAILED, "reason" => "unsupported").increment(1);
                continue;
            }
            // Each target only what was stored after it was registered: a device added now
            // is not pushed what its user's older devices are.
            let since = pushed_since(target.created);
            let mut todo = Vec::new();
            for r in &rooms {
                let n = r.count_after(model.push_mark(&p.user, &id, &r.room).await?, since);
                if n > 0 {
                    Model::put_push_mark(&mut batch, &p.user, &id, &r.room, r.last_seq);
                    todo.push((r, n));
                }
            }
            if let Some(payload) = payload(&settings, &todo) {
                let json = payload.json_within(chatmesh_protocol::push::MAX_PUSH_JSON);
                out.push(Claimed {
                    id,
                    target,
                    payload,
                    json,
                });
            }
        }
        if !batch.is_empty() {
            model.write(batch).await?;
        }
        Ok(out)
    }

    /// Whether `user` is still a member of `r`'s room. A room of another region whose
    /// workers do not answer counts as yes (the user was a member when the message was
    /// routed; the push is not held back by another region's outage).
    async fn member(&self, r: &RoomPending, user: &str) -> Result<bool, StoreError> {
        let Some(peers) = self.peers.as_ref().filter(|_| r.remote) else {
            return Ok(self.svc.model().role(&r.room, user).await?.is_some());
        };
        let req = RoomUserRequest {
            room: r.room.clone(),
            user: user.to_owned(),
        };
        match peers.ask_found::<GetAccess>(&r.room, &req).await {
            Ok(access) => Ok(access.is_some_and(|a| a.role.is_some())),
            Err(e) => {
                debug!(room = %r.room, error = %e, "membership not checked: the room's region did not answer");
                Ok(true)
            }
        }
    }

    async fn online(&self, room: &str) -> Online {
        self.presence.online(room).await
    }

    /// Sends one push, retrying 429/5xx/transport failures with backoff (or as long as
    /// `Retry-After` says) until `retry_max` after the first attempt.
    async fn push(&self, user: &str, c: &Claimed, first_stored: SystemTime) {
        let id = c.id.as_str();
        let provider = provider(&c.target.target);
        let Some(origin) = self.origin(&c.target.target) else {
            return;
        };
        let give_up = Instant::now() + self.retry_max;
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        loop {
            let Some(attempt) = self.attempt(c, &origin).await else {
                return;
            };
            let outcome = match attempt {
                Ok(outcome) => outcome,
                Err(e) => {
                    warn!(user, target = id, provider, error = %chatmesh_protocol::error::Chain(&*e), "push not sent");
                    counter!(m::PUSH_FAILED, "reason" => "unusable").increment(1);
                    return;
                }
            };
            let (status, retry_after) = match outcome {
                Outcome::Delivered => {
                    counter!(m::PUSH_SENT, "provider" => provider).increment(1);
                    let waited = first_stored.elapsed().unwrap_or_default();
                    histogram!(m::PUSH_LATENCY).record(waited.as_secs_f64());
                    debug!(user, target = id, "pushed");
                    return;
                }
                Outcome::Gone(status) => {
                    self.remove(user, id, status).await;
                    return;
                }
                Outcome::Refused(status) => {
                    warn!(
                        user,
                        target = id,
                        status,
                        "push refused by the push service"
                    );
                    counter!(m::PUSH_FAILED, "reason" => "rejected").increment(1);
                    return;
                }
                Outcome::Retry {
                    status,
                    retry_after,
                } => (status, retry_after),
            };
            let wait = retry_after.unwrap_or_else(|| backoff.next_delay());
            if Instant::now() + wait > give_up {
                warn!(user, target = id, ?status, "push given up after retries");
                counter!(m::PUSH_FAILED, "reason" => "gave_up").increment(1);
                return;
            }
            counter!(m::PUSH_RETRIES).increment(1);
            tokio::time::sleep(wait).await;
        }
    }

    /// The origin of the push service `target` is pushed to (`None`: its provider is not
    /// configured).
    fn origin(&self, target: &NewTarget) -> Option<String> {
        match target {
            NewTarget::WebPush { endpoint, .. } => Some(origin_of(endpoint)),
            NewTarget::Fcm { .. } => self.fcm.as_ref().map(|f| origin_of(f.send_url())),
            NewTarget::Apns { sandbox, .. } => {
                self.apns.as_ref().map(|a| origin_of(a.base_url(*sandbox)))
            }
        }
    }

    /// One request of `c`'s push, to its push service at `origin` (`None`: it cannot be
    /// sent, its provider gone or the notifier stopping).
    async fn attempt(&self, c: &Claimed, origin: &str) -> Option<Attempt> {
        let body = c.json.as_slice();
        Some(match &c.target.target {
            NewTarget::WebPush { endpoint, keys, .. } => {
                let slots = self.slots(origin).await?;
                let sent = self.web.send(&self.vapid, endpoint, keys, body).await;
                slots.0.settle(&sent).await;
                sent.map_err(PushError::from)
            }
            NewTarget::Fcm { token } => {
                let fcm = self.fcm.as_ref()?;
                // The access token first, holding no slot: its endpoint may hang.
                let access = match fcm.access().await {
                    Ok(Access::Granted(access)) => access,
                    Ok(Access::Later(outcome)) => return Some(Ok(outcome)),
                    Err(e) => return Some(Err(e.into())),
                };
                let slots = self.slots(origin).await?;
                let sent = fcm.send(&access, token, body, self.ttl).await;
                slots.0.settle(&sent).await;
                sent.map_err(PushError::from)
            }
            NewTarget::Apns {
                token,
                topic,
                sandbox,
            } => {
                let apns = self.apns.as_ref()?;
                let slots = self.slots(origin).await?;
                let sent = apns.send(token, topic, *sandbox, &c.payload).await;
                slots.0.settle(&sent).await;
                sent.map_err(PushError::from)
            }
        })
    }

    /// A request slot of `origin`'s share (and an unproven one, when it is not known to
    /// answer), then one of the shared ones: a push waiting for its origin holds none of the
    /// shared slots. `None` once those are closed. What the request came to is settled on
    /// the origin's slot, before the slots are given back.
    async fn slots(&self, origin: &str) -> Option<(OriginSlot, tokio::sync::SemaphorePermit<'_>)> {
        let mine = self.origins.take(origin).await;
        let shared = self.sends.acquire().await.ok()?;
        Some((mine, shared))
    }

    /// The push service says the subscription is gone: forget it.
    async fn remove(&self, user: &str, id: &str, status: u16) {
        let req = TargetRequest {
            user: user.to_owned(),
            id: id.to_owned(),
        };
        match self.svc.push_target_remove(req).await {
            Ok(_) => {
                counter!(m::PUSH_REMOVED).increment(1);
                debug!(user, target = id, status, "push target gone: removed");
            }
            Err(e) => warn!(user, target = id, error = %e, "removing a gone push target failed"),
        }
    }
}

#[cfg(test)]
mod claim_tests;
#[cfg(test)]
mod presence_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str, kind: RoomKind) -> RoomPending {
        RoomPending {
            room: name.into(),
            kind,
            count: 2,
            seqs: vec![(3, SystemTime::UNIX_EPOCH), (4, SystemTime::UNIX_EPOCH)],
            last_seq: 4,
            last_from: "ann".into(),
            last_body: "secret plans".into(),
            last_stored: SystemTime::UNIX_EPOCH,
            remote: false,
        }
    }

    #[test]
    fn settings_decide_what_pushes_and_how_much_it_says() {
        let mut s = PushSettings::default();
        assert!(wanted(&s, "r", RoomKind::Private));
        s.dms_only = true;
        assert!(!wanted(&s, "r", RoomKind::Private) && wanted(&s, "d", RoomKind::Dm));
        s.dms_only = false;
        s.muted_rooms = vec!["r".into()];
        assert!(!wanted(&s, "r", RoomKind::Public) && wanted(&s, "q", RoomKind::Public));
        s.mute_all = true;
        assert!(!wanted(&s, "q", RoomKind::Dm));

        let (a, b) = (room("a", RoomKind::Private), room("b", RoomKind::Dm));
        let full = payload(&PushSettings::default(), &[(&a, 2), (&b, 1)]).unwrap();
        assert_eq!((full.room.as_str(), full.count, full.seq), ("a", 3, 4));
        assert_eq!(full.from.as_deref(), Some("ann"));
        assert_eq!(full.body.as_deref(), Some("secret plans"));
        let quiet = PushSettings {
            preview: false,
            ..PushSettings::default()
        };
        let bare = payload(&quiet, &[(&a, 2)]).unwrap();
        assert!(bare.from.is_none() && bare.body.is_none());
        let json = serde_json::to_string(&bare).unwrap();
        assert!(!json.contains("secret") && !json.contains("ann"), "{json}");
        assert!(payload(&quiet, &[]).is_none());
    }
}
