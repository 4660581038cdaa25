//! The service rules in process (no NATS): membership and roles, accounts, DM rooms and
//! malformed requests.

mod common;

use chatmesh_protocol::service::*;
use chatmesh_protocol::ErrorCode;
use chatmesh_workers::model::dm_room;
use common::{code, create, creds, users, Local};

fn add(room: &str, user: &str, role: Role, actor: &str) -> AddMemberRequest {
    AddMemberRequest {
        room: room.into(),
        user: user.into(),
        role,
        actor: actor.into(),
        invited_at: None,
    }
}

fn rm(room: &str, user: &str, actor: &str) -> RemoveMemberRequest {
    RemoveMemberRequest {
        room: room.into(),
        user: user.into(),
        actor: actor.into(),
    }
}

fn ru(room: &str, user: &str) -> RoomUserRequest {
    RoomUserRequest {
        room: room.into(),
        user: user.into(),
    }
}

/// A room whose record is gone from the store (a deletion removes it first, under the
/// room's lock) takes no new member, even while a cache loaded before still holds the
/// record: `join` and `member_add` read the store under the lock (a member written then
/// would outlive the deletion, into a room made again under that name).
#[tokio::test]
async fn no_member_is_written_into_a_room_whose_record_is_gone() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob", "cid"]).await;
    create(&l, "hall", RoomKind::Public, "ann").await;
    // The caches hold the room now.
    assert_eq!(s.access(ru("hall", "bob")).await.unwrap().role, None);
    // The deletion's first write, as the caches of a worker that loaded the record just
    // before it would not know it.
    let mut batch = chatmesh_workers::store::WriteBatch::new();
    batch.delete(chatmesh_workers::model::keys::room("hall"));
    l.model.write(batch).await.unwrap();
    assert_eq!(code(s.join(ru("hall", "bob")).await), ErrorCode::NotFound);
    let add = AddMemberRequest {
        room: "hall".into(),
        user: "cid".into(),
        role: Role::Member,
        actor: "ann".into(),
        invited_at: None,
    };
    assert_eq!(code(s.member_add(add).await), ErrorCode::NotFound);
    for user in ["bob", "cid"] {
        assert_eq!(l.model.role("hall", user).await.unwrap(), None, "{user}");
    }
}

/// Who may join, add, promote and remove, for public and private rooms.
#[tokio::test]
async fn membership_rules() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob", "cid", "dan"]).await;
    create(&l, "priv", RoomKind::Private, "ann").await;
    create(&l, "pub", RoomKind::Public, "bob").await;

    assert_eq!(code(s.join(ru("priv", "bob")).await), ErrorCode::Forbidden);
    assert_eq!(s.access(ru("priv", "bob")).await.unwrap().role, None);
    assert_eq!(
        s.access(ru("priv", "ann")).await.unwrap().role,
        Some(Role::Owner)
    );
    assert_eq!(code(s.access(ru("nope", "ann")).await), ErrorCode::NotFound);
    let joined = s.join(ru("pub", "ann")).await.unwrap();
    assert_eq!(
        (joined.kind, joined.role),
        (RoomKind::Public, Some(Role::Member))
    );
    assert_eq!(
        s.join(ru("pub", "ann")).await.unwrap(),
        joined,
        "join is idempotent"
    );

    s.member_add(add("priv", "bob", Role::Member, "ann"))
        .await
        .unwrap();
    assert_eq!(
        s.access(ru("priv", "bob")).await.unwrap().role,
        Some(Role::Member)
    );
    assert_eq!(
        code(s.member_add(add("priv", "cid", Role::Member, "bob")).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(s.member_add(add("priv", "zed", Role::Member, "ann")).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(s.member_add(add("priv", "cid", Role::Owner, "ann")).await),
        ErrorCode::BadRequest
    );
    s.member_add(add("priv", "cid", Role::Admin, "ann"))
        .await
        .unwrap();
    assert_eq!(
        code(s.member_add(add("priv", "dan", Role::Admin, "cid")).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(s.member_add(add("priv", "bob", Role::Admin, "cid")).await),
        ErrorCode::Forbidden
    );
    s.member_add(add("priv", "dan", Role::Member, "cid"))
        .await
        .unwrap();
    assert_eq!(
        code(s.member_add(add("priv", "ann", Role::Member, "cid")).await),
        ErrorCode::Forbidden
    );

    let cached = s.access(ru("priv", "dan")).await.unwrap().role;
    assert_eq!(cached, Some(Role::Member));
    s.member_remove(rm("priv", "dan", "cid")).await.unwrap();
    assert_eq!(s.access(ru("priv", "dan")).await.unwrap().role, None);
    assert_eq!(
        code(s.member_remove(rm("priv", "dan", "ann")).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(s.member_remove(rm("priv", "cid", "bob")).await),
        ErrorCode::Forbidden
    );
    s.member_remove(rm("priv", "bob", "bob")).await.unwrap();
    assert_eq!(
        code(s.member_remove(rm("priv", "ann", "cid")).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(s.member_remove(rm("priv", "ann", "ann")).await),
        ErrorCode::Forbidden
    );
    s.member_remove(rm("priv", "cid", "ann")).await.unwrap();
    let members = l.model.members("priv", 10).await.unwrap();
    assert_eq!(members, vec![("ann".to_owned(), Role::Owner)]);

    let dup = CreateRoomRequest {
        room: "pub".into(),
        kind: RoomKind::Private,
        actor: "ann".into(),
    };
    assert_eq!(code(s.room_create(dup).await), ErrorCode::Conflict);
    let dm = CreateRoomRequest {
        room: "x".into(),
        kind: RoomKind::Dm,
        actor: "ann".into(),
    };
    assert_eq!(code(s.room_create(dm).await), ErrorCode::BadRequest);
    let squat = CreateRoomRequest {
        room: dm_room("ann", "bob"),
        kind: RoomKind::Public,
        actor: "cid".into(),
    };
    assert_eq!(code(s.room_create(squat).await), ErrorCode::BadRequest);
    let bad = CreateRoomRequest {
        room: "a.b".into(),
        kind: RoomKind::Public,
        actor: "ann".into(),
    };
    assert_eq!(code(s.room_create(bad).await), ErrorCode::BadRequest);

    create(&l, "lobby", RoomKind::Public, "dan").await;
    let list = s
        .rooms_list(ListRoomsRequest {
            user: "ann".into(),
            after: None,
        })
        .await
        .unwrap();
    let got: Vec<(&str, Option<Role>)> = list
        .rooms
        .iter()
        .map(|r| (r.room.as_str(), r.role))
        .collect();
    assert_eq!(got.len(), 3);
    assert_eq!(
        &got[2],
        &("lobby", None),
        "public rooms the user is not in come last"
    );
    assert!(
        got[..2].contains(&("priv", Some(Role::Owner)))
            && got[..2].contains(&("pub", Some(Role::Member)))
    );
}

/// Register and login: name and password rules, conflicts, one answer for every failure.
#[tokio::test]
async fn register_and_login() {
    let l = Local::new().await;
    let s = &l.service;
    assert_eq!(s.register(creds("ann")).await.unwrap().user, "ann");
    assert_eq!(code(s.register(creds("ann")).await), ErrorCode::Conflict);
    let short = Credentials::new("bob", "1234567");
    assert_eq!(code(s.register(short).await), ErrorCode::BadRequest);
    assert_eq!(code(s.register(creds("b.b")).await), ErrorCode::BadRequest);
    assert_eq!(s.login(creds("ann")).await.unwrap().user, "ann");
    let wrong = Credentials::new("ann", "wrong password");
    let e1 = s.login(wrong).await.unwrap_err();
    let e2 = s.login(creds("nobody")).await.unwrap_err();
    assert_eq!(e1.code, ErrorCode::Unauthorized);
    assert_eq!(e1, e2, "unknown user and wrong password look the same");
    let stored = l.model.user("ann").await.unwrap().unwrap();
    assert!(stored.hash.starts_with("$argon2id$"));
}

/// Concurrent registrations of one name: exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_a_name() {
    let l = Local::new().await;
    let tries = (0..8).map(|_| {
        let s = l.service.clone();
        tokio::spawn(async move { s.register(creds("eve")).await })
    });
    let results = futures::future::join_all(tries).await;
    let ok = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    assert_eq!(ok, 1);
    for r in results {
        if let Ok(Err(e)) = r {
            assert_eq!(e.code, ErrorCode::Conflict);
        }
    }
}

/// The DM room of two users is one deterministic id, created once, closed to changes.
#[tokio::test]
async fn dm_rooms_are_deterministic() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob", "cid"]).await;
    let id = dm_room("ann", "bob");
    assert_eq!(id, dm_room("bob", "ann"));
    assert_ne!(id, dm_room("ann", "cid"));
    assert!(id.starts_with("dm_") && id.len() == 27);
    let dm = |a: &str, b: &str| DmRequest {
        a: a.into(),
        b: b.into(),
    };
    assert_eq!(s.dm(dm("ann", "bob")).await.unwrap().room, id);
    assert_eq!(s.dm(dm("bob", "ann")).await.unwrap().room, id);
    let access = s.access(ru(&id, "bob")).await.unwrap();
    assert_eq!(
        (access.kind, access.role),
        (RoomKind::Dm, Some(Role::Member))
    );
    assert_eq!(s.access(ru(&id, "cid")).await.unwrap().role, None);
    assert_eq!(code(s.join(ru(&id, "cid")).await), ErrorCode::Forbidden);
    assert_eq!(
        code(s.member_add(add(&id, "cid", Role::Member, "ann")).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(s.member_remove(rm(&id, "bob", "bob")).await),
        ErrorCode::Forbidden
    );
    assert_eq!(code(s.dm(dm("ann", "zed")).await), ErrorCode::NotFound);
    assert_eq!(code(s.dm(dm("ann", "ann")).await), ErrorCode::BadRequest);
}

/// Raw requests: malformed JSON or an unknown op get a `bad_request` reply, never a panic.
#[tokio::test]
async fn malformed_requests_get_bad_request() {
    let l = Local::new().await;
    for (op, body) in [
        ("register", &b"not json"[..]),
        ("history", br#"{"room":"r"}"#),
        ("login", br#"[1,2]"#),
        ("frobnicate", b"{}"),
        ("", b""),
    ] {
        let (reply, outcome) = l.service.dispatch(op, body).await;
        assert_eq!(outcome, "bad_request", "{op}");
        let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(v["error"]["code"], "bad_request", "{op}");
    }
    let (reply, outcome) = l
        .service
        .dispatch("register", br#"{"username":"ann","password":"12345678"}"#)
        .await;
    assert_eq!(outcome, "ok");
    assert_eq!(reply, br#"{"ok":{"user":"ann"}}"#);
}

/// A file's references are deleted in bounded chunks, not gathered into the caller's batch
/// (the sweeper's): a file attached to 10,000 messages leaves a batch of two operations (the
/// deletions of its record and of its detached mark), and no reference behind.
#[tokio::test]
async fn a_files_references_are_deleted_in_chunks() {
    use chatmesh_workers::model::Model;
    use chatmesh_workers::store::WriteBatch;
    let l = Local::new().await;
    let seqs: Vec<u64> = (1..=10_000).collect();
    for chunk in seqs.chunks(1_000) {
        let mut batch = WriteBatch::new();
        for seq in chunk {
            Model::put_file_ref(&mut batch, "hall", "f1", *seq);
        }
        l.model.write(batch).await.unwrap();
    }
    assert_eq!(
        l.model.last_file_ref("hall", "f1").await.unwrap(),
        Some(10_000)
    );
    let mut batch = WriteBatch::new();
    l.model.delete_file(&mut batch, "hall", "f1").await.unwrap();
    assert_eq!(batch.len(), 2, "only the record's and the mark's deletions");
    assert_eq!(l.model.last_file_ref("hall", "f1").await.unwrap(), None);
}
