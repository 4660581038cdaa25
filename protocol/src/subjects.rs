//! NATS subject names and room partitioning: the one place that maps rooms to subjects.
//!
//! Rooms are hashed into `P` partitions with FNV-1a 32 (the hash nats-server's
//! `{{partition}}` mapping uses). The gateway computes the partition itself and publishes to
//! `chat.in.<p>.<room>`; nats-server never re-maps subjects, so there is exactly one hash in
//! the system. `P` is fixed per deployment: changing it moves rooms to other subjects.
//!
//! A room id may name its home region (`us~general`, docs/REGIONS.md): its subjects then
//! carry the region as a token (`chat.in.us.<p>.us~general`) and its messages live in the
//! stream `CHAT_us`. Rooms without one (every room of a one-region deployment) keep the
//! four-token subjects of stream `CHAT`. Subjects of different token counts never overlap,
//! so the streams never capture each other's rooms. [`crate::regions::Topology`] maps the
//! resulting streams and partitions to the worker's partition numbers.

/// The JetStream stream that stores every chat message.
pub const STREAM: &str = "CHAT";
/// Subjects the stream captures (one region); every stream's, as a bus permission.
pub const IN_ALL: &str = "chat.in.>";
/// Where the stream republishes each stored message (core NATS, with sequence headers).
pub const LIVE_ALL: &str = "chat.live.>";
/// Default partition count.
pub const DEFAULT_PARTITIONS: u32 = 16;

/// The metadata key of a message stream under which its workers record the deployment's
/// `mesh.partitions` when they make or update it. Gateways and workers that start with
/// another count refuse to run ([`partitions_mismatch`]): they would publish and serve
/// rooms on other partitions than the rest of the mesh (two `prev` chains for one room, two
/// writers of one room's records).
pub const PARTITIONS_KEY: &str = "chatmesh.partitions";

/// Why a process configured with `partitions` must not use stream `stream`, whose metadata
/// records `recorded` under [`PARTITIONS_KEY`]; `None` when they agree or nothing is
/// recorded (a stream made before the record: its workers add it).
pub fn partitions_mismatch(
    stream: &str,
    recorded: Option<&str>,
    partitions: u32,
) -> Option<String> {
    let recorded = recorded?;
    if recorded.parse::<u32>().ok() == Some(partitions) {
        return None;
    }
    Some(format!(
        "stream {stream} belongs to a deployment with mesh.partitions = {recorded}, and this \
         process has {partitions}: every gateway and worker of a deployment needs the same \
         mesh.partitions (another count moves rooms to other subjects and partitions; \
         docs/OPERATIONS.md, \"Partitions\")"
    ))
}

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

/// Separates a room id's home region from the rest: `us~general`.
pub const HOME_SEP: char = '~';

/// The home region a room id names (`us` of `us~general`), `None` for a room without one
/// (it lives in stream `CHAT`). User names cannot contain the separator, so a user-keyed
/// service key never has a home region.
pub fn home_region(key: &str) -> Option<&str> {
    key.split_once(HOME_SEP).map(|(region, _)| region)
}

/// The stream of a home region: `CHAT` for none, `CHAT_<region>` otherwise.
pub fn region_stream(region: Option<&str>) -> String {
    match region {
        None => STREAM.to_owned(),
        Some(r) => format!("{STREAM}_{r}"),
    }
}

/// The name of the mirror of `stream` kept in `region` (read-only copy for local reads and
/// for reads while the stream's home region is cut off).
pub fn mirror_name(stream: &str, region: &str) -> String {
    format!("{stream}_M_{region}")
}

/// The stream that stores a room's messages.
pub fn stream_of(room: &str) -> String {
    region_stream(home_region(room))
}

/// `<kind>.<p>.<room>` or, for a room with a home region, `<kind>.<region>.<p>.<room>`.
fn room_subject(kind: &str, partitions: u32, room: &str) -> String {
    let p = partition(room, partitions);
    match home_region(room) {
        None => format!("{kind}.{p}.{room}"),
        Some(r) => format!("{kind}.{r}.{p}.{room}"),
    }
}

/// Subject a gateway publishes a room's messages to.
pub fn in_subject(partitions: u32, room: &str) -> String {
    room_subject("chat.in", partitions, room)
}

/// Core subject the stream republishes a room's messages on.
pub fn live_subject(partitions: u32, room: &str) -> String {
    room_subject("chat.live", partitions, room)
}

/// Subjects a region's stream captures. With regions, `CHAT` takes exactly four tokens
/// (`chat.in.*.*`) so that it does not overlap the regions' five-token subjects.
pub fn stream_subjects(region: Option<&str>, regions: bool) -> String {
    match (region, regions) {
        (None, false) => IN_ALL.to_owned(),
        (None, true) => "chat.in.*.*".to_owned(),
        (Some(r), _) => format!("chat.in.{r}.*.*"),
    }
}

/// Where a region's stream republishes what [`stream_subjects`] captures.
pub fn stream_republish(region: Option<&str>, regions: bool) -> String {
    match (region, regions) {
        (None, false) => LIVE_ALL.to_owned(),
        (None, true) => "chat.live.{{wildcard(1)}}.{{wildcard(2)}}".to_owned(),
        (Some(r), _) => format!("chat.live.{r}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"),
    }
}

/// Filter of one partition's stored messages in its region's stream (one durable consumer
/// each).
pub fn in_partition_filter(region: Option<&str>, p: u32) -> String {
    match region {
        None => format!("chat.in.{p}.>"),
        Some(r) => format!("chat.in.{r}.{p}.>"),
    }
}

/// The room of a `chat.in.[<region>.]<p>.<room>` or `chat.live.[<region>.]<p>.<room>`
/// subject.
pub fn room_of(subject: &str) -> Option<&str> {
    let tokens = subject.split('.').count();
    if !(4..=5).contains(&tokens) {
        return None;
    }
    subject.rsplit('.').next()
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

/// The KV buckets partition ownership runs on, for the workers of one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipBuckets {
    /// The registry of live workers.
    pub workers: String,
    /// Where the registry republishes its changes (`<this>.<worker id>`).
    pub republish: String,
    /// The partition leases.
    pub leases: String,
}

impl OwnershipBuckets {
    /// The buckets of the primary's workers (`None`: the one-region names) or of a region
    /// with workers of its own (`CHAT_WORKERS_<r>`, `chat.workers.<r>`, `CHAT_LEASES_<r>`,
    /// placed in that region so its workers keep their leases while the primary is cut off).
    pub fn of(region: Option<&str>) -> Self {
        match region {
            None => Self {
                workers: WORKERS_BUCKET.to_owned(),
                republish: WORKERS_REPUBLISH.to_owned(),
                leases: LEASES_BUCKET.to_owned(),
            },
            Some(r) => Self {
                workers: format!("{WORKERS_BUCKET}_{r}"),
                republish: format!("{WORKERS_REPUBLISH}.{r}"),
                leases: format!("{LEASES_BUCKET}_{r}"),
            },
        }
    }
}

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

/// The stream that keeps membership and account events (`chat.mem.*`, `chat.user.*`, as
/// published) for a while: a gateway that may have missed some (a NATS reconnect, a
/// slow-consumer drop) reads what it missed there instead of asking about every user of its
/// rooms. Its name does not start with `CHAT_`, so no region's stream can take it.
pub const EVENT_LOG: &str = "MESH_EVENTS";

/// Header of an event published again because the event log had not confirmed storing it:
/// it may be older than what a gateway knows since, so gateways ask the workers again about
/// what it names instead of applying it.
pub const LATE_HEADER: &str = "Chatmesh-Late";

/// Account changes of a user (token generation bumps by `logout_all`), published by the
/// worker that made them; gateways drop cached generations and close revoked sessions.
pub fn user_subject(user: &str) -> String {
    format!("chat.user.{user}")
}

/// Wildcard of all account changes (gateways subscribe once).
pub const USER_ALL: &str = "chat.user.*";

/// Request subject of a worker service operation for a partition: the room's (in its home
/// region, `chat.svc.<region>.<p>.<op>`) or the user's.
pub fn svc_subject(partitions: u32, key: &str, op: &str) -> String {
    let p = partition(key, partitions);
    match home_region(key) {
        None => format!("chat.svc.{p}.{op}"),
        Some(r) => format!("chat.svc.{r}.{p}.{op}"),
    }
}

/// Wildcard of every service operation of one partition (what its owner subscribes to).
pub fn svc_partition_wildcard(region: Option<&str>, p: u32) -> String {
    match region {
        None => format!("chat.svc.{p}.*"),
        Some(r) => format!("chat.svc.{r}.{p}.*"),
    }
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
    fn a_stream_of_another_partition_count_is_named_with_both_counts() {
        assert_eq!(partitions_mismatch("CHAT", None, 8), None);
        assert_eq!(partitions_mismatch("CHAT", Some("16"), 16), None);
        let why = partitions_mismatch("CHAT", Some("16"), 8).unwrap();
        assert!(why.contains("mesh.partitions = 16"), "{why}");
        assert!(why.contains("this process has 8"), "{why}");
        assert!(partitions_mismatch("CHAT", Some("sixteen"), 16).is_some());
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

    #[test]
    fn a_home_region_is_a_subject_token_and_a_stream() {
        let p = partition("us~general", 16);
        assert_eq!(
            in_subject(16, "us~general"),
            format!("chat.in.us.{p}.us~general")
        );
        assert_eq!(
            live_subject(16, "us~general"),
            format!("chat.live.us.{p}.us~general")
        );
        assert_eq!(room_of(&in_subject(16, "us~general")), Some("us~general"));
        assert_eq!(stream_of("us~general"), "CHAT_us");
        assert_eq!(stream_of("general"), "CHAT");
        assert_eq!(home_region("general"), None);
        assert_eq!(
            svc_subject(16, "us~general", "history"),
            format!("chat.svc.us.{p}.history")
        );
        assert_eq!(
            svc_partition_wildcard(Some("us"), p),
            format!("chat.svc.us.{p}.*")
        );
        assert_eq!(in_partition_filter(Some("us"), 3), "chat.in.us.3.>");
        assert_eq!(stream_subjects(Some("us"), true), "chat.in.us.*.*");
        assert_eq!(stream_subjects(None, true), "chat.in.*.*");
        assert_eq!(stream_subjects(None, false), IN_ALL);
        assert_eq!(
            stream_republish(Some("us"), true),
            "chat.live.us.{{wildcard(1)}}.{{wildcard(2)}}"
        );
        assert_eq!(room_of("chat.in.us.3.us~x.y"), None);
    }
}
