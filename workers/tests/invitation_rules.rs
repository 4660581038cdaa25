//! Invitations in process (no NATS): the setting, keeping and replacing invitations, the
//! bound per user, the list by pages, and the room worker's check of an add that may become
//! an invitation (the same rules as an add; a member's role changes instead).

mod common;

use chatmesh_protocol::invitations::{
    Adds, InvitationQuery, InvitationsRequest, InviteRequest, SetAddsRequest, MAX_PENDING,
};
use chatmesh_protocol::service::{AddMemberRequest, Role, RoomKind, UserRequest};
use chatmesh_protocol::ErrorCode;
use common::{code, create, users, Local};

fn invite(user: &str, room: &str, by: &str) -> InviteRequest {
    InviteRequest {
        user: user.into(),
        room: room.into(),
        by: by.into(),
        role: Role::Member,
    }
}

fn query(user: &str, room: &str) -> InvitationQuery {
    InvitationQuery {
        user: user.into(),
        room: room.into(),
    }
}

fn page(user: &str, after: Option<&str>, limit: u32) -> InvitationsRequest {
    InvitationsRequest {
        user: user.into(),
        after: after.map(str::to_owned),
        limit,
    }
}

/// The setting is per account (anyone by default); an invitation to a room replaces the
/// earlier one; a user holds at most [`MAX_PENDING`] (a replacement still goes through at the
/// bound); the list pages by room; a deleted invitation is gone.
#[tokio::test]
async fn invitations_are_kept_bounded_listed_and_dropped() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob"]).await;
    let me = |u: &str| UserRequest { user: u.into() };
    assert_eq!(s.adds_get(me("bob")).await.unwrap().adds, Adds::Anyone);
    let set = SetAddsRequest {
        user: "bob".into(),
        adds: Adds::Invitations,
    };
    assert_eq!(s.adds_set(set).await.unwrap().adds, Adds::Invitations);
    assert_eq!(s.adds_get(me("bob")).await.unwrap().adds, Adds::Invitations);
    assert_eq!(s.adds_get(me("ann")).await.unwrap().adds, Adds::Anyone);
    assert_eq!(code(s.adds_get(me("nobody")).await), ErrorCode::NotFound);
    assert_eq!(
        code(s.invitation_put(invite("nobody", "r", "ann")).await),
        ErrorCode::NotFound
    );

    for n in 0..MAX_PENDING {
        s.invitation_put(invite("bob", &format!("r{n:03}"), "ann"))
            .await
            .unwrap();
    }
    let over = s.invitation_put(invite("bob", "zzz", "ann")).await;
    assert_eq!(code(over), ErrorCode::Conflict);
    let again = InviteRequest {
        role: Role::Admin,
        ..invite("bob", "r007", "ann")
    };
    s.invitation_put(again).await.unwrap();
    let got = s.invitation_get(query("bob", "r007")).await.unwrap();
    assert_eq!((got.by.as_str(), got.role), ("ann", Role::Admin));
    // The same invitation again is the one kept (not stored, nor told, again).
    let same = InviteRequest {
        role: Role::Admin,
        ..invite("bob", "r007", "ann")
    };
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(s.invitation_put(same).await.unwrap(), got);

    let first = s.invitations_list(page("bob", None, 2)).await.unwrap();
    let rooms: Vec<&str> = first.invitations.iter().map(|i| i.room.as_str()).collect();
    assert_eq!((rooms, first.more), (vec!["r000", "r001"], true));
    let last = s
        .invitations_list(page("bob", Some("r197"), 200))
        .await
        .unwrap();
    let rooms: Vec<&str> = last.invitations.iter().map(|i| i.room.as_str()).collect();
    assert_eq!((rooms, last.more), (vec!["r198", "r199"], false));
    assert_eq!(
        code(s.invitations_list(page("bob", None, 0)).await),
        ErrorCode::BadRequest
    );

    s.invitation_delete(query("bob", "r000")).await.unwrap();
    assert_eq!(
        code(s.invitation_get(query("bob", "r000")).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(s.invitation_delete(query("bob", "r000")).await),
        ErrorCode::NotFound
    );
    s.invitation_put(invite("bob", "zzz", "ann")).await.unwrap();
}

/// `member_invite` checks as an add does (only owners and admins, no owner role, no banned
/// user) and adds nobody new: it says to invite; a member's role changes at once.
#[tokio::test]
async fn the_room_check_of_an_invitation_is_an_add_that_adds_nobody_new() {
    let l = Local::new().await;
    let s = &l.service;
    users(&l, &["ann", "bob", "cat"]).await;
    create(&l, "hall", RoomKind::Private, "ann").await;
    let add = |user: &str, role: Role, actor: &str| AddMemberRequest {
        room: "hall".into(),
        user: user.into(),
        role,
        actor: actor.into(),
        invited_at: None,
    };
    assert!(
        s.member_invite(add("bob", Role::Member, "ann"))
            .await
            .unwrap()
            .invite
    );
    assert_eq!(l.model.role("hall", "bob").await.unwrap(), None);
    assert_eq!(
        code(s.member_invite(add("bob", Role::Member, "cat")).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(s.member_invite(add("bob", Role::Owner, "ann")).await),
        ErrorCode::BadRequest
    );
    s.member_add(add("cat", Role::Member, "ann")).await.unwrap();
    let changed = s
        .member_invite(add("cat", Role::Admin, "ann"))
        .await
        .unwrap();
    assert!(!changed.invite);
    assert_eq!(
        l.model.role("hall", "cat").await.unwrap(),
        Some(Role::Admin)
    );
}
