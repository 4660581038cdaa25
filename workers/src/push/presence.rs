//! Who is online in a room, read from the gateways' presence bucket (`CHAT_PRESENCE`, keys
//! `<room>.<gateway>` holding the users joined to the room on that gateway) with one batch
//! direct get, the way a gateway reads a room's initial presence. Read only: presence is
//! the gateways' to write.
//!
//! Answers are kept for a short while per room ([`Presence::online`]), so a busy room costs
//! one read per `fresh_for`, not one per message; the cache is bounded and simply emptied
//! when full.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chatmesh_protocol::subjects::PRESENCE_BUCKET;
use tokio::time::Instant;

/// Rooms whose presence is remembered at most.
const MAX_ROOMS: usize = 10_000;
/// How long one batch direct get may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Users online in a room.
pub type Online = Arc<HashSet<String>>;

/// Presence reads with a short per-room memory.
#[derive(Debug)]
pub struct Presence {
    nats: async_nats::Client,
    fresh_for: Duration,
    rooms: HashMap<String, (Instant, Online)>,
}

impl Presence {
    pub fn new(nats: async_nats::Client, fresh_for: Duration) -> Self {
        Self {
            nats,
            fresh_for,
            rooms: HashMap::new(),
        }
    }

    /// The users with a session joined to `room` on any gateway, read at most `fresh_for`
    /// ago (see [`read`]).
    pub async fn online(&mut self, room: &str) -> Online {
        if let Some((at, users)) = self.rooms.get(room) {
            if at.elapsed() < self.fresh_for {
                return users.clone();
            }
        }
        let users = Arc::new(read(&self.nats, room).await);
        if self.rooms.len() >= MAX_ROOMS {
            self.rooms.clear();
        }
        self.rooms
            .insert(room.to_owned(), (Instant::now(), users.clone()));
        users
    }
}

/// The users with a session joined to `room` now (no memory). A failed read counts as
/// nobody online: a push too many is better than a lost one (logged).
pub async fn read(nats: &async_nats::Client, room: &str) -> HashSet<String> {
    let filter = format!("$KV.{PRESENCE_BUCKET}.{room}.*");
    let ask = natskit::Batch::Last {
        filter: &filter,
        batch: 10_000,
    };
    let stream = format!("KV_{PRESENCE_BUCKET}");
    match natskit::direct_batch(nats, &stream, ask, READ_TIMEOUT).await {
        Ok(entries) => entries
            .iter()
            .flat_map(|e| serde_json::from_slice::<Vec<String>>(&e.payload).unwrap_or_default())
            .collect(),
        Err(e) => {
            tracing::warn!(room, error = %chatmesh_protocol::error::Chain(&e), "reading presence failed; counting nobody online");
            HashSet::new()
        }
    }
}
