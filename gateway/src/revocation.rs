//! Token revocation ("log out everywhere") for built-in tokens: each user has a token
//! generation kept by the worker with the user record; tokens carry the one they were issued
//! at (`gen`), and a token below the user's current generation is refused.
//!
//! Every HTTP call and every `hello` (and a header-authenticated upgrade) checks it through a
//! moka cache (`user_gen_cache_secs`). `logout_all` bumps the generation; the worker then
//! publishes it on `chat.user.<user>`, and every gateway updates its cache and closes that
//! user's sessions authenticated with an older token (4001). A lost event leaves a revoked
//! token usable for at most the cache TTL; after a reconnect of this gateway (when events
//! may have been lost) the users the missed events named (read from the event log), or
//! every user with a session here when the log cannot say, are asked about again and
//! revoked sessions close then ([`crate::catchup`]). External issuers' tokens have no generation and
//! are never revoked here (revoke them at the issuer).
//!
//! An account a server admin disabled (admin API) is refused whatever its token: the
//! cached answer carries the flag, the disable's event closes every session of the user.
//! Users of an external issuer have no account record here, so they are disabled at the
//! issuer.
//!
//! In a region with workers of its own (`mesh.regional_workers`, docs/REGIONS.md section
//! 12) the accounts still live in the primary. While the primary does not answer, a user's
//! last known generation (kept [`LAST_KNOWN_FOR`], updated by every answer and event) stands
//! in, so sessions of that region's rooms keep working through a primary cut; a user never
//! seen here is refused (`unavailable`). Nothing can be revoked while the primary is cut
//! off, so this admits only what the last answer admitted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chatmesh_protocol::frames::error_frame;
use chatmesh_protocol::service::{GetUserGen, UserGen, UserRequest};
use chatmesh_protocol::{ApiError, ErrorCode};
use futures::StreamExt;
use moka::future::Cache;

use crate::auth::Identity;
use crate::link::{Out, SessionLink};
use crate::services::Services;

/// A tracked session.
#[derive(Debug)]
struct Tracked {
    id: u64,
    /// The generation of its token (`None`: a token of an external issuer, never revoked
    /// here).
    gen: Option<u64>,
    /// The key id of an external issuer's token: the session closes when the key leaves
    /// the issuer's key set ([`Revocation::sweep`]).
    kid: Option<Arc<str>>,
    link: Weak<SessionLink>,
}

/// How long a generation is kept as the last known one (used while the primary is cut off).
pub const LAST_KNOWN_FOR: Duration = Duration::from_secs(24 * 3600);

/// How long the primary is taken as cut off after it did not answer.
const PRIMARY_DOWN_FOR: Duration = Duration::from_secs(15);

/// Cached generations and the sessions that would close on a bump.
#[derive(Debug)]
pub struct Revocation {
    gens: Cache<Arc<str>, UserGen>,
    /// What user events said, kept as long as `gens`: an ask that read the worker before a
    /// change fills `gens` after the change's event, with the older generation.
    events: Cache<Arc<str>, UserGen>,
    /// The last generation seen per user, for a region that serves its rooms while the
    /// primary is cut off (`None` elsewhere).
    last_known: Option<Cache<Arc<str>, UserGen>>,
    /// Until when the primary is taken as cut off (it did not answer): the last known
    /// generation is used without asking again, so each call does not wait out the ask.
    primary_down_until: Mutex<Option<tokio::time::Instant>>,
    services: Services,
    sessions: Mutex<HashMap<Arc<str>, Vec<Tracked>>>,
}

/// The error a revoked token gets.
pub fn revoked() -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, "invalid or expired token")
}

/// The error every token of a disabled account gets.
pub fn account_disabled() -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, "this account is disabled")
}

impl Revocation {
    pub fn new(services: Services, ttl: Duration) -> Self {
        Self {
            gens: Cache::builder()
                .max_capacity(200_000)
                .time_to_live(ttl)
                .build(),
            events: Cache::builder()
                .max_capacity(200_000)
                .time_to_live(ttl)
                .build(),
            last_known: services.local_workers().map(|_| {
                Cache::builder()
                    .max_capacity(200_000)
                    .time_to_live(LAST_KNOWN_FOR)
                    .build()
            }),
            services,
            primary_down_until: Mutex::new(None),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// `unauthorized` if the token was revoked; `unavailable` if no worker can tell.
    pub async fn check(&self, id: &Identity) -> Result<(), ApiError> {
        let current = self.current(&id.user).await?;
        if current.disabled {
            metrics::counter!("chatmesh_revoked_tokens_total").increment(1);
            return Err(account_disabled());
        }
        let Some(gen) = id.gen else {
            return Ok(());
        };
        if gen < current.gen {
            metrics::counter!("chatmesh_revoked_tokens_total").increment(1);
            return Err(revoked());
        }
        Ok(())
    }

    async fn current(&self, user: &str) -> Result<UserGen, ApiError> {
        let services = self.services.clone();
        let req = UserRequest {
            user: user.to_owned(),
        };
        let key: Arc<str> = Arc::from(user);
        if let (Some(last_known), true) = (&self.last_known, self.primary_down()) {
            if let Some(gen) = last_known.get(&key).await {
                metrics::counter!("chatmesh_user_gen_last_known_total").increment(1);
                return Ok(gen);
            }
        }
        let answer = self
            .gens
            .try_get_with(key.clone(), async move {
                services.ask::<GetUserGen>(&req.user, &req).await
            })
            .await
            .map_err(|e| (*e).clone());
        let answer = match answer {
            Ok(fetched) => Ok(self.not_older_than_events(&key, fetched).await),
            Err(e) => Err(e),
        };
        let Some(last_known) = &self.last_known else {
            return answer;
        };
        match answer {
            Ok(gen) => {
                last_known.insert(key, gen).await;
                Ok(gen)
            }
            Err(e) if e.code == ErrorCode::Unavailable => {
                *self
                    .primary_down_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) =
                    Some(tokio::time::Instant::now() + PRIMARY_DOWN_FOR);
                match last_known.get(&key).await {
                    Some(gen) => {
                        metrics::counter!("chatmesh_user_gen_last_known_total").increment(1);
                        Ok(gen)
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `fetched`, or what a user event said meanwhile when that is newer (then cached): an
    /// ask that read the worker before a bump, answered after the bump's event, cached the
    /// older generation, and the revoked tokens passed until the cache expired.
    async fn not_older_than_events(&self, key: &Arc<str>, fetched: UserGen) -> UserGen {
        match self.events.get(key).await {
            Some(event) if event.gen > fetched.gen => {
                self.gens.insert(key.clone(), event).await;
                event
            }
            _ => fetched,
        }
    }

    /// Whether the primary did not answer a generation ask in the last [`PRIMARY_DOWN_FOR`].
    fn primary_down(&self) -> bool {
        let until = *self
            .primary_down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|t| tokio::time::Instant::now() < t)
    }

    /// Remembers a session authenticated with `id`: to close it if its token is revoked, and
    /// to reach every session of a user ([`Revocation::sessions_of`]).
    pub fn track(&self, id: &Identity, link: &Arc<SessionLink>) {
        let gen = id.gen;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let list = sessions.entry(Arc::from(id.user.as_str())).or_default();
        list.retain(|t| t.id != link.id);
        list.push(Tracked {
            id: link.id,
            gen,
            kid: id.kid.as_deref().map(Arc::from),
            link: Arc::downgrade(link),
        });
    }

    /// Forgets a session that ended.
    pub fn untrack(&self, user: &str, session: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = sessions.get_mut(user) {
            list.retain(|t| t.id != session);
            if list.is_empty() {
                sessions.remove(user);
            }
        }
    }

    /// The open sessions of `user` on this gateway.
    pub fn sessions_of(&self, user: &str) -> Vec<Arc<SessionLink>> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(user)
            .map(|list| list.iter().filter_map(|t| t.link.upgrade()).collect())
            .unwrap_or_default()
    }

    /// After a possible loss of user events ([`crate::catchup`]): forgets the cached
    /// generations of the users missed events named (`only`), or every one, asks again about
    /// each of them with a session here and closes the sessions of tokens revoked meanwhile.
    /// Returns how many users could not be asked.
    /// Until `drain`, every `every` asks again about each user with a session here holding
    /// a built-in token (spread over half of `every`, [`crate::reconnects::CONCURRENCY`] at a
    /// time) and closes the sessions whose token a revocation or disable has made stale:
    /// the one way such a session closes when the event of it never arrived and nothing
    /// told this gateway it may have been lost. First, the sessions of external issuers'
    /// tokens whose key `knows_key` no longer knows close (the key was withdrawn).
    pub async fn sweep(
        self: Arc<Self>,
        every: Duration,
        knows_key: impl Fn(&str) -> bool,
        drain: tokio_util::sync::CancellationToken,
    ) {
        loop {
            if !crate::reconnects::pause(every, &drain).await {
                return;
            }
            let withdrawn = self.close_withdrawn_keys(&knows_key);
            if withdrawn > 0 {
                metrics::counter!("chatmesh_session_recheck_closes_total")
                    .increment(withdrawn as u64);
                tracing::warn!(
                    withdrawn,
                    "sessions of tokens whose key left the issuer's key set closed"
                );
            }
            let users: Vec<Arc<str>> = {
                let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                sessions
                    .iter()
                    .filter(|(_, list)| list.iter().any(|t| t.gen.is_some()))
                    .map(|(user, _)| user.clone())
                    .collect()
            };
            let pause = crate::reconnects::pass_pause(every, users.len());
            let mut closed = 0usize;
            for batch in users.chunks(crate::reconnects::CONCURRENCY) {
                let this = &self;
                let answers = batch
                    .iter()
                    .map(|user| async move { (user, this.current(user).await) });
                for (user, answer) in futures::future::join_all(answers).await {
                    if let Ok(now) = answer {
                        closed += self.close_older(user, now.gen, now.disabled);
                    }
                }
                if !crate::reconnects::pause(pause, &drain).await {
                    return;
                }
            }
            metrics::counter!("chatmesh_session_rechecks_total").increment(1);
            if closed > 0 {
                metrics::counter!("chatmesh_session_recheck_closes_total").increment(closed as u64);
                tracing::warn!(closed, "sessions of revoked tokens closed by the periodic re-check: their events never arrived");
            }
        }
    }

    pub async fn recheck(&self, only: Option<&HashSet<String>>) -> usize {
        let users: Vec<Arc<str>> = {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.keys().cloned().collect()
        };
        let users = match only {
            Some(named) => {
                for user in named {
                    self.gens.invalidate(user.as_str()).await;
                }
                users
                    .into_iter()
                    .filter(|u| named.contains(u.as_ref()))
                    .collect()
            }
            None => {
                self.gens.invalidate_all();
                users
            }
        };
        let asked = users.len();
        let answers = futures::stream::iter(users)
            .map(|user| async move {
                let answer = self.current(&user).await;
                (user, answer)
            })
            .buffer_unordered(crate::reconnects::CONCURRENCY);
        futures::pin_mut!(answers);
        let mut unanswered = 0usize;
        while let Some((user, answer)) = answers.next().await {
            match answer {
                Ok(now) => {
                    self.close_older(&user, now.gen, now.disabled);
                }
                Err(_) => unanswered += 1,
            }
        }
        metrics::counter!("chatmesh_token_rechecks_total").increment(1);
        tracing::info!(
            asked,
            unanswered,
            everyone = only.is_none(),
            "re-checked token generations after a possible loss of user events"
        );
        unanswered
    }

    /// `user`'s generation is now `gen`: cache it and close sessions of older tokens.
    pub async fn bumped(&self, user: &str, gen: u64) {
        self.changed(user, gen, false).await;
    }

    /// `user`'s generation is now `gen` and its account `disabled` or not: cache it and
    /// close the sessions of older tokens (of every token, when disabled). An event older
    /// than what is cached (workers publish after they let go of the account's lock, so two
    /// changes' events can cross) changes nothing.
    pub async fn changed(&self, user: &str, gen: u64, disabled: bool) {
        if self
            .gens
            .get(user)
            .await
            .is_some_and(|known| known.gen > gen)
        {
            return;
        }
        let now = UserGen { gen, disabled };
        self.gens.insert(Arc::from(user), now).await;
        self.events.insert(Arc::from(user), now).await;
        if let Some(last_known) = &self.last_known {
            last_known.insert(Arc::from(user), now).await;
        }
        self.close_older(user, gen, disabled);
    }

    /// Closes the sessions of external issuers' tokens whose key `knows_key` no longer
    /// knows (taken out of the JWKS file after a leak); how many.
    fn close_withdrawn_keys(&self, knows_key: &impl Fn(&str) -> bool) -> usize {
        let closing: Vec<Arc<SessionLink>> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let mut closing = Vec::new();
            sessions.retain(|_, list| {
                list.retain(|t| {
                    if t.kid.as_deref().is_none_or(knows_key) {
                        return true;
                    }
                    closing.extend(t.link.upgrade());
                    false
                });
                !list.is_empty()
            });
            closing
        };
        let closed = closing.len();
        let error = ApiError::new(
            ErrorCode::Unauthorized,
            "the token's signing key was withdrawn: log in again",
        );
        for link in closing {
            link.close_with(
                Out::Frame(error_frame(&None, &error).into()),
                4001,
                "token key withdrawn",
            );
        }
        closed
    }

    /// Closes `user`'s sessions of tokens older than `gen` (every one, when `disabled`).
    fn close_older(&self, user: &str, gen: u64, disabled: bool) -> usize {
        let closing: Vec<Arc<SessionLink>> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let Some(list) = sessions.get_mut(user) else {
                return 0;
            };
            let mut closing = Vec::new();
            list.retain(|t| {
                if !disabled && t.gen.is_none_or(|g| g >= gen) {
                    return true;
                }
                closing.extend(t.link.upgrade());
                false
            });
            if list.is_empty() {
                sessions.remove(user);
            }
            closing
        };
        let error = if disabled {
            account_disabled()
        } else {
            revoked()
        };
        let closed = closing.len();
        for link in closing {
            link.close_with(
                Out::Frame(error_frame(&None, &error).into()),
                4001,
                "token revoked",
            );
        }
        closed
    }
}
