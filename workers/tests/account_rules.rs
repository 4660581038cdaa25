//! Account and quota rules in process (no NATS): token generations and `logout_all`, the
//! per-user room quota, the bounded public tail and the pages of `rooms_list`, and the
//! names of server admins.

mod common;

use chatmesh_protocol::service::*;
use chatmesh_protocol::ErrorCode;
use chatmesh_workers::model::Model;
use chatmesh_workers::store::WriteBatch;
use common::{code, create, creds, users, Local};

fn user(name: &str) -> UserRequest {
    UserRequest { user: name.into() }
}

/// Login hands out the current generation; `logout_all` bumps it (and only that user's);
/// unknown users are generation 0 and cannot be logged out.
#[tokio::test]
async fn logout_all_bumps_the_generation() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob"]).await;
    assert_eq!(s.login(creds("ann")).await.unwrap().gen, 0);
    assert_eq!(s.logout_all(user("ann")).await.unwrap().gen, 1);
    assert_eq!(s.logout_all(user("ann")).await.unwrap().gen, 2);
    assert_eq!(s.login(creds("ann")).await.unwrap().gen, 2);
    assert_eq!(s.user_gen(user("ann")).await.unwrap().gen, 2);
    assert_eq!(s.user_gen(user("bob")).await.unwrap().gen, 0);
    assert_eq!(s.user_gen(user("nobody")).await.unwrap().gen, 0);
    assert_eq!(
        code(s.logout_all(user("nobody")).await),
        ErrorCode::NotFound
    );
    assert_eq!(code(s.user_gen(user("a.b")).await), ErrorCode::BadRequest);
    let stored = l.model.user("ann").await.unwrap().unwrap();
    assert_eq!(stored.gen, 2, "kept with the user record");
}

/// An account an admin disabled while its password change or `logout_all` was on its way
/// (the gateway checked the caller's token just before) is refused under the account's
/// lock: nothing moves its generation, replaces its password or hands out a new one.
#[tokio::test]
async fn a_disabled_account_changes_no_password_and_is_not_logged_out_again() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob"]).await;
    // The admin's disable, as it leaves the record (`set_disabled` bumps the generation).
    let mut rec = l.model.user("ann").await.unwrap().unwrap();
    rec.disabled = true;
    rec.gen += 1;
    let mut batch = WriteBatch::new();
    Model::put_user(&mut batch, "ann", &rec);
    l.model.write(batch).await.unwrap();
    let change = |u: &str| ChangePasswordRequest {
        user: u.into(),
        old_password: "correct horse".into(),
        new_password: "another horse staple".into(),
    };
    let refused = s.password_change(change("ann")).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused:?}");
    assert_eq!(code(s.logout_all(user("ann")).await), ErrorCode::Forbidden);
    let stored = l.model.user("ann").await.unwrap().unwrap();
    assert_eq!(stored.gen, rec.gen, "the generation did not move");
    assert_eq!(stored.hash, rec.hash, "the password was not replaced");
    assert!(stored.disabled);
    // An enabled account is not touched by the rule.
    assert_eq!(s.password_change(change("bob")).await.unwrap().gen, 1);
    assert_eq!(s.logout_all(user("bob")).await.unwrap().gen, 2);
}

/// The worker owning an account's partition counts its wrong passwords from every gateway
/// together: past the burst, the account's logins are refused `rate_limited` before any
/// hashing, the right password's too (the documented tradeoff) unless it comes from a known
/// device, while other accounts and names without an account keep their own counts. Right
/// passwords spend nothing.
#[tokio::test]
async fn wrong_passwords_are_counted_per_account_on_the_worker() {
    let l = Local::with(|c| {
        c.login_account_failures_per_minute = 1;
        c.login_account_burst = 3;
    })
    .await;
    let s = &l.service;
    users(&l, &["ann", "bob"]).await;
    let wrong = |u: &str| Credentials::new(u, "wrong horse");
    for _ in 0..5 {
        s.login(creds("ann"))
            .await
            .expect("right passwords spend nothing");
    }
    for _ in 0..3 {
        assert_eq!(code(s.login(wrong("ann")).await), ErrorCode::Unauthorized);
    }
    let refused = s.login(wrong("ann")).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited);
    let wait = refused.retry_after().expect("the refusal names its wait");
    assert!(wait.as_secs() >= 1 && wait.as_secs() <= 60, "{wait:?}");
    assert_eq!(code(s.login(creds("ann")).await), ErrorCode::RateLimited);
    // A known device's login (the gateway checked its device token) is not held by it.
    let known = |c: Credentials| Credentials {
        known_device: Some("d1".into()),
        ..c
    };
    s.login(known(creds("ann")))
        .await
        .expect("the owner's known device");
    assert_eq!(
        code(s.login(known(wrong("ann"))).await),
        ErrorCode::Unauthorized
    );
    s.login(creds("bob"))
        .await
        .expect("another account is not touched");
    for _ in 0..3 {
        assert_eq!(
            code(s.login(wrong("nobody")).await),
            ErrorCode::Unauthorized
        );
    }
    assert_eq!(code(s.login(wrong("nobody")).await), ErrorCode::RateLimited);
}

/// A password change proves the old password again: its wrong ones count toward the
/// account's count on the worker as a login's do (several gateways together), so past the
/// burst the change and the account's logins are refused `rate_limited`; a right old
/// password spends nothing.
#[tokio::test]
async fn a_password_changes_wrong_old_passwords_count_as_logins_do() {
    let l = Local::with(|c| {
        c.login_account_failures_per_minute = 1;
        c.login_account_burst = 3;
    })
    .await;
    let s = &l.service;
    users(&l, &["ann", "bob"]).await;
    let change = |old: &str, new: &str| ChangePasswordRequest {
        user: "ann".into(),
        old_password: old.into(),
        new_password: new.into(),
    };
    for _ in 0..4 {
        s.password_change(change("correct horse", "correct horse"))
            .await
            .expect("a right old password spends nothing");
    }
    for _ in 0..3 {
        let wrong = s
            .password_change(change("wrong horse", "another horse"))
            .await;
        assert_eq!(code(wrong), ErrorCode::Unauthorized);
    }
    let refused = s
        .password_change(change("wrong horse", "another horse"))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited, "{refused:?}");
    assert!(refused.retry_after().is_some(), "{refused:?}");
    assert_eq!(code(s.login(creds("ann")).await), ErrorCode::RateLimited);
    s.login(creds("bob")).await.expect("another account");
}

/// A known device's wrong passwords count toward its account's count (an ordinary login is
/// refused once they spent it) and toward the device's own, over every gateway together:
/// past `DEVICE_FAILURES_PER_HOUR` that device is refused, another device of the account is
/// not.
#[tokio::test]
async fn a_known_devices_wrong_passwords_count_for_the_account_and_the_device() {
    let l = Local::with(|c| {
        c.login_account_failures_per_minute = 1;
        c.login_account_burst = 3;
    })
    .await;
    let s = &l.service;
    users(&l, &["cat"]).await;
    let from = |device: &str, password: &str| Credentials {
        known_device: Some(device.into()),
        ..Credentials::new("cat", password)
    };
    for _ in 0..3 {
        assert_eq!(
            code(s.login(from("d1", "wrong horse")).await),
            ErrorCode::Unauthorized
        );
    }
    assert_eq!(
        code(s.login(creds("cat")).await),
        ErrorCode::RateLimited,
        "the device's wrong passwords spent the account's count"
    );
    let per_device = chatmesh_workers::service::DEVICE_FAILURES_PER_HOUR;
    for _ in 3..per_device {
        assert_eq!(
            code(s.login(from("d1", "wrong horse")).await),
            ErrorCode::Unauthorized
        );
    }
    let refused = s.login(from("d1", "correct horse")).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::RateLimited);
    assert!(
        refused.message.contains("this device"),
        "{}",
        refused.message
    );
    s.login(from("d2", "correct horse"))
        .await
        .expect("another known device of the account");
}

/// A user creates at most `max_rooms_per_user` rooms; a refused or conflicting create does
/// not count, and another user has its own quota.
#[tokio::test]
async fn room_quota_per_user() {
    let l = Local::with(|c| c.max_rooms_per_user = 3).await;
    let s = &l.service;
    for room in ["r1", "r2"] {
        create(&l, room, RoomKind::Public, "ann").await;
    }
    let req = |room: &str, actor: &str| CreateRoomRequest {
        room: room.into(),
        kind: RoomKind::Private,
        actor: actor.into(),
    };
    assert_eq!(
        code(s.room_create(req("r1", "ann")).await),
        ErrorCode::Conflict
    );
    s.room_create(req("r3", "ann")).await.unwrap();
    let e = s.room_create(req("r4", "ann")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains("quota"), "{}", e.message);
    assert_eq!(l.model.rooms_created("ann").await.unwrap(), 3);
    s.room_create(req("r4", "bob")).await.unwrap();
}

/// The user's own rooms come first and whole; the public tail holds at most
/// `rooms_list_public_max` rooms and at most `rooms_list_public_per_owner` of one owner.
#[tokio::test]
async fn room_list_tail_is_bounded_per_owner() {
    let l = Local::with(|c| {
        c.rooms_list_public_max = 5;
        c.rooms_list_public_per_owner = 2;
    })
    .await;
    let s = &l.service;
    for i in 0..10 {
        create(&l, &format!("a-spam{i}"), RoomKind::Public, "spammer").await;
    }
    for room in ["b-one", "b-two", "b-three"] {
        create(&l, room, RoomKind::Public, "bob").await;
    }
    create(&l, "c-cid", RoomKind::Public, "cid").await;
    for room in ["z-mine", "z-also"] {
        create(&l, room, RoomKind::Private, "ann").await;
    }
    let list = s
        .rooms_list(ListRoomsRequest {
            user: "ann".into(),
            after: None,
        })
        .await
        .unwrap();
    let names: Vec<&str> = list.rooms.iter().map(|r| r.room.as_str()).collect();
    assert_eq!(
        names[..2],
        ["z-also", "z-mine"],
        "own rooms first: {names:?}"
    );
    let tail = &names[2..];
    assert_eq!(tail.len(), 5, "{names:?}");
    assert_eq!(tail.iter().filter(|r| r.starts_with("a-")).count(), 2);
    assert_eq!(tail.iter().filter(|r| r.starts_with("b-")).count(), 2);
    assert!(tail.contains(&"c-cid"), "{names:?}");
}

/// A user in more than `rooms_list_max` rooms gets them all, in pages by name: `more` until
/// the last, each next page `after` the last room of the one before; the public rooms come
/// on the last page only; a bad `after` is refused.
#[tokio::test]
async fn a_long_room_list_comes_in_pages() {
    let l = Local::with(|c| c.rooms_list_max = 3).await;
    let s = &l.service;
    for i in 0..7 {
        create(&l, &format!("r{i}"), RoomKind::Private, "ann").await;
    }
    create(&l, "square", RoomKind::Public, "bob").await;
    let page = |after: Option<&str>| ListRoomsRequest {
        user: "ann".into(),
        after: after.map(str::to_owned),
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let list = s.rooms_list(page(after.as_deref())).await.unwrap();
        pages += 1;
        let names: Vec<String> = list.rooms.iter().map(|r| r.room.clone()).collect();
        if list.more {
            assert_eq!(names.len(), 3, "{names:?}");
            assert!(list.rooms.iter().all(|r| r.role.is_some()), "{names:?}");
            after = names.last().cloned();
            seen.extend(names);
        } else {
            assert_eq!(
                names,
                ["r6", "square"],
                "the last page ends with the public room"
            );
            seen.extend(names);
            break;
        }
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "square"],
        "every room once, in order"
    );
    assert_eq!(
        code(s.rooms_list(page(Some("a b"))).await),
        ErrorCode::BadRequest
    );
    let past = s.rooms_list(page(Some("r6"))).await.unwrap();
    assert!(!past.more);
    assert_eq!(
        past.rooms.len(),
        1,
        "past the last own room: the public tail"
    );
}

fn register(name: &str, token: Option<&str>) -> Credentials {
    Credentials {
        admin_token: token.map(str::to_owned),
        ..Credentials::new(name, "correct horse")
    }
}

/// A name of `[admin] users` that has no account is registered only with the bootstrap
/// token (without it anyone who registered the name first would be a server admin); the
/// token is refused for other names, and an admin who has an account is simply taken.
#[tokio::test]
async fn a_server_admins_name_is_registered_only_with_the_bootstrap_token() {
    let l = Local::new().await;
    let s = &l.service;
    let token = "b".repeat(40);
    s.enable_admin(chatmesh_protocol::admin::AdminConfig {
        users: vec!["root".into()],
        bootstrap_token: Some(token.clone()),
        ..Default::default()
    });
    let e = s.register(register("root", None)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(
        e.message.contains("reserved for a server admin"),
        "{}",
        e.message
    );
    let wrong = "c".repeat(40);
    let e = s
        .register(register("root", Some(&wrong)))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains("wrong"), "{}", e.message);
    assert!(l.model.user("root").await.unwrap().is_none());
    assert_eq!(
        code(s.register(register("mallory", Some(&token))).await),
        ErrorCode::BadRequest
    );

    s.register(register("root", Some(&token))).await.unwrap();
    assert_eq!(s.login(creds("root")).await.unwrap().user, "root");
    assert_eq!(
        code(s.register(register("root", Some(&token))).await),
        ErrorCode::Conflict
    );
    s.register(register("ann", None)).await.unwrap();
}

/// Without a bootstrap token a listed name without an account cannot be registered at all.
#[tokio::test]
async fn without_a_bootstrap_token_a_listed_name_cannot_be_registered() {
    let l = Local::new().await;
    let s = &l.service;
    s.enable_admin(chatmesh_protocol::admin::AdminConfig {
        users: vec!["root".into()],
        ..Default::default()
    });
    for token in [None, Some("anything at all, long enough to be a token")] {
        let e = s.register(register("root", token)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(
            e.message.contains("no admin bootstrap token"),
            "{}",
            e.message
        );
    }
    assert!(l.model.user("root").await.unwrap().is_none());
}

/// A right password whose stored hash was made with other argon2 costs than the worker's
/// (the operator changed them) is hashed again with the current ones and stored: accounts
/// that log in move to the new costs, and a wrong password changes nothing.
#[tokio::test]
async fn a_login_moves_a_hash_of_old_costs_to_the_current_ones() {
    let l = Local::new().await;
    users(&l, &["ann"]).await;
    let before = l.model.user("ann").await.unwrap().unwrap().hash;
    assert!(before.contains("m=64,t=1"), "{before}");
    let mut cfg = common::config(l.dir.path());
    cfg.argon2_iterations = 2;
    let caches = std::sync::Arc::new(chatmesh_workers::cache::Caches::new(cfg.cache_sizes()));
    let tuned = chatmesh_workers::Service::new(l.model.clone(), caches, &cfg, None).unwrap();

    let mut wrong = creds("ann");
    wrong.password = "wrong horse".into();
    assert_eq!(code(tuned.login(wrong).await), ErrorCode::Unauthorized);
    assert_eq!(l.model.user("ann").await.unwrap().unwrap().hash, before);
    tuned.login(creds("ann")).await.unwrap();
    let after = l.model.user("ann").await.unwrap().unwrap().hash;
    assert!(after.contains("m=64,t=2"), "{after}");
    tuned.login(creds("ann")).await.unwrap();
    l.service.login(creds("ann")).await.unwrap();
}
