//! Who may read and post where: worker answers cached per (room, user), dropped when a
//! membership event for the room arrives (also one that only refreshes access: a mute, a
//! ban lifted), so a change takes effect at once on every gateway. The events are core NATS:
//! those sent while a gateway's connection was down are lost, so after a reconnect the
//! gateway asks again about the pairs the missed events named, read from the event log, or
//! about every user of its rooms when the log cannot say ([`crate::catchup`]); answers also
//! expire after a minute, and every `gateway.session_recheck_secs` each (room, user) joined
//! here is asked about again ([`sweep`]: an event lost where the gateway cannot notice). The
//! cache is
//! epoch-stamped ([`Coherent`]): an answer loaded while an event for its key arrived is not
//! kept, so a load racing a removal cannot put the old role back for the TTL.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chatmesh_coherent::Coherent;
use chatmesh_protocol::service::{
    Access, GetAccess, History, HistoryPage, HistoryRequest, MemberEvent, RoomUserRequest,
};
use chatmesh_protocol::subjects::MEMBER_ALL;
use chatmesh_protocol::{ApiError, ErrorCode};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::error::GatewayError;
use crate::fanout::Fanout;
use crate::late::Late;
use crate::services::Services;
use crate::throttle::Throttle;

/// Cached room access.
#[derive(Clone)]
pub struct AccessCache {
    cache: Arc<Coherent<Access>>,
    services: Services,
}

impl std::fmt::Debug for AccessCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessCache")
            .field("cache", &self.cache)
            .finish()
    }
}

impl AccessCache {
    pub fn new(services: Services) -> Self {
        Self {
            cache: Arc::new(Coherent::with_ttl(200_000, Duration::from_secs(60))),
            services,
        }
    }

    /// What `user` may do in `room` (loaded once per key when cold).
    pub async fn get(&self, room: &str, user: &str) -> Result<Access, ApiError> {
        self.get_with(room, user, None).await
    }

    /// [`AccessCache::get`] for the frames a session may send at any rate within its own
    /// limits (`send`, `typing`): a miss, which asks the worker, is first charged to the
    /// user's request budget (`rate_limited` once it is spent). Frames naming rooms that are
    /// not cached, or do not exist (a refusal is not cached), cost what any request to the
    /// workers costs.
    pub async fn get_charged(
        &self,
        room: &str,
        user: &str,
        throttle: &Throttle,
    ) -> Result<Access, ApiError> {
        self.get_with(room, user, Some(throttle)).await
    }

    async fn get_with(
        &self,
        room: &str,
        user: &str,
        charge: Option<&Throttle>,
    ) -> Result<Access, ApiError> {
        // The request is built only on a miss: a hit (every send) allocates nothing for it.
        let load = || {
            let req = RoomUserRequest {
                room: room.to_owned(),
                user: user.to_owned(),
            };
            let services = self.services.clone();
            async move {
                if let Some(throttle) = charge {
                    throttle.charge_api(&req.user).await?;
                }
                services.ask::<GetAccess>(&req.room, &req).await
            }
        };
        let (access, hit) = self
            .cache
            .lookup(room, user, load)
            .await
            .map_err(|e| (*e).clone())?;
        let outcome = if hit { "hit" } else { "miss" };
        metrics::counter!("chatmesh_cache_requests_total", "cache" => "access", "result" => outcome)
            .increment(1);
        Ok(access)
    }

    /// A membership event for (room, user) arrived: the next read asks the worker again,
    /// and a load in flight now is not kept.
    pub async fn forget(&self, room: &str, user: &str) {
        self.cache.changed(room, user).await;
    }

    /// [`AccessCache::forget`] at once, for a caller that cannot wait (the fan-out reaching
    /// a ban's event): the next read asks the worker again.
    pub fn forget_now(&self, room: &str, user: &str) {
        self.cache.changed_now(room, user);
    }

    /// Changes may have been missed: every later read asks the worker again.
    pub fn forget_all(&self) {
        self.cache.changed_all();
    }

    /// A page of `room`'s history for `user`, if the user may read the room.
    pub async fn read_history(
        &self,
        user: &str,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<HistoryPage, ApiError> {
        let access = self.get(room, user).await?;
        readable(&access)?;
        let req = HistoryRequest {
            room: room.to_owned(),
            before,
            after: None,
            limit,
        };
        self.services.ask::<History>(room, &req).await
    }
}

/// `Ok` if the room may be read with `access`; else `forbidden`, saying why.
pub fn readable(access: &Access) -> Result<(), ApiError> {
    match access.can_read() {
        true => Ok(()),
        false if access.banned => Err(ApiError::forbidden("banned from this room")),
        false => Err(ApiError::forbidden("not a member of this room")),
    }
}

/// Called with every membership event that removes or changes a member (tells the user's
/// sessions).
pub type Notify = Arc<dyn Fn(&MemberEvent) + Send + Sync>;

/// Listens to membership events until `drain`: drops cached access, evicts removed users'
/// sessions from `fanout`, and hands every event to `notify` (which tells the user's
/// sessions). A late event (published again for the event log) is handed to `late`
/// instead: it may be older than what was heard since.
///
/// The events are core NATS: those published while this gateway's connection was down are
/// lost (and so are those the client drops for a slow subscription). What was missed is
/// caught up after each such loss by [`crate::catchup`], which calls [`recheck`].
pub async fn spawn_member_listener(
    nats: &async_nats::Client,
    (access, fanout): (AccessCache, Fanout),
    background: &crate::supervise::Supervisor,
    notify: Notify,
    late: Arc<Late>,
) -> Result<(), GatewayError> {
    let mut sub = nats
        .subscribe(MEMBER_ALL)
        .await
        .map_err(|e| GatewayError::nats("subscribing to membership events", e))?;
    let drain = background.drain().clone();
    background.spawn("membership events", async move {
        loop {
            let msg = tokio::select! {
                _ = drain.cancelled() => break,
                msg = sub.next() => match msg { Some(m) => m, None => break },
            };
            if Late::is_late(msg.headers.as_ref()) {
                late.add(&msg.subject, &msg.payload);
                continue;
            }
            let Ok(ev) = serde_json::from_slice::<MemberEvent>(&msg.payload) else {
                tracing::warn!(subject = %msg.subject, "malformed membership event");
                continue;
            };
            access.forget(&ev.room, &ev.user).await;
            if ev.refresh {
                // Only access changed (a mute, a ban lifted): nothing to tell or evict.
                continue;
            }
            apply(&fanout, &notify, &ev);
        }
    });
    Ok(())
}

/// Tells the user's sessions of a membership change and, for a removal, takes them out of
/// the room's fan-out with `left`.
fn apply(fanout: &Fanout, notify: &Notify, ev: &MemberEvent) {
    notify(ev);
    if ev.role.is_none() {
        fanout.evict_user(&ev.room, &ev.user);
    }
}

/// What an answer about a (room, user) pair with a session here did.
enum Settled {
    /// May no longer read: removed, as its missed event would have.
    Removed,
    /// The worker did not answer: left as it was.
    Unanswered,
    Stays,
}

/// Removes `user` from `room` here when `answer` says it may no longer read it.
fn settle(
    fanout: &Fanout,
    notify: &Notify,
    room: Arc<str>,
    user: String,
    answer: &Result<Access, ApiError>,
) -> Settled {
    let gone = match answer {
        Ok(access) => !access.can_read(),
        Err(e) => matches!(e.code, ErrorCode::Forbidden | ErrorCode::NotFound),
    };
    if gone {
        let ev = MemberEvent {
            room: room.to_string(),
            user,
            role: None,
            refresh: false,
        };
        apply(fanout, notify, &ev);
        return Settled::Removed;
    }
    if answer.is_err() {
        return Settled::Unanswered;
    }
    Settled::Stays
}

/// Until `drain`, every `every` asks the workers again about every (room, user) pair with a
/// session here (its cached answer dropped first; [`crate::reconnects::CONCURRENCY`] at a
/// time, spread over half of `every`) and removes those who may no longer read the room:
/// the one way a removal takes effect here when its event never arrived and nothing told
/// this gateway it may have been lost (a NATS route that dropped it).
pub async fn sweep(
    access: AccessCache,
    fanout: Fanout,
    notify: Notify,
    every: Duration,
    drain: CancellationToken,
) {
    loop {
        if !crate::reconnects::pause(every, &drain).await {
            return;
        }
        let local = fanout.local_users();
        let pause = crate::reconnects::pass_pause(every, local.len());
        let mut removed = 0usize;
        for batch in local.chunks(crate::reconnects::CONCURRENCY) {
            let answers = batch.iter().map(|(room, user)| {
                let access = &access;
                async move {
                    access.forget(room, user).await;
                    (room.clone(), user.clone(), access.get(room, user).await)
                }
            });
            for (room, user, answer) in futures::future::join_all(answers).await {
                if let Settled::Removed = settle(&fanout, &notify, room, user, &answer) {
                    removed += 1;
                }
            }
            if !crate::reconnects::pause(pause, &drain).await {
                return;
            }
        }
        metrics::counter!("chatmesh_access_sweeps_total").increment(1);
        if removed > 0 {
            metrics::counter!("chatmesh_access_sweep_removals_total").increment(removed as u64);
            tracing::warn!(
                removed,
                "removals found by the periodic access re-check: their events never arrived"
            );
        }
    }
}

/// Asks again whether users with a session in a room here may still read it, and removes
/// those who may not, as their missed event would have: with `only`, the (room, user) pairs
/// missed events named (their cached answers dropped); without, everyone (every cached
/// answer dropped). Returns how many could not be asked (the worker did not answer).
pub async fn recheck(
    access: &AccessCache,
    fanout: &Fanout,
    notify: &Notify,
    only: Option<&HashSet<(String, String)>>,
) -> usize {
    let started = std::time::Instant::now();
    let mut local = fanout.local_users();
    match only {
        Some(pairs) => {
            for (room, user) in pairs {
                access.forget(room, user).await;
            }
            // Borrowed: a gateway's pairs are many, the named ones few.
            let named: HashSet<(&str, &str)> = pairs
                .iter()
                .map(|(r, u)| (r.as_str(), u.as_str()))
                .collect();
            local.retain(|(room, user)| named.contains(&(&**room, user.as_str())));
        }
        None => access.forget_all(),
    }
    let asked = local.len();
    metrics::counter!("chatmesh_access_recheck_questions_total").increment(asked as u64);
    let answers = futures::stream::iter(local)
        .map(|(room, user)| async move {
            let answer = access.get(&room, &user).await;
            (room, user, answer)
        })
        .buffer_unordered(crate::reconnects::CONCURRENCY);
    futures::pin_mut!(answers);
    let (mut removed, mut unanswered) = (0usize, 0usize);
    while let Some((room, user, answer)) = answers.next().await {
        match settle(fanout, notify, room, user, &answer) {
            Settled::Removed => removed += 1,
            Settled::Unanswered => unanswered += 1,
            Settled::Stays => {}
        }
    }
    let took = started.elapsed();
    metrics::counter!("chatmesh_access_rechecks_total").increment(1);
    metrics::counter!("chatmesh_access_recheck_removals_total").increment(removed as u64);
    metrics::histogram!("chatmesh_access_recheck_seconds").record(took.as_secs_f64());
    tracing::info!(
        asked,
        removed,
        unanswered,
        everyone = only.is_none(),
        took_ms = took.as_millis() as u64,
        "re-checked room access after a possible loss of membership events"
    );
    unanswered
}
