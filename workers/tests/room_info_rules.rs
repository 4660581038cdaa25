//! Member lists, topics, profiles and password changes in process (no NATS): who may do
//! what, paging, validation, and what is stored.

mod common;

use chatmesh_protocol::service::*;
use chatmesh_protocol::ErrorCode;
use common::{code, create, creds, users, Local};

fn page(room: &str, actor: &str, after: Option<&str>, limit: u32) -> MembersRequest {
    MembersRequest {
        room: room.into(),
        actor: actor.into(),
        after: after.map(Into::into),
        limit,
        without_names: false,
    }
}

fn topic(room: &str, actor: &str, text: Option<&str>) -> SetTopicRequest {
    SetTopicRequest {
        room: room.into(),
        actor: actor.into(),
        topic: text.map(Into::into),
    }
}

fn add(room: &str, user: &str, role: Role) -> AddMemberRequest {
    AddMemberRequest {
        room: room.into(),
        user: user.into(),
        role,
        actor: "ann".into(),
        invited_at: None,
    }
}

/// Pages follow `after` (a name that is not a member works too) and reach every member once;
/// `limit` is 1–200; only members list, and unknown rooms are `not_found`.
#[tokio::test]
async fn member_pages_are_bounded_and_for_members() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob", "cy", "dee", "eve"]).await;
    create(&l, "club", RoomKind::Private, "ann").await;
    for u in ["bob", "cy", "dee"] {
        s.member_add(add("club", u, Role::Member)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let p = s
            .members_list(page("club", "cy", after.as_deref(), 3))
            .await
            .unwrap();
        assert!(p.members.len() <= 3);
        seen.extend(p.members.iter().map(|m| m.user.clone()));
        after = p.members.last().map(|m| m.user.clone());
        if !p.more {
            break;
        }
    }
    assert_eq!(seen, ["ann", "bob", "cy", "dee"]);
    let p = s
        .members_list(page("club", "ann", Some("bz"), 10))
        .await
        .unwrap();
    let names: Vec<_> = p.members.iter().map(|m| m.user.as_str()).collect();
    assert_eq!(names, ["cy", "dee"]);
    assert_eq!(
        code(s.members_list(page("club", "eve", None, 10)).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(s.members_list(page("nowhere", "ann", None, 10)).await),
        ErrorCode::NotFound
    );
    for limit in [0, 201] {
        assert_eq!(
            code(s.members_list(page("club", "ann", None, limit)).await),
            ErrorCode::BadRequest
        );
    }
    assert_eq!(
        code(s.members_list(page("club", "ann", Some("a b"), 10)).await),
        ErrorCode::BadRequest
    );
}

/// Owner and admins set the topic; members, outsiders and DM users may not; it is checked,
/// trimmed, stored apart from the cached room record, listed, and cleared by `None`.
#[tokio::test]
async fn topics_follow_roles_and_reach_the_room_list() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob", "cy"]).await;
    create(&l, "lounge", RoomKind::Public, "ann").await;
    s.member_add(add("lounge", "bob", Role::Admin))
        .await
        .unwrap();
    s.member_add(add("lounge", "cy", Role::Member))
        .await
        .unwrap();
    // The room record is cached now; the topic must not be stale because of it.
    s.rooms_list(ListRoomsRequest {
        user: "cy".into(),
        after: None,
    })
    .await
    .unwrap();
    let set = s
        .room_topic(topic("lounge", "bob", Some("  ferns 🌿 ")))
        .await
        .unwrap();
    assert_eq!(set.topic.as_deref(), Some("ferns 🌿"));
    let listed = s
        .rooms_list(ListRoomsRequest {
            user: "cy".into(),
            after: None,
        })
        .await
        .unwrap();
    let lounge = listed.rooms.iter().find(|r| r.room == "lounge").unwrap();
    assert_eq!(lounge.topic.as_deref(), Some("ferns 🌿"));
    for actor in ["cy", "dee"] {
        assert_eq!(
            code(s.room_topic(topic("lounge", actor, Some("mine"))).await),
            ErrorCode::Forbidden
        );
    }
    for bad in ["a\u{202E}b", "line\nbreak", &"x".repeat(257)] {
        assert_eq!(
            code(s.room_topic(topic("lounge", "ann", Some(bad))).await),
            ErrorCode::BadRequest
        );
    }
    let dm = s
        .dm(DmRequest {
            a: "ann".into(),
            b: "bob".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        code(s.room_topic(topic(&dm.room, "ann", Some("us"))).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        s.room_topic(topic("lounge", "ann", None))
            .await
            .unwrap()
            .topic,
        None
    );
    assert_eq!(l.model.topic("lounge").await.unwrap(), None);
}

/// Display names are validated and kept with the user record (its hash and generation
/// untouched) and shown in member lists; a password change needs the old password, bumps
/// the generation and replaces the hash.
#[tokio::test]
async fn profiles_and_password_changes() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann"]).await;
    let set = |name: Option<&str>| SetProfileRequest {
        user: "ann".into(),
        display_name: name.map(Into::into),
    };
    let before = l.model.user("ann").await.unwrap().unwrap();
    let p = s.profile_set(set(Some(" Ann Ö "))).await.unwrap();
    assert_eq!(p.display_name.as_deref(), Some("Ann Ö"));
    let after = l.model.user("ann").await.unwrap().unwrap();
    assert_eq!((after.hash, after.gen), (before.hash.clone(), before.gen));
    assert_eq!(
        code(s.profile_set(set(Some("tab\there"))).await),
        ErrorCode::BadRequest
    );
    create(&l, "den", RoomKind::Private, "ann").await;
    let listed = s.members_list(page("den", "ann", None, 5)).await.unwrap();
    assert_eq!(listed.members[0].display_name.as_deref(), Some("Ann Ö"));
    assert_eq!(
        code(
            s.profile_get(UserRequest {
                user: "nobody".into()
            })
            .await
        ),
        ErrorCode::NotFound
    );

    let change = |old: &str, new: &str| ChangePasswordRequest {
        user: "ann".into(),
        old_password: old.into(),
        new_password: new.into(),
    };
    assert_eq!(
        code(
            s.password_change(change("wrong horse", "battery staple"))
                .await
        ),
        ErrorCode::Unauthorized
    );
    assert_eq!(
        code(s.password_change(change("correct horse", "short")).await),
        ErrorCode::BadRequest
    );
    let gen = s
        .password_change(change("correct horse", "battery staple"))
        .await
        .unwrap();
    assert_eq!(gen.gen, before.gen + 1);
    assert_eq!(code(s.login(creds("ann")).await), ErrorCode::Unauthorized);
    let new = Credentials::new("ann", "battery staple");
    assert_eq!(s.login(new).await.unwrap().gen, gen.gen);
    let kept = l.model.user("ann").await.unwrap().unwrap();
    assert_eq!(
        kept.display_name.as_deref(),
        Some("Ann Ö"),
        "the profile survives"
    );
}
