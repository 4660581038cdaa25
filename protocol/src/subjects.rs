//! NATS subject names and room partitioning: the one place that maps rooms to subjects.
//!
//! Rooms are hashed into `P` partitions with FNV-1a 32 (the hash nats-server's
//! `{{partition}}` mapping uses). The gateway computes the partition itself and publishes to
//! `chat.in.<p>.<room>`; nats-server never re-maps subjects, so there is exactly one hash in
//! the system. `P` is fixed per deployment: changing it moves rooms to other subjects.

/// The JetStream stream that stores every chat message.
pub const STREAM: &str = "CHAT";
/// Subjects the stream captures.
pub const IN_ALL: &str = "chat.in.>";
/// Where the stream republishes each stored message (core NATS, with sequence headers).
pub const LIVE_ALL: &str = "chat.live.>";
/// Default partition count.
pub const DEFAULT_PARTITIONS: u32 = 16;

/// FNV-1a 32-bit hash.
pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The partition of a room (or, for user-keyed services, a user name).
pub fn partition(key: &str, partitions: u32) -> u32 {
    fnv1a32(key.as_bytes()) % partitions.max(1)
}

/// Subject a gateway publishes a room's messages to.
pub fn in_subject(partitions: u32, room: &str) -> String {
    format!("chat.in.{}.{room}", partition(room, partitions))
}

/// Core subject the stream republishes a room's messages on.
pub fn live_subject(partitions: u32, room: &str) -> String {
    format!("chat.live.{}.{room}", partition(room, partitions))
}

/// Filter of one partition's stored messages (one durable consumer each).
pub fn in_partition_filter(p: u32) -> String {
    format!("chat.in.{p}.>")
}

/// The room of a `chat.in.<p>.<room>` or `chat.live.<p>.<room>` subject.
pub fn room_of(subject: &str) -> Option<&str> {
    let mut it = subject.splitn(4, '.');
    let (_, _, _, room) = (it.next()?, it.next()?, it.next()?, it.next()?);
    Some(room)
}

/// Ephemeral events of a room (typing, receipts, presence diffs): core NATS, never stored.
pub fn evt_subject(room: &str) -> String {
    format!("chat.evt.{room}")
}

/// KV bucket of presence: key `<room>.<gateway>` → the users of that room on that gateway,
/// each key with a TTL its gateway refreshes (a crashed gateway's users expire).
pub const PRESENCE_BUCKET: &str = "CHAT_PRESENCE";

/// Core subjects the presence bucket republishes on: `chat.pres.<room>.<gateway>`.
pub const PRESENCE_REPUBLISH: &str = "chat.pres";

/// KV bucket of live workers (one key per worker with a TTL), republished on
/// [`WORKERS_REPUBLISH`]`.<id>`.
pub const WORKERS_BUCKET: &str = "CHAT_WORKERS";
/// Core subjects the workers bucket republishes on.
pub const WORKERS_REPUBLISH: &str = "chat.workers";
/// KV bucket of partition leases (key `p<N>`).
pub const LEASES_BUCKET: &str = "CHAT_LEASES";

/// The KV key of a room's presence on one gateway.
pub fn presence_key(room: &str, gateway: &str) -> String {
    format!("{room}.{gateway}")
}

/// Core subject the presence bucket republishes every change (and expiry) of a room on.
pub fn presence_live(room: &str) -> String {
    format!("chat.pres.{room}.*")
}

/// Membership changes of a room, published by the worker that made them.
pub fn member_subject(room: &str) -> String {
    format!("chat.mem.{room}")
}

/// Wildcard of all membership changes (gateways subscribe once).
pub const MEMBER_ALL: &str = "chat.mem.*";

/// Account changes of a user (token generation bumps by `logout_all`), published by the
/// worker that made them; gateways drop cached generations and close revoked sessions.
pub fn user_subject(user: &str) -> String {
    format!("chat.user.{user}")
}

/// Wildcard of all account changes (gateways subscribe once).
pub const USER_ALL: &str = "chat.user.*";

/// Request subject of a worker service operation for a partition.
pub fn svc_subject(partitions: u32, key: &str, op: &str) -> String {
    format!("chat.svc.{}.{op}", partition(key, partitions))
}

/// Wildcard of every service operation of one partition (what its owner subscribes to).
pub fn svc_partition_wildcard(p: u32) -> String {
    format!("chat.svc.{p}.*")
}

/// Durable consumer of the push notifier (every message, all partitions; docs/PUSH.md).
pub const PUSH_CONSUMER: &str = "push";

/// Durable consumer name of a partition's store writer.
pub fn store_consumer(p: u32) -> String {
    format!("store-p{p}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn subjects_round_trip() {
        let s = in_subject(16, "general");
        assert!(s.starts_with("chat.in."));
        assert_eq!(room_of(&s), Some("general"));
        assert_eq!(room_of(&live_subject(16, "x-y_z")), Some("x-y_z"));
        assert_eq!(room_of("chat.in"), None);
        assert!(partition("general", 16) < 16);
        assert_eq!(partition("anything", 1), 0);
    }
}
