//! Who is online in a room, read from the gateways' presence bucket (`CHAT_PRESENCE`, keys
//! `<room>.<gateway>` holding the users joined to the room on that gateway) with one batch
//! direct get, the way a gateway reads a room's initial presence. Read only: presence is
//! the gateways' to write.
//!
//! Answers are kept for a short while per room ([`Presence::online`]), so a busy room costs
//! one read per `fresh_for`, not one per message; the cache is bounded. Rooms are read
//! independently, each by one read at a time: the checks of a room wait for its read in
//! flight, never for another room's (a read that hangs holds up only its own room's checks,
//! for at most its timeout).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chatmesh_protocol::subjects::PRESENCE_BUCKET;

/// Rooms whose presence is remembered at most.
const MAX_ROOMS: u64 = 10_000;
/// How long one batch direct get may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Users online in a room.
pub type Online = Arc<HashSet<String>>;

/// Presence reads with a short per-room memory; shared by the tasks that check (`&self`).
#[derive(Debug)]
pub struct Presence {
    nats: async_nats::Client,
    /// Each room's answer for `fresh_for`; a room being read has its one read in flight,
    /// which its other checks wait for (moka's per-key single flight), and no lock is held
    /// across a read.
    rooms: moka::future::Cache<String, Online>,
}

impl Presence {
    pub fn new(nats: async_nats::Client, fresh_for: Duration) -> Self {
        let rooms = moka::future::Cache::builder()
            .max_capacity(MAX_ROOMS)
            .time_to_live(fresh_for)
            .build();
        Self { nats, rooms }
    }

    /// The users with a session joined to `room` on any gateway, read at most `fresh_for`
    /// ago (see [`read`]).
    pub async fn online(&self, room: &str) -> Online {
        self.rooms
            .get_with_by_ref(room, async { Arc::new(read(&self.nats, room).await) })
            .await
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
