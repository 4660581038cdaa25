//! One room on one gateway: its live subscription task and its local members.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chatmesh_protocol::frames::ServerFrame;
use chatmesh_protocol::message::ban_in;
use chatmesh_protocol::message::encode_message_frame;
use chatmesh_protocol::subjects::{evt_subject, in_subject, live_subject, presence_live};
use chatmesh_protocol::ApiError;
use futures::StreamExt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::RoomEnv;
use crate::jsread::JsReader;
use crate::link::{Out, SessionLink};
use crate::presence::{self, PresenceState};

/// Header naming the user an ephemeral event is from.
pub const EVENT_USER: &str = "Chatmesh-User";

/// Presence changes of a room go out (to the presence bucket, and as `presence_diff` to its
/// local members) at once, then at most once per this interval, with everything that
/// changed meanwhile: a member joining and leaving in a loop costs each member at most one
/// frame a second (and changes that undo each other within it none), not one per change.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);

/// When a room reads the stream's last seq for it again after it started (counted from its
/// start). In a NATS cluster the room's new subscription reaches the node leading the stream
/// a little after the room's own node confirmed it, and the starting seq may come from a
/// follower a little behind the leader: a message stored in that window is neither live here
/// nor counted before the first join, and in a room that then goes quiet no later message
/// would reveal it (live delivery finds a gap only from the next message's `prev`).
const SETTLE_CHECKS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

/// Messages read from JetStream per request while filling a gap.
const FILL_BATCH: usize = 256;
/// Pauses before reading a gap again when the read ended short (a mirror behind its origin).
const MIRROR_LAG_WAITS: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
];

#[derive(Debug)]
struct Member {
    link: Arc<SessionLink>,
    gen: u64,
}

#[derive(Debug, Default)]
struct State {
    members: Vec<Member>,
    closed: bool,
    presence: PresenceState,
}

type Readiness = Option<Result<(), ApiError>>;

/// A room with local members.
#[derive(Debug)]
pub struct Room {
    pub name: Arc<str>,
    state: RwLock<State>,
    /// Last seq dispatched; written only by the room task, under the state's read lock.
    last: AtomicU64,
    /// The highest seq the store said the room had when a session joined: the `prev` of a
    /// message whose subject was empty before it (everything earlier aged out of the stream),
    /// when this fan-out started after the age-out and dispatched nothing since.
    floor: AtomicU64,
    ready: watch::Receiver<Readiness>,
    stop: CancellationToken,
    /// Local membership changed: republish presence.
    dirty: Notify,
    /// [`RoomEnv::on_ban`].
    on_ban: super::OnBan,
    /// When this gateway's rooms last wrote their presence.
    writes: PresenceWrites,
}

/// When each room last wrote its presence on this gateway, for those that did within the
/// last [`PRESENCE_EVERY`]: a room that closes and starts again (its one session here
/// joining and leaving in a loop) takes up the quiet window where the last one left it, so
/// the presence bucket still gets about one write a second. Before, each new room wrote at
/// once and its stop wrote again: two writes a flip.
#[derive(Debug, Clone, Default)]
pub(super) struct PresenceWrites(
    Arc<std::sync::Mutex<std::collections::HashMap<Arc<str>, tokio::time::Instant>>>,
);

impl PresenceWrites {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Arc<str>, tokio::time::Instant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `room` wrote its presence now. Entries older than the window go when there are many.
    fn wrote(&self, room: &Arc<str>) {
        let now = tokio::time::Instant::now();
        let mut writes = self.lock();
        if writes.len() >= 1_024 {
            writes.retain(|_, at| now.duration_since(*at) < PRESENCE_EVERY);
        }
        writes.insert(room.clone(), now);
    }

    /// When `room` may write its presence next.
    fn quiet_until(&self, room: &str) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        self.lock()
            .get(room)
            .map_or(now, |at| (*at + PRESENCE_EVERY).max(now))
    }
}

/// Ends a room when its task ends, however it ends (a panic too): marked closed, so that no
/// session joins a room nobody feeds (the next join starts a new one), and, unless the room
/// was stopped, its members closed 1013 so that their clients reconnect and resume. Before,
/// a task that panicked left the room open with its members, and later joins, in it: none
/// of them got another live message.
struct Ended(Arc<Room>);

impl Drop for Ended {
    fn drop(&mut self) {
        let room = &self.0;
        let members = {
            let mut state = room.write();
            state.closed = true;
            match room.stop.is_cancelled() {
                true => Vec::new(),
                false => std::mem::take(&mut state.members),
            }
        };
        if !members.is_empty() {
            tracing::error!(room = %room.name, members = members.len(), "a room's fan-out ended unasked: its sessions are closed to resume");
            metrics::counter!("chatmesh_fanout_rooms_failed_total").increment(1);
        }
        for m in members {
            m.link.close(
                1013,
                "the room's live messages stopped: reconnect and resume",
            );
        }
    }
}

impl Room {
    pub(super) fn start(name: Arc<str>, env: RoomEnv, writes: PresenceWrites) -> Arc<Self> {
        let (ready_tx, ready) = watch::channel(None);
        let room = Arc::new(Self {
            name,
            state: RwLock::new(State::default()),
            last: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            ready,
            stop: CancellationToken::new(),
            dirty: Notify::new(),
            on_ban: env.on_ban.clone(),
            writes,
        });
        let task = room.clone();
        tokio::spawn(async move {
            let _ended = Ended(task.clone());
            task.run(env, ready_tx).await;
        });
        room
    }

    /// Waits until the subscription is live and the starting seq is known.
    pub async fn ready(&self) -> Result<(), ApiError> {
        let mut rx = self.ready.clone();
        let outcome = match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone().unwrap_or_else(|| Err(ApiError::internal())),
            Err(_) => Err(ApiError::unavailable("room subscription ended")),
        };
        outcome
    }

    pub fn is_closed(&self) -> bool {
        self.read().closed
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a member; `None` if the room closed meanwhile (the caller starts a new one).
    pub(super) fn add(
        &self,
        link: &Arc<SessionLink>,
        gen: u64,
        floor: u64,
        since: Option<u64>,
        joined: &(dyn Fn(u64) -> Bytes + Sync),
    ) -> Option<u64> {
        let mut state = self.write();
        if state.closed {
            return None;
        }
        self.floor.fetch_max(floor, Ordering::AcqRel);
        let last = self.last.load(Ordering::Acquire).max(floor);
        if let Some(i) = state.members.iter().position(|m| m.link.id == link.id) {
            let old = state.members.remove(i);
            state.presence.session_left(user_of(&old.link));
        }
        // Live frames are held until the session releases them: after the replay of a join
        // with `since`, and after the access re-check of any join (a ban dispatched while it
        // runs must not reach the session).
        link.offer(Out::Track {
            room: self.name.clone(),
            gen,
            // A `since` beyond the room's last message (a stale or corrupt cursor) would
            // drop every live message up to it: what is sent next is above `last`.
            last: since.map_or(last, |since| since.min(last)),
            replay: true,
        });
        link.offer(Out::Frame(joined(last)));
        state.presence.session_joined(user_of(link));
        state.members.push(Member {
            link: link.clone(),
            gen,
        });
        self.dirty.notify_one();
        Some(last)
    }

    pub(super) fn remove(&self, session: u64) {
        let mut state = self.write();
        if let Some(i) = state.members.iter().position(|m| m.link.id == session) {
            let old = state.members.remove(i);
            state.presence.session_left(user_of(&old.link));
            self.dirty.notify_one();
        }
    }

    /// Whether session `session` is a member here (not left, not evicted).
    pub(super) fn holds(&self, session: u64) -> bool {
        self.read().members.iter().any(|m| m.link.id == session)
    }

    /// Everyone online in the room, as this gateway knows it.
    pub fn online(&self) -> BTreeSet<String> {
        self.read().presence.current()
    }

    /// The users with a session in the room on this gateway.
    pub(super) fn local_users(&self) -> BTreeSet<String> {
        self.read().presence.local_users()
    }

    /// Takes every session of `user` out of the room (membership revoked) and tells each
    /// `left`; returns how many there were.
    pub(super) fn evict(&self, user: &str) -> usize {
        let mut evicted = Vec::new();
        {
            let mut state = self.write();
            state.members.retain(|m| {
                let hit = m.link.user.get().is_some_and(|u| &**u == user);
                if hit {
                    evicted.push((m.link.clone(), m.gen));
                }
                !hit
            });
            for _ in &evicted {
                state.presence.session_left(user);
            }
        }
        if evicted.is_empty() {
            return 0;
        }
        self.dirty.notify_one();
        let left = Bytes::from(
            ServerFrame::Left {
                r#ref: Cow::Owned(None),
                room: Cow::Borrowed(&self.name),
            }
            .encode(),
        );
        for (link, gen) in &evicted {
            link.offer(Out::Untrack {
                room: self.name.clone(),
                gen: *gen,
            });
            link.offer(Out::Frame(left.clone()));
        }
        evicted.len()
    }

    /// Marks the room closed if it has no members; true if it is closed now.
    pub(super) fn close_if_empty(&self) -> bool {
        let mut state = self.write();
        if state.members.is_empty() && !state.closed {
            state.closed = true;
            self.stop.cancel();
        }
        state.closed
    }

    pub(super) fn stop(&self) {
        self.write().closed = true;
        self.stop.cancel();
    }

    async fn run(self: Arc<Self>, env: RoomEnv, ready: watch::Sender<Readiness>) {
        let stored = in_subject(env.partitions, &self.name);
        let subs = self.subscribe(&env, &stored).await;
        let (mut live, mut events, mut pres) = match subs {
            Ok(subs) => subs,
            Err(e) => {
                self.write().closed = true;
                let _ = ready.send(Some(Err(e)));
                return;
            }
        };
        let _ = ready.send(Some(Ok(())));
        let started = tokio::time::Instant::now();
        let mut settle_checks = SETTLE_CHECKS.iter();
        let settle = tokio::time::sleep(SETTLE_CHECKS[0]);
        tokio::pin!(settle);
        let mut settling = settle_checks.next().is_some();
        let mut published = BTreeSet::new();
        let mut refresh = tokio::time::interval(env.presence_ttl / 3);
        let stats = env.nats.statistics();
        let mut seen_losses = natskit::lossy::losses(&stats);
        // A room started after a reconnect, before the re-check, waits for it too.
        let mut cleared = *env.rechecked.borrow();
        // Presence: a change waits for `quiet_until` (`PRESENCE_EVERY` after the last one
        // went out); `due` while one waits.
        let mut quiet_until = self.writes.quiet_until(&self.name);
        let mut due = false;
        let flush = tokio::time::sleep_until(quiet_until);
        tokio::pin!(flush);
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                msg = live.next() => match msg {
                    Some(msg) => {
                        self.await_recheck(&env, &stats, &mut cleared).await;
                        self.on_message(&env.reader, &stored, msg).await
                    }
                    None => break,
                },
                () = &mut settle, if settling => {
                    self.await_recheck(&env, &stats, &mut cleared).await;
                    self.catch_up(&env.reader, &stored, CatchUp::Start).await;
                    match settle_checks.next() {
                        Some(at) => settle.as_mut().reset(started + *at),
                        None => settling = false,
                    }
                }
                Some(msg) = events.next() => self.on_event(msg),
                Some(msg) = pres.next() => {
                    if self.on_presence(&env, &msg) && !due {
                        due = true;
                        flush.as_mut().reset(quiet_until);
                    }
                }
                _ = self.dirty.notified(), if !due => {
                    due = true;
                    flush.as_mut().reset(quiet_until);
                }
                () = &mut flush, if due => {
                    due = false;
                    let local = self.read().presence.local_users();
                    if local != published {
                        self.publish_presence(&env, &local).await;
                        published = local;
                    }
                    self.announce();
                    quiet_until = tokio::time::Instant::now() + PRESENCE_EVERY;
                }
                _ = refresh.tick() => {
                    if !published.is_empty() {
                        self.publish_presence(&env, &published).await;
                    }
                    // Another gateway's key unrefreshed for a TTL: its expiry was missed.
                    let now = std::time::Instant::now();
                    if self.write().presence.expire(now, env.presence_ttl) {
                        self.announce();
                    }
                    // NATS reconnected (or dropped a slow subscription's messages) since the
                    // last look: what was stored meanwhile may never have come live, and in a
                    // room that then went quiet no later message would reveal the gap.
                    let now_losses = natskit::lossy::losses(&stats);
                    if now_losses != seen_losses {
                        seen_losses = now_losses;
                        self.await_recheck(&env, &stats, &mut cleared).await;
                        self.catch_up(&env.reader, &stored, CatchUp::Reconnect).await;
                    }
                }
            }
        }
        if !published.is_empty() {
            self.publish_presence(&env, &BTreeSet::new()).await;
        }
        let _ = live.unsubscribe().await;
        self.write().closed = true;
    }

    async fn publish_presence(&self, env: &RoomEnv, users: &BTreeSet<String>) {
        let ttl = env.presence_ttl;
        self.writes.wrote(&self.name);
        if let Err(e) = presence::publish(&env.js, &self.name, &env.gateway, users, ttl).await {
            tracing::warn!(room = %self.name, error = %crate::error::Chain(&e), "presence update failed");
        }
    }

    /// Another gateway's presence of this room changed (or expired): kept at once (for
    /// `presence` requests); true when it is to be announced.
    fn on_presence(&self, env: &RoomEnv, msg: &async_nats::Message) -> bool {
        let Some(gw) = msg.subject.as_str().rsplit('.').next() else {
            return false;
        };
        if gw == &*env.gateway {
            return false;
        }
        let users = presence::parse_users(&msg.payload);
        self.write()
            .presence
            .set_remote(gw, users, std::time::Instant::now());
        true
    }

    /// Tells local members who came and went since the last announcement.
    fn announce(&self) {
        let mut state = self.write();
        let diff = state.presence.diff();
        if diff.joined.is_empty() && diff.left.is_empty() {
            return;
        }
        let frame = ServerFrame::PresenceDiff {
            room: Cow::Borrowed(&self.name),
            joined: borrowed(&diff.joined),
            left: borrowed(&diff.left),
        };
        let frame = Bytes::from(frame.encode());
        for m in &state.members {
            m.link.offer(Out::Frame(frame.clone()));
        }
    }

    /// An ephemeral event (typing, receipt): its payload is the client frame, sent to every
    /// local member but the sender's own sessions for typing.
    fn on_event(&self, msg: async_nats::Message) {
        let from = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(EVENT_USER))
            .map(|v| v.as_str().to_owned());
        let skip_self = msg.payload.starts_with(b"{\"type\":\"typing\"");
        let state = self.read();
        for m in &state.members {
            if skip_self && from.as_deref() == m.link.user.get().map(|u| &**u) {
                continue;
            }
            m.link.offer(Out::Frame(msg.payload.clone()));
        }
    }

    async fn subscribe(
        &self,
        env: &RoomEnv,
        stored: &str,
    ) -> Result<
        (
            async_nats::Subscriber,
            async_nats::Subscriber,
            async_nats::Subscriber,
        ),
        ApiError,
    > {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!(room = %self.name, error = %e, "{what}");
            ApiError::unavailable("live delivery is unavailable, try again")
        };
        let nats = &env.nats;
        let live = nats
            .subscribe(live_subject(env.partitions, &self.name))
            .await
            .map_err(|e| unavailable("room subscribe failed", &e))?;
        let events = nats
            .subscribe(evt_subject(&self.name))
            .await
            .map_err(|e| unavailable("room subscribe failed", &e))?;
        let pres = nats
            .subscribe(presence_live(&self.name))
            .await
            .map_err(|e| unavailable("room subscribe failed", &e))?;
        // The server must know the subscription before we read the starting seq, or a
        // message stored in between would be neither live nor "before the join".
        nats.flush()
            .await
            .map_err(|e| unavailable("flush failed", &e))?;
        let last = env
            .reader
            .last_seq(stored)
            .await
            .map_err(|e| unavailable("reading the room's last seq failed", &e))?;
        self.last.store(last, Ordering::Release);
        match presence::snapshot(nats, &self.name, env.timeout).await {
            Ok(all) => {
                let mut state = self.write();
                let now = std::time::Instant::now();
                for (gw, users) in all {
                    if gw != *env.gateway {
                        state.presence.set_remote(&gw, users, now);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(room = %self.name, error = %crate::error::Chain(&e), "presence snapshot failed")
            }
        }
        Ok((live, events, pres))
    }

    async fn on_message(&self, reader: &JsReader, stored: &str, msg: async_nats::Message) {
        let header =
            |name: &str| -> Option<u64> { msg.headers.as_ref()?.get(name)?.as_str().parse().ok() };
        let (Some(seq), Some(prev)) = (header("Nats-Sequence"), header("Nats-Last-Sequence"))
        else {
            tracing::warn!(room = %self.name, "live message without sequence headers");
            return;
        };
        let last = self.last.load(Ordering::Acquire);
        if seq <= last {
            return;
        }
        if prev > last {
            self.fill_gap(reader, stored, last, seq, prev).await;
        }
        // The subject was empty before this message: everything earlier aged out of the
        // stream (trims keep a room's last message). It follows the room's last message
        // all the same, the one this fan-out dispatched or the store had when a session
        // joined, as its stored copy says.
        let prev = match prev {
            0 => last.max(self.floor.load(Ordering::Acquire)),
            prev => prev,
        };
        if let Some(stored_at) = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Time-Stamp"))
            .and_then(|v| OffsetDateTime::parse(v.as_str(), &Rfc3339).ok())
        {
            let waited = (OffsetDateTime::now_utc() - stored_at).as_seconds_f64();
            metrics::histogram!("chatmesh_fanout_seconds").record(waited.max(0.0));
        }
        if natskit::trace::enabled() {
            // The send's trace goes on here: this gateway hands the message to its sessions.
            let span = tracing::info_span!("fanout", room = %self.name, seq, sessions = self.read().members.len());
            natskit::trace::continue_from(&span, msg.headers.as_ref());
            let _entered = span.enter();
            self.dispatch(seq, prev, &msg.payload);
            return;
        }
        self.dispatch(seq, prev, &msg.payload);
    }

    /// Returns once room access and token generations have been re-checked after the latest
    /// NATS reconnect (or slow-consumer drop), or after [`RoomEnv::recheck_hold`] (a
    /// re-check of many users that waits for slow workers must not stop the room for long):
    /// a removal or revocation whose event was lost meanwhile takes effect before the room
    /// delivers what was stored after it (two atomic loads and a compare per message while
    /// nothing was lost). `cleared` is the count of losses ([`natskit::lossy::losses`]) the
    /// room has already waited for.
    async fn await_recheck(
        &self,
        env: &RoomEnv,
        stats: &async_nats::Statistics,
        cleared: &mut u64,
    ) {
        let losses = natskit::lossy::losses(stats);
        if losses <= *cleared {
            return;
        }
        if env.recheck_hold.is_zero() {
            *cleared = losses;
            return;
        }
        let mut rechecked = env.rechecked.clone();
        let done = rechecked.wait_for(|&done| done >= losses);
        match tokio::time::timeout(env.recheck_hold, done).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {} // the gateway is stopping
            Err(_) => {
                metrics::counter!("chatmesh_fanout_recheck_waits_expired_total").increment(1);
                tracing::warn!(room = %self.name, "re-checks after a NATS reconnect are slow; delivering without them");
            }
        }
        *cleared = losses;
    }

    /// Delivers what the stream holds for the room beyond what was dispatched: after a
    /// reconnect of the bus (the live messages published meanwhile were lost), or shortly
    /// after the room started ([`SETTLE_CHECKS`]).
    async fn catch_up(&self, reader: &JsReader, stored: &str, why: CatchUp) {
        let stream_last = match reader.last_seq(stored).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::warn!(room = %self.name, error = %crate::error::Chain(&e), after = why.as_str(), "reading the room's last seq to catch up failed");
                return;
            }
        };
        let last = self.last.load(Ordering::Acquire);
        if stream_last > last {
            metrics::counter!("chatmesh_live_catch_ups_total", "after" => why.as_str())
                .increment(1);
            self.fill_gap(reader, stored, last, stream_last + 1, stream_last)
                .await;
        }
    }

    /// Delivers the messages in (last, until) from JetStream: what core NATS dropped.
    /// With regions the answer may come from this region's mirror of the room's home
    /// stream, which can lag behind it (docs/REGIONS.md, 3): when it ends below `prev`, the
    /// read is retried a few times (1.5 s in all) before the clients are left to see the gap.
    async fn fill_gap(
        &self,
        reader: &JsReader,
        stored: &str,
        mut last: u64,
        until: u64,
        prev: u64,
    ) {
        metrics::counter!("chatmesh_live_gaps_total").increment(1);
        let mut lag_waits = MIRROR_LAG_WAITS.iter();
        loop {
            loop {
                let batch = match reader.batch(stored, last + 1, FILL_BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!(room = %self.name, error = %crate::error::Chain(&e), "gap fill failed; clients will see the gap in prev");
                        return;
                    }
                };
                let full = batch.len() == FILL_BATCH;
                // The stream lets a room's messages go oldest first: if it no longer holds
                // the last one dispatched, what it answered may not follow it (the store
                // writer trimmed what lay between). Nothing of it is dispatched then: the
                // frame that showed the gap goes out with its true `prev`, and the clients
                // fill the gap from the store (history, or a join with `since`).
                if last > 0 && !batch.is_empty() && !reader.holds(stored, last).await {
                    metrics::counter!("chatmesh_live_gap_fills_let_go_total").increment(1);
                    tracing::debug!(room = %self.name, last, "the stream let go of where the gap fill read from; clients will see the gap in prev");
                    return;
                }
                for r in batch {
                    if r.seq >= until {
                        return;
                    }
                    // Nothing dispatched yet and the subject was empty when the room started
                    // (everything earlier aged out): the first follows the floor, as live.
                    let prev = match last {
                        0 => self.floor.load(Ordering::Acquire).min(r.seq - 1),
                        last => last,
                    };
                    self.dispatch(r.seq, prev, &r.payload);
                    last = r.seq;
                }
                if !full {
                    break;
                }
            }
            if last >= prev {
                return;
            }
            let Some(wait) = lag_waits.next() else {
                tracing::warn!(room = %self.name, last, prev, "gap fill ended short (a lagging mirror?); clients will see the gap in prev");
                return;
            };
            metrics::counter!("chatmesh_live_gap_retries_total").increment(1);
            tokio::time::sleep(*wait).await;
        }
    }

    fn dispatch(&self, seq: u64, prev: u64, payload: &[u8]) {
        // A ban's event: the banned user's sessions here leave the room before it, so
        // neither it nor anything stored after it reaches them, whenever the membership
        // event that also evicts them ([`crate::access`]) arrives.
        // The gateway's cached access is dropped first, so a session told `left` cannot join
        // again on an answer from before the ban. A room left empty closes (the membership
        // event, should it come, finds it closed and takes it off the gateway's list).
        if let Some(user) = ban_in(payload) {
            self.on_ban.call(&self.name, &user);
            let evicted = self.evict(&user);
            metrics::counter!("chatmesh_fanout_ban_evictions_total").increment(evicted as u64);
            if evicted > 0 {
                self.close_if_empty();
            }
        }
        let state = self.read();
        let Some(frame) = encode_message_frame(&self.name, seq, prev, payload) else {
            tracing::warn!(room = %self.name, seq, "stored payload is not a JSON object; skipped");
            self.last.store(seq, Ordering::Release);
            return;
        };
        for m in &state.members {
            m.link.offer(Out::Live {
                room: self.name.clone(),
                gen: m.gen,
                seq,
                frame: frame.clone(),
            });
        }
        self.last.store(seq, Ordering::Release);
        metrics::counter!("chatmesh_deliveries_total").increment(state.members.len() as u64);
        metrics::counter!("chatmesh_messages_out_total").increment(1);
    }
}

/// Why a room reads the stream's last seq for it outside of live delivery.
#[derive(Debug, Clone, Copy)]
enum CatchUp {
    /// A NATS reconnect or slow-consumer drop.
    Reconnect,
    /// The room's start ([`SETTLE_CHECKS`]).
    Start,
}

impl CatchUp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reconnect => "reconnect",
            Self::Start => "start",
        }
    }
}

fn user_of(link: &SessionLink) -> &str {
    link.user.get().map(|u| &**u).unwrap_or("")
}

/// Borrowed names for a frame.
fn borrowed(users: &[String]) -> Vec<Cow<'_, str>> {
    users.iter().map(|u| Cow::Borrowed(u.as_str())).collect()
}
