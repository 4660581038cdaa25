//! The chat model and its rules, in process (no NATS): history paging, idempotent rewrites,
//! cursors and unread counts, membership rules, accounts and DMs.

mod common;

use chatmesh_protocol::service::*;
use chatmesh_protocol::ErrorCode;
use chatmesh_workers::model::{dm_room, HistoryQuery};
use common::Local;

fn creds(u: &str) -> Credentials {
    Credentials {
        username: u.into(),
        password: "correct horse".into(),
    }
}

async fn users(l: &Local, names: &[&str]) {
    for n in names {
        l.service.register(creds(n)).await.unwrap();
    }
}

async fn create(l: &Local, room: &str, kind: RoomKind, actor: &str) {
    let req = CreateRoomRequest {
        room: room.into(),
        kind,
        actor: actor.into(),
    };
    l.service.room_create(req).await.unwrap();
}

fn hist(room: &str, before: Option<u64>, after: Option<u64>, limit: u32) -> HistoryRequest {
    HistoryRequest {
        room: room.into(),
        before,
        after,
        limit,
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, chatmesh_protocol::ApiError>) -> ErrorCode {
    r.unwrap_err().code
}

/// Paging back with `before` and forward with `after` visits every message once, in order,
/// with `more` true exactly until the end; cache and store answer every query alike.
#[tokio::test]
async fn history_pages_both_ways_with_more() {
    let l = Local::new().await;
    create(&l, "r", RoomKind::Public, "ann").await;
    let mut cp = 0;
    // Room r gets the odd seqs 1..=499, room o the even ones: r's seqs are not contiguous.
    for chunk in (1..=500u64).collect::<Vec<_>>().chunks(64) {
        let msgs: Vec<(u64, &str, &str)> = chunk
            .iter()
            .map(|&s| (s, if s % 2 == 1 { "r" } else { "o" }, "hi"))
            .collect();
        l.deliver(0, &mut cp, &msgs).await;
    }
    let want: Vec<u64> = (1..=499).step_by(2).collect();

    let mut back = Vec::new();
    let mut before = None;
    loop {
        let page = l
            .service
            .history(hist("r", before, None, 40))
            .await
            .unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
        for m in &page.messages {
            assert_eq!(m.prev, m.seq.saturating_sub(2), "prev chain of {}", m.seq);
        }
        back.splice(0..0, seqs.iter().copied());
        before = seqs.first().copied();
        if !page.more {
            break;
        }
    }
    assert_eq!(back, want);

    let mut fwd = Vec::new();
    let mut after = Some(0);
    loop {
        let page = l.service.history(hist("r", None, after, 33)).await.unwrap();
        fwd.extend(page.messages.iter().map(|m| m.seq));
        after = fwd.last().copied();
        if !page.more {
            break;
        }
    }
    assert_eq!(fwd, want);

    let win = l
        .service
        .history(hist("r", Some(21), Some(9), 100))
        .await
        .unwrap();
    let seqs: Vec<u64> = win.messages.iter().map(|m| m.seq).collect();
    assert_eq!((seqs, win.more), (vec![11, 13, 15, 17, 19], false));
    assert!(l
        .service
        .history(hist("r", Some(1), None, 5))
        .await
        .unwrap()
        .messages
        .is_empty());

    for (before, after, limit) in [
        (None, None, 100),
        (None, None, 1),
        (Some(499), None, 100),
        (Some(300), None, 7),
        (None, Some(400), 100),
        (None, Some(2), 5),
        (Some(450), Some(380), 10),
    ] {
        let svc = l
            .service
            .history(hist("r", before, after, limit))
            .await
            .unwrap();
        let q = HistoryQuery {
            before,
            after,
            limit: limit as usize,
        };
        let (msgs, more) = l.model.history("r", q).await.unwrap();
        assert_eq!(
            (svc.messages, svc.more),
            (msgs, more),
            "{before:?} {after:?} {limit}"
        );
    }
    assert_eq!(
        code(l.service.history(hist("r", None, None, 0)).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(l.service.history(hist("r", None, None, 101)).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(l.service.history(hist("nope", None, None, 5)).await),
        ErrorCode::NotFound
    );
}

/// Delivering a message again (behind the checkpoint, or with a lost checkpoint) changes
/// nothing, and new messages chain on after the last stored one.
#[tokio::test]
async fn rewriting_messages_is_idempotent() {
    let l = Local::new().await;
    create(&l, "r", RoomKind::Public, "ann").await;
    let mut cp = 0;
    l.deliver(3, &mut cp, &[(1, "r", "a"), (2, "r", "b"), (3, "r", "c")])
        .await;
    let before = l.service.history(hist("r", None, None, 10)).await.unwrap();
    let mut lost = 0; // as if the checkpoint had not been stored
    l.deliver(3, &mut lost, &[(2, "r", "x"), (3, "r", "y")])
        .await;
    l.deliver(3, &mut cp, &[(2, "r", "x"), (3, "r", "y"), (4, "r", "d")])
        .await;
    assert_eq!(cp, 4);
    assert_eq!(l.model.checkpoint(3).await.unwrap(), 4);
    let after = l.service.history(hist("r", None, None, 10)).await.unwrap();
    assert_eq!(after.messages[..3], before.messages[..]);
    assert_eq!(after.messages[3].prev, 3);
    assert_eq!(after.messages[3].body, "d");
    let stats = l.model.stats("r").await.unwrap();
    assert_eq!((stats.last_seq, stats.count), (4, 4));
}

/// Cursors only move forward and unread counts the stored messages above them, also for a
/// cursor set ahead of what is stored.
#[tokio::test]
async fn cursors_move_forward_and_drive_unread() {
    let l = Local::new().await;
    users(&l, &["ann"]).await;
    create(&l, "r", RoomKind::Public, "ann").await;
    let mut cp = 0;
    let msgs: Vec<(u64, &str, &str)> = (1..=10).map(|s| (s * 10, "r", "x")).collect();
    l.deliver(0, &mut cp, &msgs).await;
    let unread = |l: &Local| {
        let svc = l.service.clone();
        async move {
            let list = svc
                .rooms_list(ListRoomsRequest { user: "ann".into() })
                .await
                .unwrap();
            list.rooms.iter().find(|r| r.room == "r").unwrap().unread
        }
    };
    let set = |seq: u64| SetCursorRequest {
        room: "r".into(),
        user: "ann".into(),
        seq,
    };
    assert_eq!(unread(&l).await, 10);
    l.service.cursor(set(45)).await.unwrap();
    assert_eq!(unread(&l).await, 6);
    l.service.cursor(set(20)).await.unwrap();
    assert_eq!(unread(&l).await, 6, "cursors never move back");
    l.service.cursor(set(100)).await.unwrap();
    assert_eq!(unread(&l).await, 0);
    l.service.cursor(set(150)).await.unwrap();
    l.deliver(
        0,
        &mut cp,
        &[(120, "r", "x"), (150, "r", "x"), (160, "r", "x")],
    )
    .await;
    assert_eq!(unread(&l).await, 1, "only seq 160 is above the cursor");
    assert_eq!(
        code(
            l.service
                .cursor(SetCursorRequest {
                    room: "zz".into(),
                    ..set(1)
                })
                .await
        ),
        ErrorCode::NotFound
    );
}

fn add(room: &str, user: &str, role: Role, actor: &str) -> AddMemberRequest {
    AddMemberRequest {
        room: room.into(),
        user: user.into(),
        role,
        actor: actor.into(),
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
        .rooms_list(ListRoomsRequest { user: "ann".into() })
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
    let short = Credentials {
        username: "bob".into(),
        password: "1234567".into(),
    };
    assert_eq!(code(s.register(short).await), ErrorCode::BadRequest);
    assert_eq!(code(s.register(creds("b.b")).await), ErrorCode::BadRequest);
    assert_eq!(s.login(creds("ann")).await.unwrap().user, "ann");
    let wrong = Credentials {
        username: "ann".into(),
        password: "wrong password".into(),
    };
    let e1 = s.login(wrong).await.unwrap_err();
    let e2 = s.login(creds("nobody")).await.unwrap_err();
    assert_eq!(e1.code, ErrorCode::Unauthorized);
    assert_eq!(e1, e2, "unknown user and wrong password look the same");
    let stored = l.model.user("ann").await.unwrap().unwrap();
    assert!(stored.hash.starts_with("$argon2id$"));
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
