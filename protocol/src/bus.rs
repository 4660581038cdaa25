//! Who may do what on the NATS bus: one role per kind of service, each with the subjects it
//! may publish and subscribe to, and the inbox prefix its replies arrive under. nats-server
//! enforces these lists (see `chatmesh nats-auth`, which renders them as an `authorization`
//! block), so a leaked gateway key cannot consume the stream or answer service requests, a
//! leaked worker key cannot speak for a user, and a client without a key cannot connect.
//!
//! Every list is built from the subject names in [`crate::subjects`], so a new subject that
//! is not added here is refused by the server — the tests of the bus fail first.

use crate::service::{GetAccess, GetProfile, ListMembers, Op};
use crate::subjects::{
    mirror_name, region_stream, OwnershipBuckets, EVENT_LOG, IN_ALL, LIVE_ALL, MEMBER_ALL,
    PRESENCE_BUCKET, PRESENCE_REPUBLISH, STREAM, USER_ALL,
};

/// The kinds of bus users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Terminates client sessions: publishes sends, calls services, reads live traffic.
    Gateway,
    /// Consumes the stream into the store and answers service requests.
    Worker,
    /// Coordinates load-test generators (`chatmesh-loadtest --coordinator`).
    Loadtest,
    /// Operators' key: everything (the `nats` CLI, inspection, repairs).
    Admin,
}

impl Role {
    /// Every role, in the order credentials are generated.
    pub const ALL: [Role; 4] = [Role::Gateway, Role::Worker, Role::Loadtest, Role::Admin];

    /// The role's name: its credential file stem and NATS user name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Worker => "worker",
            Role::Loadtest => "loadtest",
            Role::Admin => "admin",
        }
    }

    /// Prefix of this role's reply inboxes (async-nats `custom_inbox_prefix`): each role may
    /// subscribe only to its own, so no role can read another's replies.
    pub fn inbox_prefix(self) -> &'static str {
        match self {
            Role::Gateway => "_INBOX_gateway",
            Role::Worker => "_INBOX_worker",
            Role::Loadtest => "_INBOX_loadtest",
            Role::Admin => "_INBOX",
        }
    }

    /// What this role may do in a one-region deployment; `None` for [`Role::Admin`].
    pub fn permissions(self) -> Option<Permissions> {
        self.permissions_in(&[])
    }

    /// What this role may do with `regions` (`mesh.regions`): the same, on every region's
    /// stream (and, for workers, the mirrors they create).
    pub fn permissions_in(self, regions: &[String]) -> Option<Permissions> {
        let streams = message_streams(regions);
        match self {
            Role::Gateway => Some(gateway(&streams)),
            Role::Worker => Some(worker(&streams, &mirror_streams(regions), regions)),
            Role::Loadtest => Some(loadtest()),
            Role::Admin => None,
        }
    }
}

/// Subjects a role may publish and subscribe to (NATS wildcards allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// May answer requests it received (publish once to their reply subjects).
    pub allow_responses: bool,
}

/// `CHAT`, then one stream per region.
fn message_streams(regions: &[String]) -> Vec<String> {
    std::iter::once(STREAM.to_owned())
        .chain(regions.iter().map(|r| region_stream(Some(r))))
        .collect()
}

/// Every mirror the workers create: each message stream in every region but its home.
fn mirror_streams(regions: &[String]) -> Vec<String> {
    let topology = crate::regions::Topology::new(1, regions);
    let mut out = Vec::new();
    for s in 0..topology.streams() {
        for r in regions {
            if topology.home_of_stream(s) != r {
                out.push(mirror_name(&topology.stream_name(s), r));
            }
        }
    }
    out
}

/// Subjects of the JetStream API on `stream` for `ops` (e.g. `STREAM.INFO`).
fn js_api(ops: &[&str], stream: &str) -> Vec<String> {
    ops.iter()
        .map(|op| format!("$JS.API.{op}.{stream}"))
        .collect()
}

/// Direct gets on `stream`: by sequence or batch (`…GET.<stream>`) and last-for-subject.
fn direct_get(stream: &str) -> Vec<String> {
    vec![
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
    ]
}

/// Creating, checking and writing a KV bucket of TTL keys, reading it by direct get.
fn kv_bucket(bucket: &str) -> Vec<String> {
    let mut out = js_api(&["STREAM.CREATE", "STREAM.UPDATE"], &format!("KV_{bucket}"));
    out.extend(kv_use(bucket));
    out
}

/// Checking, writing and reading a KV bucket another role makes: not changing its settings
/// (a stream's settings name its subjects and where it republishes them).
fn kv_use(bucket: &str) -> Vec<String> {
    let stream = format!("KV_{bucket}");
    let mut out = js_api(&["STREAM.INFO"], &stream);
    out.extend(direct_get(&stream));
    out.push(format!("$KV.{bucket}.>"));
    out
}

fn gateway(streams: &[String]) -> Permissions {
    let mut publish = vec![
        IN_ALL.to_owned(),
        "chat.svc.>".to_owned(),
        "chat.evt.*".to_owned(),
        "$JS.API.INFO".to_owned(),
    ];
    // The event log is read like a message stream: its bounds, then what was missed.
    for stream in streams.iter().map(String::as_str).chain([EVENT_LOG]) {
        publish.push(format!("$JS.API.STREAM.INFO.{stream}"));
        publish.extend(direct_get(stream));
    }
    // The presence bucket is the workers' to make: a gateway key that could change its
    // settings could have it take `chat.svc.>` or republish on the workers' subjects.
    publish.extend(kv_use(PRESENCE_BUCKET));
    Permissions {
        publish,
        subscribe: vec![
            LIVE_ALL.to_owned(),
            "chat.evt.*".to_owned(),
            format!("{PRESENCE_REPUBLISH}.>"),
            MEMBER_ALL.to_owned(),
            USER_ALL.to_owned(),
            format!("{}.>", Role::Gateway.inbox_prefix()),
        ],
        allow_responses: false,
    }
}

fn worker(streams: &[String], mirrors: &[String], regions: &[String]) -> Permissions {
    let mut publish = vec![
        MEMBER_ALL.to_owned(),
        USER_ALL.to_owned(),
        "$JS.API.INFO".to_owned(),
    ];
    // Reads one worker asks of another (docs/REGIONS.md section 12): a region's workers ask
    // the primary's whether a user exists (accounts live there), and the primary's push
    // notifier reads the kind and members of rooms stored in other regions. Nothing else:
    // a worker key still cannot act as a user.
    publish.push(format!("chat.svc.*.{}", GetProfile::NAME));
    for op in [GetAccess::NAME, ListMembers::NAME] {
        publish.push(format!("chat.svc.*.*.{op}"));
    }
    for stream in streams {
        publish.extend(worker_on_stream(stream));
    }
    // The event log keeps what workers publish on `chat.mem.*` and `chat.user.*`; workers
    // create it and bring it up to date, nothing more.
    publish.extend(js_api(
        &["STREAM.INFO", "STREAM.CREATE", "STREAM.UPDATE"],
        EVENT_LOG,
    ));
    // Mirrors are created and checked, never written or consumed.
    for mirror in mirrors {
        publish.extend(js_api(
            &["STREAM.INFO", "STREAM.CREATE", "STREAM.UPDATE"],
            mirror,
        ));
    }
    // The primary's workers make the presence bucket; the push notifier reads who is online
    // (never writes presence: that is the gateways').
    publish.extend(js_api(
        &["STREAM.INFO", "STREAM.CREATE", "STREAM.UPDATE"],
        &format!("KV_{PRESENCE_BUCKET}"),
    ));
    publish.extend(direct_get(&format!("KV_{PRESENCE_BUCKET}")));
    let mut subscribe = vec![
        "chat.svc.>".to_owned(),
        format!("{}.>", Role::Worker.inbox_prefix()),
    ];
    // The primary's ownership buckets, and those of every region that may run workers of
    // its own (`mesh.regional_workers`).
    let owners = std::iter::once(None).chain(regions.iter().map(|r| Some(r.as_str())));
    for region in owners {
        let names = OwnershipBuckets::of(region);
        publish.extend(kv_bucket(&names.workers));
        publish.extend(kv_bucket(&names.leases));
        subscribe.push(format!("{}.*", names.republish));
    }
    Permissions {
        publish,
        subscribe,
        allow_responses: true,
    }
}

/// What a worker does on one message stream: creates and checks it, consumes it, reads,
/// erases and purges messages of it.
fn worker_on_stream(stream: &str) -> Vec<String> {
    let mut publish = vec![format!("$JS.ACK.{stream}.>")];
    // `STREAM.MSG.GET`: a room's last seq from the stream's leader, so history can wait
    // for the store to hold every acked message (a direct get may come from a replica).
    // `STREAM.MSG.DELETE`: a deleted message (edits and deletes) is erased from the stream
    // once the store holds its tombstone. `STREAM.PURGE`: a room an admin deleted is purged
    // (its subject only).
    publish.extend(js_api(
        &[
            "STREAM.INFO",
            "STREAM.CREATE",
            "STREAM.UPDATE",
            "STREAM.MSG.GET",
            "STREAM.MSG.DELETE",
            "STREAM.PURGE",
        ],
        stream,
    ));
    publish.extend(
        [
            "CONSUMER.CREATE",
            "CONSUMER.DURABLE.CREATE",
            "CONSUMER.DELETE",
            "CONSUMER.INFO",
            "CONSUMER.MSG.NEXT",
        ]
        .iter()
        .map(|op| format!("$JS.API.{op}.{stream}.>")),
    );
    publish.extend(direct_get(stream));
    publish
}

/// Subject prefix of load-test coordination (`<prefix>.<run id>.…`).
pub const LOADTEST_PREFIX: &str = "chatmesh.loadtest";

fn loadtest() -> Permissions {
    Permissions {
        publish: vec![format!("{LOADTEST_PREFIX}.>")],
        subscribe: vec![
            format!("{LOADTEST_PREFIX}.>"),
            format!("{}.>", Role::Loadtest.inbox_prefix()),
        ],
        allow_responses: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No role but admin may touch what another role owns: the stream's consumers are the
    /// worker's, sends and service calls the gateway's.
    #[test]
    fn roles_are_separated() {
        let gw = Role::Gateway.permissions().unwrap();
        let wk = Role::Worker.permissions().unwrap();
        assert!(!gw.publish.iter().any(|s| s.contains("CONSUMER")));
        assert!(!gw.subscribe.iter().any(|s| s.starts_with("chat.svc")));
        assert!(!wk.publish.iter().any(|s| s.starts_with("chat.in")));
        // Workers ask each other for three reads only (regional workers, push).
        let asks: Vec<&String> = wk
            .publish
            .iter()
            .filter(|s| s.starts_with("chat.svc"))
            .collect();
        assert_eq!(
            asks,
            [
                "chat.svc.*.profile_get",
                "chat.svc.*.*.access",
                "chat.svc.*.*.members_list"
            ]
        );
        assert!(!wk.publish.iter().any(|s| s.starts_with("chat.evt")));
        // The event log: workers make it, gateways only read it.
        let log = |s: &String| s.contains(EVENT_LOG);
        assert!(gw
            .publish
            .iter()
            .filter(|s| log(s))
            .all(|s| s.contains("STREAM.INFO") || s.contains("DIRECT.GET")));
        assert!(wk
            .publish
            .contains(&format!("$JS.API.STREAM.CREATE.{EVENT_LOG}")));
        assert!(!wk.publish.iter().any(|s| log(s) && s.contains("CONSUMER")));
        // Presence: workers make the bucket and read it, never write keys; gateways write
        // and read keys, never change the bucket's settings.
        let writes_presence = |s: &String| s.starts_with(&format!("$KV.{PRESENCE_BUCKET}"));
        assert!(!wk.publish.iter().any(writes_presence));
        assert!(gw.publish.iter().any(writes_presence));
        let changes_presence = |s: &String| {
            s.contains(&format!("KV_{PRESENCE_BUCKET}"))
                && (s.contains("STREAM.CREATE") || s.contains("STREAM.UPDATE"))
        };
        assert!(!gw.publish.iter().any(changes_presence));
        assert!(wk.publish.iter().any(changes_presence));
        for role in [Role::Gateway, Role::Worker, Role::Loadtest] {
            let p = role.permissions().unwrap();
            assert!(!p.publish.iter().any(|s| s == ">" || s.ends_with("API.>")));
            assert!(!p.subscribe.iter().any(|s| s == ">" || s == "_INBOX.>"));
        }
        assert!(Role::Admin.permissions().is_none());
    }

    #[test]
    fn regions_add_their_streams_and_the_workers_mirrors() {
        let regions = ["eu".to_owned(), "us".to_owned()];
        let gw = Role::Gateway.permissions_in(&regions).unwrap();
        let wk = Role::Worker.permissions_in(&regions).unwrap();
        for stream in ["CHAT", "CHAT_eu", "CHAT_us"] {
            assert!(gw.publish.contains(&format!("$JS.API.DIRECT.GET.{stream}")));
            assert!(wk
                .publish
                .contains(&format!("$JS.API.CONSUMER.CREATE.{stream}.>")));
        }
        // CHAT and CHAT_eu live in eu: mirrored in us; CHAT_us mirrored in eu.
        for mirror in ["CHAT_M_us", "CHAT_eu_M_us", "CHAT_us_M_eu"] {
            assert!(wk
                .publish
                .contains(&format!("$JS.API.STREAM.CREATE.{mirror}")));
        }
        assert!(!wk.publish.iter().any(|s| s.ends_with("CHAT_M_eu")));
        assert!(!gw.publish.iter().any(|s| s.contains("_M_")));
        // Any region may run workers of its own: its ownership buckets are allowed.
        for bucket in ["CHAT_LEASES", "CHAT_LEASES_us", "CHAT_WORKERS_eu"] {
            assert!(wk.publish.contains(&format!("$KV.{bucket}.>")), "{bucket}");
        }
        assert!(wk.subscribe.contains(&"chat.workers.us.*".to_owned()));
    }
}
