//! The services over NATS request-reply against a real nats-server, as a gateway calls them
//! (user-keyed and room-keyed subjects), plus membership events and stream setup.

mod common;

use std::time::Duration;

use chatmesh_protocol::service::*;
use chatmesh_protocol::subjects::{member_subject, svc_subject, STREAM};
use chatmesh_protocol::ErrorCode;
use chatmesh_workers::{ensure_stream, open_store, Worker};
use common::mesh::{self, call, publish, PARTITIONS};
use common::{config, eventually};
use futures::StreamExt;

fn creds(u: &str, p: &str) -> Credentials {
    Credentials::new(u, p)
}

/// Register, login, create a private room, refused join, membership events, history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_answer_over_request_reply() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let mesh = mesh::mesh(server.url());
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&config(dir.path())).await.unwrap();
    let worker = Worker::start(config(dir.path()), mesh, nats.clone(), store)
        .await
        .unwrap();

    let ann = call::<Register>(&nats, "ann", &creds("ann", "ann password")).await;
    assert_eq!(ann.unwrap().user, "ann");
    call::<Register>(&nats, "bob", &creds("bob", "bob password"))
        .await
        .unwrap();
    let again = call::<Register>(&nats, "ann", &creds("ann", "other password")).await;
    assert_eq!(again.unwrap_err().code, ErrorCode::Conflict);
    assert!(call::<Login>(&nats, "ann", &creds("ann", "ann password"))
        .await
        .is_ok());
    let bad = call::<Login>(&nats, "ann", &creds("ann", "bob password")).await;
    assert_eq!(bad.unwrap_err().code, ErrorCode::Unauthorized);

    let mut events = nats.subscribe(member_subject("team")).await.unwrap();
    nats.flush().await.unwrap();
    let create = CreateRoomRequest {
        room: "team".into(),
        kind: RoomKind::Private,
        actor: "ann".into(),
    };
    let info = call::<CreateRoom>(&nats, "team", &create).await.unwrap();
    assert_eq!((info.kind, info.owner.as_str()), (RoomKind::Private, "ann"));
    let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    let ev: MemberEvent = serde_json::from_slice(&ev.payload).unwrap();
    assert_eq!((ev.user.as_str(), ev.role), ("ann", Some(Role::Owner)));

    let bob_in = RoomUserRequest {
        room: "team".into(),
        user: "bob".into(),
    };
    let refused = call::<JoinRoom>(&nats, "team", &bob_in).await;
    assert_eq!(refused.unwrap_err().code, ErrorCode::Forbidden);
    let add = AddMemberRequest {
        room: "team".into(),
        user: "bob".into(),
        role: Role::Member,
        actor: "ann".into(),
        invited_at: None,
    };
    call::<AddMember>(&nats, "team", &add).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    let ev: MemberEvent = serde_json::from_slice(&ev.payload).unwrap();
    assert_eq!((ev.user.as_str(), ev.role), ("bob", Some(Role::Member)));
    let access = call::<JoinRoom>(&nats, "team", &bob_in).await.unwrap();
    assert_eq!(access.role, Some(Role::Member));

    let js = mesh::js(&nats);
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(publish(&js, "team", "ann", &format!("team-{i}")).await.0);
    }
    let page = eventually(10, "history to show 5 messages", || async {
        let req = HistoryRequest {
            room: "team".into(),
            before: None,
            after: None,
            limit: 50,
        };
        let page = call::<History>(&nats, "team", &req).await.unwrap();
        (page.messages.len() == 5).then_some(page)
    })
    .await;
    assert!(!page.more);
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        seqs
    );
    let two = HistoryRequest {
        room: "team".into(),
        before: Some(seqs[4]),
        after: None,
        limit: 2,
    };
    let page = call::<History>(&nats, "team", &two).await.unwrap();
    assert!(page.more);
    assert_eq!(page.messages[1].seq, seqs[3]);

    let list = call::<ListRooms>(
        &nats,
        "bob",
        &ListRoomsRequest {
            user: "bob".into(),
            after: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(list.rooms.len(), 1);
    assert_eq!((list.rooms[0].last_seq, list.rooms[0].unread), (seqs[4], 5));

    let junk = nats
        .request(svc_subject(PARTITIONS, "team", "history"), "{]".into())
        .await
        .unwrap();
    let junk: Reply<HistoryPage> = serde_json::from_slice(&junk.payload).unwrap();
    assert_eq!(junk.into_result().unwrap_err().code, ErrorCode::BadRequest);

    worker.stop().await.unwrap();
}

/// Ensuring the stream twice changes nothing; a changed retention is applied by update.
#[tokio::test]
async fn stream_setup_is_idempotent() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let js = mesh::js(&nats);
    let mut mesh = mesh::mesh(server.url());
    let mut first = ensure_stream(&js, &mesh).await.unwrap();
    let before = first.info().await.unwrap().config.clone();
    let mut s = ensure_stream(&js, &mesh).await.unwrap();
    let cfg = s.info().await.unwrap().config.clone();
    assert_eq!(cfg, before);
    assert_eq!(cfg.name, STREAM);
    assert!(cfg.allow_direct);
    assert_eq!(cfg.republish.unwrap().destination, "chat.live.>");
    mesh.stream_max_age_secs = 3_600;
    let mut s = ensure_stream(&js, &mesh).await.unwrap();
    assert_eq!(
        s.info().await.unwrap().config.max_age,
        Duration::from_secs(3_600)
    );
}

/// The primary's push notifier reads a room stored by another region's workers by asking
/// them over NATS (docs/REGIONS.md section 12): its kind (`access`) and its members
/// (`members_list` pages, as the sender). Here the worker plays the room's region and the
/// intake has an empty store of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_intake_reads_a_remote_rooms_kind_and_members_page_by_page() {
    use chatmesh_workers::cache::Caches;
    use chatmesh_workers::model::Model;
    use chatmesh_workers::peers::Peers;
    use chatmesh_workers::push::{intake::Intake, presence::Presence};
    use chatmesh_workers::Service;

    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&config(dir.path())).await.unwrap();
    let worker = Worker::start(
        config(dir.path()),
        mesh::mesh(server.url()),
        nats.clone(),
        store,
    )
    .await
    .unwrap();
    let create = CreateRoomRequest {
        room: "big".into(),
        kind: RoomKind::Public,
        actor: "ann".into(),
    };
    call::<CreateRoom>(&nats, "big", &create).await.unwrap();
    // More members than one page (200) of `members_list`.
    for i in 0..204 {
        let join = RoomUserRequest {
            room: "big".into(),
            user: format!("u{i:03}"),
        };
        call::<JoinRoom>(&nats, "big", &join).await.unwrap();
    }

    let other = tempfile::tempdir().unwrap();
    let cfg = config(other.path());
    let model = Model::new(open_store(&cfg).await.unwrap());
    let caches = std::sync::Arc::new(Caches::new(cfg.cache_sizes()));
    let svc = Service::new(model.clone(), caches, &cfg, None).unwrap();
    let mut intake = Intake {
        svc,
        model,
        presence: Presence::new(nats.clone(), Duration::from_secs(1)),
        max_members: 1_000,
        remote: Some(Peers::new(nats.clone(), PARTITIONS)),
    };
    let kind = intake.room_kind("big", "ann").await.unwrap();
    assert_eq!(kind, Some(RoomKind::Public));
    assert_eq!(intake.room_kind("nowhere", "ann").await.unwrap(), None);
    let members = intake.members("big", "ann").await.unwrap();
    assert_eq!(members.len(), 205, "every member, over two pages");
    assert_eq!(members[0], ("ann".to_owned(), Role::Owner));
    assert_eq!(members[204].0, "u203");
    // A sender that is no member (left since) reads none; the bound holds.
    assert!(intake.members("big", "zed").await.unwrap().is_empty());
    intake.max_members = 10;
    assert_eq!(intake.members("big", "ann").await.unwrap().len(), 10);
    worker.stop().await.unwrap();
}

/// Requests about one room wait for its lock only a quarter of the service slots at a time
/// (beyond: `rate_limited` at once, so one room's owner cannot hold every slot of the worker
/// with a flood of topic changes), and only until their caller stops waiting (then
/// `unavailable`, and the change is not made: before, it was made after its caller had been
/// told it failed). Each write under the lock waits a one-second group-commit window here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_wait_for_a_rooms_lock_within_bounds() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let mesh = mesh::mesh(server.url());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.service_concurrency = 8; // two may wait for one lock
    cfg.batch_linger_ms = 1_000;
    let store = open_store(&cfg).await.unwrap();
    let worker = Worker::start(cfg, mesh, nats.clone(), store).await.unwrap();
    call::<Register>(&nats, "ann", &creds("ann", "ann password"))
        .await
        .unwrap();
    let create = CreateRoomRequest {
        room: "town".into(),
        kind: RoomKind::Public,
        actor: "ann".into(),
    };
    call::<CreateRoom>(&nats, "town", &create).await.unwrap();

    let topic = |t: &str, deadline: u64| {
        let (nats, t) = (nats.clone(), t.to_owned());
        async move {
            let req = SetTopicRequest {
                room: "town".into(),
                actor: "ann".into(),
                topic: Some(t),
            };
            mesh::call_by::<SetTopic>(&nats, "town", &req, deadline).await
        }
    };
    let later = natskit::deadline::after(Duration::from_secs(30));
    let holder = tokio::spawn(topic("a", later));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let waiter = tokio::spawn(topic("b", later));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Its caller waits half a second more (with the deadline's second of slack).
    let hasty = natskit::deadline::after(Duration::ZERO) - 500;
    let late = tokio::spawn(topic("c", hasty));
    tokio::time::sleep(Duration::from_millis(50)).await;
    for t in ["d", "e", "f"] {
        let e = topic(t, later).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited, "{t}: {e:?}");
    }
    let e = late.await.unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
    holder.await.unwrap().unwrap();
    waiter.await.unwrap().unwrap();
    let list = ListRoomsRequest {
        user: "ann".into(),
        after: None,
    };
    let rooms = call::<ListRooms>(&nats, "ann", &list).await.unwrap();
    let town = rooms.rooms.iter().find(|r| r.room == "town").unwrap();
    assert_eq!(
        town.topic.as_deref(),
        Some("b"),
        "c gave up, d-f were refused"
    );
    worker.stop().await.unwrap();
}

/// Requests waiting for the store writer (history right after a send) hold at most half the
/// worker's service slots: beyond them they are refused `unavailable` at once, and an access
/// check is answered while the others still wait. The store writer is held back by a
/// one-second group-commit window, so the wait is long and certain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_the_store_leave_service_slots_free() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let mesh = mesh::mesh(server.url());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.service_concurrency = 4;
    cfg.batch_linger_ms = 1_000;
    cfg.history_wait_ms = 10_000;
    let store = open_store(&cfg).await.unwrap();
    let worker = Worker::start(cfg, mesh, nats.clone(), store).await.unwrap();
    call::<Register>(&nats, "ann", &creds("ann", "ann password"))
        .await
        .unwrap();
    let create = CreateRoomRequest {
        room: "town".into(),
        kind: RoomKind::Public,
        actor: "ann".into(),
    };
    call::<CreateRoom>(&nats, "town", &create).await.unwrap();

    let js = mesh::js(&nats);
    let (seq, _) = publish(&js, "town", "ann", "m1").await;
    let started = std::time::Instant::now();
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let nats = nats.clone();
        reads.spawn(async move {
            let req = HistoryRequest {
                room: "town".into(),
                before: None,
                after: None,
                limit: 10,
            };
            let page = call::<History>(&nats, "town", &req).await;
            (page, std::time::Instant::now())
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ann_in = RoomUserRequest {
        room: "town".into(),
        user: "ann".into(),
    };
    call::<JoinRoom>(&nats, "town", &ann_in).await.unwrap();
    let joined = std::time::Instant::now();

    let (mut pages, mut refused) = (Vec::new(), 0);
    while let Some(read) = reads.join_next().await {
        match read.unwrap() {
            (Ok(page), at) => pages.push((page, at)),
            (Err(e), _) => {
                assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
                refused += 1;
            }
        }
    }
    assert_eq!(
        (pages.len(), refused),
        (2, 6),
        "two of the four slots wait, the other reads are refused"
    );
    for (page, at) in &pages {
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [seq], "a read that waited has the acked message");
        assert!(
            *at > joined,
            "the access check ({:?}) was answered while the reads waited (one took {:?})",
            joined - started,
            *at - started
        );
    }
    worker.stop().await.unwrap();
}

/// A request that reaches the worker after its caller stopped waiting (its deadline header,
/// past by more than the slack) is dropped unrun: no answer, and what it asked for does not
/// happen; one within its deadline is answered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_caller_gave_up_is_not_run() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&config(dir.path())).await.unwrap();
    let worker = Worker::start(
        config(dir.path()),
        mesh::mesh(server.url()),
        nats.clone(),
        store,
    )
    .await
    .unwrap();
    call::<Register>(&nats, "ann", &creds("ann", "ann password"))
        .await
        .unwrap();
    let create = |room: &str| CreateRoomRequest {
        room: room.into(),
        kind: RoomKind::Private,
        actor: "ann".into(),
    };
    let ask = |room: &str, headers: async_nats::HeaderMap| {
        let body = serde_json::to_vec(&create(room)).unwrap();
        let request = async_nats::Request::new()
            .payload(body.into())
            .headers(headers)
            .timeout(Some(Duration::from_secs(2)));
        nats.send_request(svc_subject(PARTITIONS, room, CreateRoom::NAME), request)
    };
    let mut past = async_nats::HeaderMap::new();
    let then = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 5_000;
    past.insert(natskit::deadline::HEADER, then.to_string().as_str());
    let late = ask("late", past).await;
    assert_eq!(
        late.map(drop).unwrap_err().kind(),
        async_nats::RequestErrorKind::TimedOut,
        "no answer to a request nobody waits for"
    );
    // Not created: creating it now works.
    call::<CreateRoom>(&nats, "late", &create("late"))
        .await
        .unwrap();
    let timely = ask("timely", natskit::deadline::headers(Duration::from_secs(5)))
        .await
        .unwrap();
    let reply: Reply<RoomInfo> = serde_json::from_slice(&timely.payload).unwrap();
    assert_eq!(reply.into_result().unwrap().owner, "ann");
    worker.stop().await.unwrap();
}
