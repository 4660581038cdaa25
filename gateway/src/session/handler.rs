//! The requests of protocol v1, answered for one session.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatmesh_protocol::e2ee::MlsKind;
use chatmesh_protocol::frames::{
    error_frame, parse_client_frame, peek_ref, ClientFrame, Ref, ServerFrame,
};
use chatmesh_protocol::limits::Limits;
use chatmesh_protocol::mentions::Mentions;
use chatmesh_protocol::message::{now_ms, Payload};
use chatmesh_protocol::names::dedupe_id;
use chatmesh_protocol::service::{
    ChangeCheck, JoinRoom, RoomKind, RoomUserRequest, SetCursor, SetCursorRequest,
};
use chatmesh_protocol::subjects::in_subject;
use chatmesh_protocol::{ApiError, ErrorCode};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::acks::{self, Acks};
use super::changes;
use super::mls::{self, Commit};
use super::replay::Replay;
use super::replays::Running;
use super::rooms::RoomMap;
use crate::admission::SessionSlots;
use crate::auth::Identity;
use crate::link::{Out, SessionLink};
use crate::publish::Publish;
use crate::receipts::{self, Decision};
use crate::replay_slots::Slot;
use crate::state::AppState;

/// Window over which rate-limited frames are counted towards a 4008 close.
const STRIKE_WINDOW: Duration = Duration::from_secs(10);

/// The state of one authenticated (or not yet) session.
pub struct Session {
    pub state: Arc<AppState>,
    pub link: Arc<SessionLink>,
    identity: Option<Identity>,
    /// Joined rooms and their join generation.
    rooms: RoomMap<u64>,
    next_gen: u64,
    sends: DefaultDirectRateLimiter,
    frames: DefaultDirectRateLimiter,
    strikes: (Instant, u32),
    /// Created at the first `send`: sessions that only listen never pay for it.
    inflight: Option<SessionSlots>,
    /// Created at the first `typing`: sessions that never type never pay for it.
    typing: Option<Box<Typing>>,
    /// Replays in progress; created at the first `join` with `since`.
    replays: Option<Box<Running>>,
    /// The client's address, counted for its share of the replay slots.
    client: Option<IpAddr>,
    /// Sends waiting for their PubAck (see `acks.rs`); created at the first `send`.
    pub acks: Acks,
}

/// A session's `typing` limits: the last event per room, and the rate over all rooms.
struct Typing {
    last: HashMap<String, Instant>,
    all: DefaultDirectRateLimiter,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

impl Session {
    pub async fn new(
        state: Arc<AppState>,
        link: Arc<SessionLink>,
        identity: Option<Identity>,
        client: Option<IpAddr>,
    ) -> Self {
        let l = &state.cfg.limits;
        let sends = RateLimiter::direct(quota(l.sends_per_second, l.send_burst));
        let fps = state.cfg.frames_per_second;
        let frames = RateLimiter::direct(quota(fps, fps.saturating_mul(2)));
        let mut session = Self {
            state,
            link,
            identity: None,
            rooms: RoomMap::default(),
            next_gen: 1,
            sends,
            frames,
            strikes: (Instant::now(), 0),
            inflight: None,
            typing: None,
            replays: None,
            client,
            acks: None,
        };
        if let Some(identity) = identity {
            session.welcome(&None, identity).await;
        }
        session
    }

    pub fn authenticated(&self) -> bool {
        self.identity.is_some()
    }

    fn user(&self) -> &str {
        self.identity
            .as_ref()
            .map(|i| i.user.as_str())
            .unwrap_or("")
    }

    async fn reply(&self, text: String) {
        self.link.send(Out::Frame(Bytes::from(text))).await;
    }

    async fn error(&self, r#ref: &Ref, error: &ApiError) {
        metrics::counter!("chatmesh_errors_total", "code" => error.code.as_str()).increment(1);
        self.reply(error_frame(r#ref, error)).await;
    }

    async fn welcome(&mut self, r#ref: &Ref, identity: Identity) {
        // Tracked before the welcome: a revocation from now on closes the session.
        self.state.revocation.track(&identity, &self.link);
        // A revocation that landed between the caller's check and `track` was not applied to
        // this session; the cache has it by now. Asked before the welcome, so that the
        // `hello` is answered once, by an error with its `ref`.
        if let Err(e) = self.state.revocation.check(&identity).await {
            if e.code == ErrorCode::Unauthorized {
                self.error(r#ref, &e).await;
                self.link.close(4001, "token revoked");
                return;
            }
        }
        let _ = self.link.user.set(Arc::from(identity.user.as_str()));
        self.link.set_expiry(identity.expires_at);
        tracing::Span::current().record("user", identity.user.as_str());
        let frame = ServerFrame::Welcome {
            r#ref: Cow::Borrowed(r#ref),
            user: Cow::Borrowed(&identity.user),
            session: Cow::Owned(format!("{:x}", self.link.id)),
            limits: Cow::Owned(Limits {
                frames_per_second: Some(self.state.cfg.frames_per_second),
                ..self.state.cfg.limits.clone()
            }),
        };
        self.reply(frame.encode()).await;
        self.identity = Some(identity);
    }

    /// Waits until every send in flight has its ack (or error) queued: at most what one send
    /// can take, its wait for admission, the publish deadline and the PubAck wait of its
    /// last attempt, which may begin just before the deadline (the publish deadline alone
    /// cut off the ack of a message stored in that last attempt).
    pub async fn settle(&mut self) {
        let cfg = &self.state.cfg;
        let deadline = Duration::from_millis(cfg.admission_wait_ms + cfg.publish_deadline_ms)
            + crate::state::PUBACK_TIMEOUT;
        if tokio::time::timeout(deadline, acks::drain(&mut self.acks))
            .await
            .is_err()
        {
            tracing::debug!("acks still in flight at close");
        }
    }

    /// Leaves every room (the session is over).
    pub fn finish(&mut self) {
        if let Some(replays) = &mut self.replays {
            replays.cancel_all();
        }
        if let Some(identity) = &self.identity {
            self.state.revocation.untrack(&identity.user, self.link.id);
        }
        for room in self.rooms.keys() {
            self.state.fanout.leave(room, self.link.id);
        }
        self.rooms.clear();
    }

    /// A binary frame: not part of the protocol, but counted by the flood guard like any
    /// other frame (a binary flood must not be free).
    pub async fn on_binary(&mut self) {
        metrics::counter!("chatmesh_frames_in_total").increment(1);
        if self.frames.check().is_err() {
            return self.strike(&None).await;
        }
        let e = ApiError::bad_request("binary frames are not supported; send JSON text frames");
        self.error(&None, &e).await;
    }

    /// A WebSocket ping (or pong): counted by the flood guard; whether to answer it. One
    /// over the rate is a strike without an error frame (answering a flood would amplify
    /// it).
    pub fn on_ping(&mut self) -> bool {
        metrics::counter!("chatmesh_frames_in_total").increment(1);
        if self.frames.check().is_ok() {
            return true;
        }
        self.count_strike();
        false
    }

    /// Counts a rate-limited frame; true (and the session closing with 4008) when they go
    /// on for `rate_limit_strikes` within the strike window.
    fn count_strike(&mut self) -> bool {
        metrics::counter!("chatmesh_frames_rate_limited_total").increment(1);
        let now = Instant::now();
        if now.duration_since(self.strikes.0) > STRIKE_WINDOW {
            self.strikes = (now, 0);
        }
        self.strikes.1 += 1;
        if self.strikes.1 >= self.state.cfg.rate_limit_strikes {
            self.link.close(4008, "rate limit exceeded repeatedly");
            return true;
        }
        false
    }

    /// Counts a rate-limited frame and tells the client to slow down (or closes with 4008).
    async fn strike(&mut self, r#ref: &Ref) {
        if self.count_strike() {
            return;
        }
        self.error(r#ref, &ApiError::new(ErrorCode::RateLimited, "slow down"))
            .await;
    }

    /// Charges a request that reaches a worker or JetStream to its user's API budget
    /// (`api_per_user_per_minute`, shared with HTTP and by all the user's sessions on this
    /// gateway); false, and the request refused as rate-limited, when it is spent. Not a
    /// strike towards 4008, as over HTTP it is only a 429: a client resuming hundreds of
    /// rooms on several devices may run into it and must not be closed for it.
    async fn api_budget(&mut self, r#ref: &Ref) -> bool {
        let Err(e) = self.charge_api().await else {
            return true;
        };
        self.error(r#ref, &e).await;
        false
    }

    /// Counts one request against the user's API budget: `rate_limited` when it is spent.
    async fn charge_api(&self) -> Result<(), ApiError> {
        self.state.throttle.charge_api(self.user()).await
    }

    pub async fn on_text(&mut self, text: &[u8]) {
        metrics::counter!("chatmesh_frames_in_total").increment(1);
        if self.frames.check().is_err() {
            // Refused before parsing, but answered to its request like every error.
            return self.strike(&peek_ref(text)).await;
        }
        let (r#ref, frame) = match parse_client_frame(text, &self.state.cfg.limits) {
            Ok(parsed) => parsed,
            Err(e) => return self.error(&e.r#ref, &e.error).await,
        };
        if !self.authenticated() {
            return match frame {
                ClientFrame::Hello { token } => self.hello(&r#ref, &token).await,
                ClientFrame::Ping => self.reply(pong(&r#ref)).await,
                _ => {
                    let e = ApiError::new(ErrorCode::Unauthorized, "send hello with a token first");
                    self.error(&r#ref, &e).await;
                    self.link.close(4001, "unauthorized");
                }
            };
        }
        match frame {
            ClientFrame::Hello { token } => self.hello(&r#ref, &token).await,
            ClientFrame::Ping => self.reply(pong(&r#ref)).await,
            ClientFrame::Join { .. }
            | ClientFrame::History { .. }
            | ClientFrame::Read { .. }
            | ClientFrame::Presence { .. }
                if !self.api_budget(&r#ref).await => {}
            ClientFrame::Join { room, since } => {
                if let Err(e) = self.join(&r#ref, &room, since).await {
                    self.error(&r#ref, &e).await;
                }
            }
            ClientFrame::Leave { room } => self.leave(&r#ref, &room).await,
            ClientFrame::Send {
                room,
                id,
                body,
                attachments,
                edit_of,
                delete_of,
                react_to,
                unreact_to,
                reply_to,
                mls,
                resend_after,
            } => {
                if self.sends.check().is_err() {
                    return self.strike(&r#ref).await;
                }
                let payload = Payload {
                    id,
                    body,
                    edit_of,
                    delete_of,
                    react_to,
                    unreact_to,
                    reply_to,
                    mls,
                    ..Payload::default()
                };
                let sent = self
                    .send(&r#ref, room, payload, attachments, resend_after)
                    .await;
                if let Err(e) = sent {
                    self.error(&r#ref, &e).await;
                }
            }
            ClientFrame::History {
                room,
                before,
                limit,
            } => {
                if let Err(e) = self.history(&r#ref, &room, before, limit).await {
                    self.error(&r#ref, &e).await;
                }
            }
            ClientFrame::Typing { room } => {
                if let Err(e) = self.typing(&room).await {
                    self.error(&r#ref, &e).await;
                }
            }
            ClientFrame::Read { room, seq } => {
                if let Err(e) = self.read(&room, seq).await {
                    self.error(&r#ref, &e).await;
                }
            }
            ClientFrame::Presence { room } => {
                if let Err(e) = self.presence(&r#ref, &room).await {
                    self.error(&r#ref, &e).await;
                }
            }
        }
    }

    async fn hello(&mut self, r#ref: &Ref, token: &str) {
        let verified = match self.state.tokens.verify(token) {
            Ok(identity) => match self.state.revocation.check(&identity).await {
                Ok(()) => Ok(identity),
                Err(e) if e.code == ErrorCode::Unauthorized => Err(e.to_string()),
                Err(e) => {
                    // Nobody can tell whether the token was revoked: retry later.
                    self.error(r#ref, &e).await;
                    self.link.close(1013, "try again later");
                    return;
                }
            },
            Err(e) => Err(e.to_string()),
        };
        match verified {
            Ok(identity)
                if self
                    .identity
                    .as_ref()
                    .is_none_or(|i| i.user == identity.user) =>
            {
                self.welcome(r#ref, identity).await
            }
            Ok(_) => {
                let e = ApiError::bad_request("a session cannot change its user");
                self.error(r#ref, &e).await;
            }
            Err(err) => {
                tracing::debug!(error = %err, "hello refused");
                let e = ApiError::new(ErrorCode::Unauthorized, "invalid or expired token");
                self.error(r#ref, &e).await;
                self.link.close(4001, "unauthorized");
            }
        }
    }

    /// Forgets the rooms the session was removed from (their fan-out evicted it and sent
    /// `left`; the session itself is not told), so they no longer count towards `max_rooms`.
    fn forget_evicted(&mut self) {
        let fanout = &self.state.fanout;
        let gone: Vec<Arc<str>> = self
            .rooms
            .keys()
            .filter(|room| !fanout.holds(room, self.link.id))
            .cloned()
            .collect();
        for room in gone {
            self.rooms.remove(&room);
            self.cancel_replay(&room);
        }
    }

    async fn join(&mut self, r#ref: &Ref, room: &str, since: Option<u64>) -> Result<(), ApiError> {
        let user = self.user().to_owned();
        let max = self.state.cfg.limits.max_rooms;
        let full = |rooms: &RoomMap<u64>| rooms.len() >= max && !rooms.contains_key(room);
        if full(&self.rooms) {
            // Rooms the session was removed from do not count.
            self.forget_evicted();
            if full(&self.rooms) {
                return Err(ApiError::bad_request(format!(
                    "a session may join at most {max} rooms"
                )));
            }
        }
        let mut access = self.state.access.get(room, &user).await?;
        crate::access::readable(&access)?;
        // Before anything changes (a first join of a public room stores a membership): a
        // refused replay leaves the previous join, and the memberships, as they were.
        let slot = match since {
            Some(_) => Some(self.replay_slot(room).await?),
            None => {
                self.cancel_replay(room);
                None
            }
        };
        if access.role.is_none() && access.kind == RoomKind::Public {
            let req = RoomUserRequest {
                room: room.to_owned(),
                user: user.clone(),
            };
            access = self.state.services.ask::<JoinRoom>(room, &req).await?;
            // The cached "not a member" is stale now (the worker's event says so too).
            self.state.access.forget(room, &user).await;
        }
        // A session already in the room stays in it until the fan-out replaces its entry
        // (`Room::add`, under the room's lock): it used to leave first, which closed a room
        // it was the only local member of, and when the room could not start again (the bus
        // not answering) the join failed with the session out of the room's live delivery
        // and the client, told only `unavailable`, still joined. Now a failed re-join
        // changes nothing.
        let gen = self.next_gen;
        self.next_gen += 1;
        let joined = |last_seq: u64| -> Bytes {
            ServerFrame::Joined {
                r#ref: Cow::Borrowed(r#ref),
                room: Cow::Borrowed(room),
                last_seq,
            }
            .encode()
            .into()
        };
        let (last, name) = self
            .state
            .fanout
            .join(room, &self.link, gen, access.last_seq, since, &joined)
            .await?;
        self.rooms.insert(name.clone(), gen);
        // A removal whose event arrived between the check above and the fan-out join found
        // no session of this user in the room to remove. Its event dropped the cached
        // answer, so asking again sees it: then the join is undone as a removal would have.
        // Only an answer that says so undoes it: a worker that does not answer in time (under
        // load; after a first join of a public room the answer is never cached) leaves the
        // join as the check before it allowed, rather than telling the client it was removed.
        let removed = match self.state.access.get(room, &user).await {
            Ok(access) => !access.can_read(),
            Err(e) => matches!(e.code, ErrorCode::Forbidden | ErrorCode::NotFound),
        };
        if removed {
            self.undo_join(name, gen).await;
            return Ok(());
        }
        metrics::counter!("chatmesh_joins_total").increment(1);
        if let (Some(since), Some(slot)) = (since, slot) {
            let replay = Replay {
                room: name.clone(),
                gen,
                since,
                until: last,
            };
            let (state, link) = (self.state.clone(), self.link.clone());
            let replays = self.replays.get_or_insert_with(Default::default);
            replays.start(name, slot, replay.run(state, link));
        } else {
            // The room's live frames were held since the fan-out join (a ban dispatched
            // during the re-check must not reach the session): the re-check passed.
            self.link.send(Out::ReplayDone { room: name, gen }).await;
        }
        Ok(())
    }

    /// Takes the session out of `room` after its `joined` went out, as a removal does: the
    /// session gets `left` without a `ref`.
    async fn undo_join(&mut self, room: Arc<str>, gen: u64) {
        metrics::counter!("chatmesh_joins_undone_total").increment(1);
        self.rooms.remove(&room);
        self.state.fanout.leave(&room, self.link.id);
        self.link
            .send(Out::Untrack {
                room: room.clone(),
                gen,
            })
            .await;
        let left = ServerFrame::Left {
            r#ref: Cow::Owned(None),
            room: Cow::Borrowed(&room),
        };
        self.reply(left.encode()).await;
    }

    /// A replay slot for a join of `room` with `since` (see `replays.rs`).
    async fn replay_slot(&mut self, room: &str) -> Result<Slot, ApiError> {
        let per_session = self.state.cfg.max_replays_per_session;
        let user: Arc<str> = Arc::from(self.user());
        let replays = self.replays.get_or_insert_with(Default::default);
        replays
            .admit(
                room,
                per_session,
                &self.state.replay_slots,
                &user,
                self.client,
            )
            .await
    }

    /// Stops the replay of `room`, if one runs: its frames belong to a join that is over.
    fn cancel_replay(&mut self, room: &str) {
        if let Some(replays) = &mut self.replays {
            replays.cancel(room);
        }
    }

    async fn leave(&mut self, r#ref: &Ref, room: &str) {
        self.cancel_replay(room);
        if let Some(gen) = self.rooms.remove(room) {
            self.state.fanout.leave(room, self.link.id);
            self.link
                .send(Out::Untrack {
                    room: Arc::from(room),
                    gen,
                })
                .await;
        }
        let left = ServerFrame::Left {
            r#ref: Cow::Borrowed(r#ref),
            room: Cow::Borrowed(room),
        };
        self.reply(left.encode()).await;
    }

    /// Acks a send found stored already (a resend) with the stored seq and ts, as JetStream
    /// acks a duplicate.
    async fn ack_stored(
        &self,
        r#ref: &Ref,
        room: &str,
        id: &str,
        seq: u64,
        ts: u64,
    ) -> Result<(), ApiError> {
        let ack = ServerFrame::Ack {
            r#ref: Cow::Borrowed(r#ref),
            room: Cow::Borrowed(room),
            id: Cow::Borrowed(id),
            seq,
            ts,
        };
        self.reply(ack.encode()).await;
        Ok(())
    }

    /// Publishes `payload` (its `id`, `body` and change as sent; `from`, `ts` and the files
    /// are filled in here) and queues its ack. A new message sent with `resend_after` is
    /// first looked for among the room's stored messages after that seq: if it is there, it
    /// is acked with its seq and not published again.
    async fn send(
        &mut self,
        r#ref: &Ref,
        room: String,
        mut payload: Payload,
        files: Vec<String>,
        resend_after: Option<u64>,
    ) -> Result<(), ApiError> {
        let user = self.user().to_owned();
        let id = payload.id.clone();
        // One trace per send, when traces are exported: from here to the ack, continued by
        // the worker that stores it and every gateway that fans it out.
        let span = if natskit::trace::enabled() {
            tracing::info_span!("send", room = %room, user = %user, id = %id)
        } else {
            tracing::Span::none()
        };
        let throttle = &self.state.throttle;
        let access = self
            .state
            .access
            .get_charged(&room, &user, throttle)
            .await?;
        if !access.can_post() {
            return Err(ApiError::forbidden("only members may post to this room"));
        }
        // Every kind of send (edits, deletes, reactions, replies too): a muted member reads.
        if access.muted(now_ms() / 1000) {
            return Err(ApiError::forbidden("muted in this room"));
        }
        if access.blocked {
            return Err(ApiError::forbidden(
                "the other member of this DM has blocked you",
            ));
        }
        mls::fits(
            access.kind,
            payload.mls.as_ref(),
            payload.delete_of.is_some(),
        )?;
        let commit = match &payload.mls {
            Some(m) => {
                if m.kind != MlsKind::App {
                    // A worker checks it (a commit against the room's group, read from a
                    // file of up to 8 MiB; a welcome's commit looked for): the user's
                    // request budget, as a history read; commits and proposals a narrower
                    // one too (a welcome follows a commit that paid).
                    self.charge_api().await?;
                    let handshake = m.kind != MlsKind::Welcome;
                    let allowed = match handshake {
                        true => self.state.throttle.mls_check_allowed(&user).await,
                        false => Ok(()),
                    };
                    if let Err(refused) = allowed {
                        let wait = refused.retry_after.as_millis().max(1);
                        return Err(ApiError::new(
                            ErrorCode::RateLimited,
                            format!("too many commits, proposals or welcomes: retry in {wait} ms"),
                        ));
                    }
                }
                mls::check(&self.state, &room, &user, &payload.id, m).await?
            }
            None => Commit::No,
        };
        if let Commit::Stored { seq, ts } = commit {
            return self.ack_stored(r#ref, &room, &payload.id, seq, ts).await;
        }
        if let (Some(after), None, Commit::No) = (resend_after, payload.change(), &commit) {
            // A worker reads up to `MAX_RESEND_SCAN` messages for it: the user's own bucket.
            if let Err(refused) = self.state.throttle.resend_check_allowed(&user).await {
                let wait = refused.retry_after.as_millis().max(1);
                return Err(ApiError::new(
                    ErrorCode::RateLimited,
                    format!("too many late resends checked: retry in {wait} ms"),
                ));
            }
            match changes::sent(&self.state, &room, &user, &id, after).await {
                Ok(ChangeCheck::Duplicate { seq, ts }) => {
                    metrics::counter!("chatmesh_resends_found_total").increment(1);
                    self.state.own_reads.sent(&room, &user, seq);
                    return self.ack_stored(r#ref, &room, &id, seq, ts).await;
                }
                Ok(ChangeCheck::Allowed) => {}
                // The room's worker could not look: the send goes on as any other (storing
                // a message never waits on a worker), deduplicated by JetStream within its
                // window.
                Err(e) if e.code == ErrorCode::Unavailable => {
                    metrics::counter!("chatmesh_resend_checks_failed_total").increment(1);
                }
                Err(e) => return Err(e),
            }
        }
        // Each of the worker asks below is charged to the user's request budget, as a
        // history read is (they were free: a member sending reactions to or replies to a
        // seq that does not exist, from many sessions, kept the room's worker busy answering
        // `not_found` with nothing stored, past the budget that holds over all sessions).
        if let Some(to) = payload.reply_to {
            self.charge_api().await?;
            payload.thread_root = Some(changes::reply_root(&self.state, &room, &user, to).await?);
        }
        if let Some(change) = payload.change() {
            let key = if change.is_reaction() {
                payload.body.as_str()
            } else {
                ""
            };
            self.charge_api().await?;
            match changes::check(&self.state, &room, &user, &id, change, key).await? {
                ChangeCheck::Allowed => {}
                ChangeCheck::Duplicate { seq, ts } => {
                    // A resend of a change already stored: ack it as JetStream would.
                    return self.ack_stored(r#ref, &room, &id, seq, ts).await;
                }
            }
        }
        if !files.is_empty() {
            self.charge_api().await?;
            payload.attachments = attach(&self.state, &room, files).await?;
        }
        // An MLS message too large to send inline is a file of the room: it must exist, and
        // it rides as the message's attachment, so it lives as long as the message does.
        if let Some(file) = payload.mls.as_ref().and_then(|m| m.file.clone()) {
            self.charge_api().await?;
            payload.attachments = attach(&self.state, &room, vec![file]).await?;
        }
        let ts = now_ms();
        payload.from = user.clone();
        payload.ts = ts;
        // Mentions of a new message (an edit, a delete or a reaction mentions nobody: it
        // changes one).
        if payload.change().is_none() {
            payload.mentions = Mentions::parse(&payload.body);
        }
        let bytes = serde_json::to_vec(&payload).map_err(|_| ApiError::internal())?;
        let slots = match &mut self.inflight {
            Some(slots) => slots,
            None => self
                .inflight
                .insert(self.state.admission.session_slots(&user, self.client)),
        };
        // The session's own acks free the slots this may wait for: they are polled meanwhile.
        let admit = self.state.admission.admit(slots);
        let permit = acks::during(&mut self.acks, admit).await?;
        let (state, link, r#ref) = (self.state.clone(), self.link.clone(), r#ref.clone());
        metrics::counter!("chatmesh_messages_in_total").increment(1);
        let started = Instant::now();
        let subject = in_subject(state.mesh.partitions, &room);
        let msg_id = match &commit {
            Commit::Publish { msg_id, .. } => msg_id.clone(),
            _ => dedupe_id(&user, &room, &payload.id),
        };
        // Queued now, in read order; only the wait for the PubAck is concurrent.
        let publish = Publish::send(&state.js, subject, msg_id, bytes.into(), &span).await;
        let waited = async move {
            let _permit = permit;
            let deadline = Duration::from_millis(state.cfg.publish_deadline_ms);
            let frame = match publish.acked(&state.js, deadline, &state.services).await {
                Ok(ack) if ack.duplicate && matches!(commit, Commit::Publish { .. }) => {
                    let epoch = match commit {
                        Commit::Publish { epoch, .. } => epoch,
                        _ => 0,
                    };
                    match mls::duplicate_commit(
                        &state,
                        &room,
                        ack.sequence,
                        &user,
                        &payload.id,
                        epoch,
                    )
                    .await
                    {
                        Ok(()) => ServerFrame::Ack {
                            r#ref: Cow::Borrowed(&r#ref),
                            room: Cow::Borrowed(&room),
                            id: Cow::Borrowed(&payload.id),
                            seq: ack.sequence,
                            ts: original_ts(&state, &room, ack.sequence).await.unwrap_or(ts),
                        }
                        .encode(),
                        Err(e) => error_frame(&r#ref, &e),
                    }
                }
                Ok(ack) => {
                    metrics::histogram!("chatmesh_publish_ack_seconds")
                        .record(started.elapsed().as_secs_f64());
                    // What one sends is read: the sender's cursor moves to it.
                    state.own_reads.sent(&room, &user, ack.sequence);
                    let ts = if ack.duplicate {
                        original_ts(&state, &room, ack.sequence).await.unwrap_or(ts)
                    } else {
                        ts
                    };
                    ServerFrame::Ack {
                        r#ref: Cow::Borrowed(&r#ref),
                        room: Cow::Borrowed(&room),
                        id: Cow::Borrowed(&payload.id),
                        seq: ack.sequence,
                        ts,
                    }
                    .encode()
                }
                Err(e) => error_frame(&r#ref, &e),
            };
            link.send(Out::Frame(frame.into())).await;
        };
        if span.is_none() {
            acks::push(&mut self.acks, waited);
        } else {
            acks::push(
                &mut self.acks,
                tracing::Instrument::instrument(waited, span),
            );
        }
        Ok(())
    }

    async fn history(
        &mut self,
        r#ref: &Ref,
        room: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<(), ApiError> {
        let page = self
            .state
            .access
            .read_history(self.user(), room, before, limit)
            .await?;
        let frame = ServerFrame::History {
            r#ref: Cow::Borrowed(r#ref),
            room: Cow::Borrowed(room),
            messages: Cow::Borrowed(&page.messages),
            more: page.more,
        };
        self.reply(frame.encode()).await;
        Ok(())
    }
}

impl Session {
    /// `typing`: members get `typing {room, user}`; never stored; at most
    /// `typing_per_second` per room (more are dropped quietly, as clients send them freely).
    async fn typing(&mut self, room: &str) -> Result<(), ApiError> {
        // A room whose access is not cached asks the worker: charged to the user's request
        // budget (a refusal is not cached, so typing in rooms that do not exist is too).
        let throttle = &self.state.throttle;
        let access = self
            .state
            .access
            .get_charged(room, self.user(), throttle)
            .await?;
        if !access.can_post() {
            return Err(ApiError::forbidden("only members may type here"));
        }
        if access.blocked {
            return Err(ApiError::forbidden(
                "the other member of this DM has blocked you",
            ));
        }
        let now = Instant::now();
        let cfg = &self.state.cfg;
        let every = Duration::from_secs(1) / cfg.typing_per_second.max(1);
        let typing = self.typing.get_or_insert_with(|| {
            let rate = cfg.typing_per_session_per_second;
            Box::new(Typing {
                last: HashMap::new(),
                all: RateLimiter::direct(quota(rate, rate)),
            })
        });
        if typing
            .last
            .get(room)
            .is_some_and(|t| now.duration_since(*t) < every)
            || typing.all.check().is_err()
        {
            metrics::counter!("chatmesh_events_dropped_total", "kind" => "typing").increment(1);
            return Ok(());
        }
        if typing.last.len() >= cfg.limits.max_rooms {
            typing.last.clear();
        }
        typing.last.insert(room.to_owned(), now);
        let frame = ServerFrame::Typing {
            room: Cow::Borrowed(room),
            user: Cow::Borrowed(self.user()),
        }
        .encode();
        self.event(room, frame).await
    }

    /// `read`: persists the cursor (it only moves forward) and tells members `receipt`
    /// (of this read's seq, even when it is below the cursor).
    /// The seq is clamped to the room's last message (a cursor beyond it would hide every
    /// later message from the unread count), and reads are coalesced (see
    /// [`crate::receipts`]): at most one cursor write and one receipt per interval.
    async fn read(&mut self, room: &str, seq: u64) -> Result<(), ApiError> {
        let user = self.user().to_owned();
        let access = self.state.access.get(room, &user).await?;
        if !access.can_post() {
            return Err(ApiError::forbidden("only members have read cursors"));
        }
        let subject = in_subject(self.state.mesh.partitions, room);
        let last = self
            .state
            .reader
            .last_seq(&subject)
            .await
            .map_err(|e| e.api())?;
        // Nothing retained (the room is empty, or all of it aged out of the stream): there
        // is nothing newer to mark read.
        let seq = seq.min(last);
        if seq == 0 {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        // A user the other member of a DM blocked still reads it (its cursor moves) but
        // tells the blocker nothing.
        let quiet = access.blocked;
        let offer = self.state.receipts.offer(room, &user, seq, quiet, now);
        let Decision::Now { persist } = offer else {
            metrics::counter!("chatmesh_events_dropped_total", "kind" => "receipt").increment(1);
            return Ok(());
        };
        if persist {
            let req = SetCursorRequest {
                room: room.to_owned(),
                user: user.clone(),
                seq,
            };
            self.state.services.ask::<SetCursor>(room, &req).await?;
        }
        if quiet {
            return Ok(());
        }
        self.event(room, receipts::receipt(room, &user, seq)).await
    }

    /// `presence`: who is online in the room (known locally when the room has local members).
    async fn presence(&mut self, r#ref: &Ref, room: &str) -> Result<(), ApiError> {
        let access = self.state.access.get(room, self.user()).await?;
        crate::access::readable(&access)?;
        let online = match self.state.fanout.get(room) {
            Some(r) => r.online(),
            None => {
                let timeout = Duration::from_millis(self.state.cfg.service_timeout_ms);
                let all = crate::presence::snapshot(&self.state.nats, room, timeout)
                    .await
                    .map_err(|e| e.api())?;
                all.into_values().flatten().collect()
            }
        };
        let frame = ServerFrame::Presence {
            r#ref: Cow::Borrowed(r#ref),
            room: Cow::Borrowed(room),
            online: online.iter().map(|u| Cow::Borrowed(u.as_str())).collect(),
        };
        self.reply(frame.encode()).await;
        Ok(())
    }

    /// Publishes an ephemeral event frame to every gateway with members in `room`.
    async fn event(&self, room: &str, frame: String) -> Result<(), ApiError> {
        receipts::publish(&self.state.nats, room, self.user(), frame)
            .await
            .map_err(|_| ApiError::unavailable("event not sent"))
    }
}

/// What a message carries about the files `ids` of `room` (each must be a complete file of
/// the room: `not_found` names the first that is not).
async fn attach(
    state: &AppState,
    room: &str,
    ids: Vec<String>,
) -> Result<Vec<chatmesh_protocol::files::Attachment>, ApiError> {
    if state.files.is_none() {
        return Err(ApiError::unavailable("file sharing is not enabled"));
    }
    let req = chatmesh_protocol::files::AttachRequest {
        room: room.to_owned(),
        ids,
    };
    let found = state
        .services
        .ask::<chatmesh_protocol::service::FileAttach>(room, &req)
        .await?;
    Ok(found.attachments)
}

/// The `ts` of an already stored message (a resend gets the original's).
async fn original_ts(state: &AppState, room: &str, seq: u64) -> Option<u64> {
    let payload = state.reader.get(room, seq).await.ok()?;
    serde_json::from_slice::<Payload>(&payload)
        .ok()
        .map(|p| p.ts)
}

/// The `pong` answering `ref`.
fn pong(r#ref: &Ref) -> String {
    ServerFrame::Pong {
        r#ref: Cow::Borrowed(r#ref),
    }
    .encode()
}
