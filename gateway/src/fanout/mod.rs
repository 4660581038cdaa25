//! Room fan-out on one gateway: ONE core NATS subscription per room that has local members,
//! the client frame encoded once per message, and a non-blocking offer of it to every local
//! member's bounded queue.
//!
//! Each room has a task that reads `chat.live.<p>.<room>` (the stream's republish, carrying
//! `Nats-Sequence` and `Nats-Last-Sequence`). It keeps the last seq it dispatched; a message
//! whose `prev` is above it means core NATS dropped something (it is at-most-once), and the
//! task fills the gap from JetStream before dispatching, so what every member receives is the
//! room's complete, ordered stream.

mod room;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_protocol::ApiError;

use crate::jsread::JsReader;
use crate::link::SessionLink;
pub use room::{Room, EVENT_USER};

/// The rooms with local members.
#[derive(Debug, Clone)]
pub struct Fanout {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    env: RoomEnv,
    rooms: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    /// When the rooms last wrote their presence (a room started again keeps the pace).
    writes: room::PresenceWrites,
}

/// What every room task of a gateway needs.
#[derive(Debug, Clone)]
pub struct RoomEnv {
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub reader: JsReader,
    pub partitions: u32,
    /// This gateway's id (its presence keys).
    pub gateway: Arc<str>,
    pub presence_ttl: Duration,
    /// Timeout of reads at room start.
    pub timeout: Duration,
    /// The count of NATS losses ((re)connects, slow-consumer drops:
    /// [`natskit::lossy::losses`]) after which room access was last re-checked
    /// ([`crate::access::spawn_member_listener`]). While the connection's own count is
    /// higher, membership events may have been lost: a room holds its messages until the
    /// re-check has run, at most `recheck_hold`. A fan-out without that re-check
    /// (tests of the fan-out alone) passes `u64::MAX`.
    pub rechecked: tokio::sync::watch::Receiver<u64>,
    /// `gateway.recheck_hold_ms`: the longest such hold; zero holds nothing.
    pub recheck_hold: Duration,
    /// Told (room, user) when a room's fan-out reaches a ban's event, before it evicts the
    /// user's sessions: the gateway drops its cached access, so the evicted cannot join
    /// again on an answer given before the ban.
    pub on_ban: OnBan,
}

/// See [`RoomEnv::on_ban`]; the default does nothing (tests of the fan-out alone).
#[derive(Clone, Default)]
pub struct OnBan(Option<Arc<BanHook>>);

type BanHook = dyn Fn(&str, &str) + Send + Sync;

impl OnBan {
    pub fn new(f: impl Fn(&str, &str) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    pub(crate) fn call(&self, room: &str, user: &str) {
        if let Some(f) = &self.0 {
            f(room, user);
        }
    }
}

impl std::fmt::Debug for OnBan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OnBan(set)"
        } else {
            "OnBan(none)"
        })
    }
}

impl Fanout {
    pub fn new(env: RoomEnv) -> Self {
        Self {
            inner: Arc::new(Inner {
                env,
                rooms: Mutex::new(HashMap::new()),
                writes: room::PresenceWrites::default(),
            }),
        }
    }

    /// The room if it has local members (its presence is known here).
    pub fn get(&self, name: &str) -> Option<Arc<Room>> {
        let rooms = self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.get(name).filter(|r| !r.is_closed()).cloned()
    }

    fn room(&self, name: &str) -> Arc<Room> {
        let mut rooms = self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(room) = rooms.get(name) {
            if !room.is_closed() {
                return room.clone();
            }
        }
        let room = Room::start(
            Arc::from(name),
            self.inner.env.clone(),
            self.inner.writes.clone(),
        );
        rooms.insert(room.name.clone(), room.clone());
        metrics::gauge!("chatmesh_rooms_subscribed").set(rooms.len() as f64);
        room
    }

    /// Adds a session to a room. Under the room's lock it queues `Track` and then `joined`
    /// (built by `joined(last_seq)`), so no live frame can precede them, and returns the
    /// `last_seq` the join starts from (at least `floor`): every message above it reaches
    /// the session live, and the room's name (shared, so sessions need no copy of it). With `since`, live frames are held until the replay of
    /// (since, last_seq] is done.
    pub async fn join(
        &self,
        name: &str,
        link: &Arc<SessionLink>,
        gen: u64,
        floor: u64,
        since: Option<u64>,
        joined: &(dyn Fn(u64) -> bytes::Bytes + Sync),
    ) -> Result<(u64, Arc<str>), ApiError> {
        // A room emptied and closed between lookup and add is replaced by a fresh one.
        for _ in 0..3 {
            let room = self.room(name);
            room.ready().await?;
            if let Some(last) = room.add(link, gen, floor, since, joined) {
                return Ok((last, room.name.clone()));
            }
        }
        Err(ApiError::unavailable("room is restarting, try again"))
    }

    /// Removes a session from a room; the room's subscription ends with its last member.
    pub fn leave(&self, name: &str, session: u64) {
        let room = {
            let rooms = self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner());
            rooms.get(name).cloned()
        };
        if let Some(room) = room {
            room.remove(session);
            self.reap(&room);
        }
    }

    /// Whether session `session` is in room `name` on this gateway (an evicted one is not).
    pub fn holds(&self, name: &str, session: u64) -> bool {
        let rooms = self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.get(name).is_some_and(|room| room.holds(session))
    }

    /// Removes every session of `user` from a room (membership revoked) and tells them
    /// `left`.
    pub fn evict_user(&self, name: &str, user: &str) {
        let room = {
            let rooms = self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner());
            rooms.get(name).cloned()
        };
        if let Some(room) = room {
            room.evict(user);
            self.reap(&room);
        }
    }

    /// Every (room, user) with a session here.
    pub fn local_users(&self) -> Vec<(Arc<str>, String)> {
        let rooms: Vec<Arc<Room>> = {
            let rooms = self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner());
            rooms.values().cloned().collect()
        };
        let mut out = Vec::new();
        for room in rooms {
            for user in room.local_users() {
                out.push((room.name.clone(), user));
            }
        }
        out
    }

    fn reap(&self, room: &Arc<Room>) {
        let mut rooms = self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if room.close_if_empty() {
            if rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room)) {
                rooms.remove(&room.name);
            }
            metrics::gauge!("chatmesh_rooms_subscribed").set(rooms.len() as f64);
        }
    }

    /// Stops every room task (drain).
    pub fn shutdown(&self) {
        let rooms = self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner());
        for room in rooms.values() {
            room.stop();
        }
    }
}
