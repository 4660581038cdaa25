//! What a closed notification claims for each of a user's targets, against a real store and
//! a real nats-server (presence).

use std::time::{Duration, SystemTime};

use chatmesh_protocol::push::{NewTarget, WebPushKeys};
use chatmesh_protocol::service::{Role, RoomKind};
use chatmesh_protocol::subjects::PRESENCE_BUCKET;

use super::*;
use crate::push::collapse::{Pending, RoomPending};
use crate::push::{origins, presence, vapid, webpush};
use crate::service::PushRules;

/// When the test's first message was stored (ms since the Unix epoch).
const STORED_MS: u64 = 1_700_000_000_000;
const HOUR_MS: u64 = 3_600_000;

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

fn web_push(endpoint: &str, created: u64) -> PushTargetRecord {
    PushTargetRecord {
        target: NewTarget::WebPush {
            endpoint: endpoint.into(),
            keys: WebPushKeys {
                p256dh: String::new(),
                auth: String::new(),
            },
            expiration_time: None,
        },
        created,
    }
}

/// One message, `seq`, of `room`, stored at `stored_ms`.
fn one_message(room: &str, seq: u64, stored_ms: u64) -> RoomPending {
    RoomPending {
        room: room.into(),
        kind: RoomKind::Private,
        count: 1,
        seqs: vec![(seq, at(stored_ms))],
        last_seq: seq,
        last_from: "ann".into(),
        last_body: format!("news of {room}"),
        last_stored: at(stored_ms),
        remote: false,
    }
}

/// A deliverer on a fresh store in `dir`, reading presence from `nats`.
pub(super) async fn deliverer(dir: &std::path::Path, nats: async_nats::Client) -> Deliverer {
    let cfg = crate::WorkerConfig {
        data_dir: dir.to_path_buf(),
        ..crate::WorkerConfig::default()
    };
    let model = Model::new(crate::open_store(&cfg).await.expect("store"));
    let caches = Arc::new(crate::cache::Caches::new(cfg.cache_sizes()));
    let svc = Service::new(model, caches, &cfg, None).expect("service");
    svc.enable_push(PushRules {
        allow_http_loopback: true,
        max_targets: 10,
        vapid_public_key: String::new(),
        apns_topics: Vec::new(),
    });
    let timeout = Duration::from_secs(5);
    Deliverer {
        svc,
        presence: presence::Presence::new(nats, Duration::from_millis(250)),
        vapid: vapid::Vapid::load_or_create(&dir.join("vapid.key"), "mailto:t@example.com")
            .expect("vapid"),
        web: webpush::WebPush::open(timeout, timeout, true, None).expect("web push"),
        fcm: None,
        apns: None,
        ttl: timeout,
        max_targets: 10,
        retry_max: timeout,
        sends: Arc::new(tokio::sync::Semaphore::new(4)),
        origins: origins::Origins::new(4, []),
        busy: Busy::default(),
        peers: None,
    }
}

/// A target registered after a message was stored is not pushed that message, even when
/// another target of the same user was registered before it (and is): the check is per
/// target. Before, the user's earliest registration let every target of theirs be pushed it,
/// a new device included. A message stored after both registrations reaches both.
#[tokio::test]
async fn a_target_is_pushed_only_what_was_stored_after_it_was_registered() {
    let server = natsd::NatsServer::start_temp().await.expect("nats-server");
    let nats = async_nats::connect(server.url()).await.expect("connect");
    // Presence is read from its bucket (empty here: nobody online), as in a deployment.
    let kv = async_nats::jetstream::kv::Config {
        bucket: PRESENCE_BUCKET.into(),
        ..Default::default()
    };
    async_nats::jetstream::new(nats.clone())
        .create_key_value(kv)
        .await
        .expect("presence bucket");
    let dir = tempfile::tempdir().expect("dir");
    let d = deliverer(dir.path(), nats).await;
    let model = d.svc.model().clone();
    let mut batch = WriteBatch::new();
    for room in ["old", "new"] {
        Model::put_member(&mut batch, room, "bob", Role::Member);
    }
    // The phone was registered an hour before the first message, the laptop an hour after.
    let phone = web_push("https://push.example/phone", STORED_MS - HOUR_MS);
    let laptop = web_push("https://push.example/laptop", STORED_MS + HOUR_MS);
    Model::put_push_target(&mut batch, "bob", "phone", &phone);
    Model::put_push_target(&mut batch, "bob", "laptop", &laptop);
    model.write(batch).await.expect("write");

    let mut p = Pending {
        user: "bob".into(),
        rooms: vec![
            one_message("old", 7, STORED_MS),
            one_message("new", 9, STORED_MS + 2 * HOUR_MS),
        ],
        first_stored: at(STORED_MS),
        held: Vec::new(),
    };
    let claimed = d.claim(&mut p).await.expect("claimed");
    let pushed: Vec<(&str, Vec<&str>)> = claimed
        .iter()
        .map(|c| {
            let rooms = c.payload.rooms.iter().map(|r| r.room.as_str()).collect();
            (c.id.as_str(), rooms)
        })
        .collect();
    assert_eq!(
        pushed,
        [("laptop", vec!["new"]), ("phone", vec!["new", "old"])],
        "the laptop is not pushed the message stored before it was registered"
    );
    assert_eq!(
        model.push_mark("bob", "laptop", "old").await.expect("mark"),
        0,
        "nothing of `old` was claimed for the laptop"
    );
}
