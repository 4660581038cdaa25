//! Invitations (extension, docs/PROTOCOL.md "Invitations") against the whole mesh: a user who
//! takes invitations is invited, not added, told live, and a member once it accepts; a
//! declined invitation adds nobody; an invitation whose inviter lost the right to add (or
//! whose user was banned or removed by someone else meanwhile) is void and gone when accepted.

mod common;

use anyhow::{Context, Result};
use common::*;
use serde_json::{json, Value};

/// `POST /v1/rooms/{room}/members` by `token`.
async fn add(api: &Api, token: &str, room: &str, user: &str, role: &str) -> Result<(u16, Value)> {
    let path = format!("/v1/rooms/{room}/members");
    let body = json!({"user": user, "role": role});
    api.call("POST", &path, Some(token), Some(body)).await
}

/// `user`'s pending invitations: (room, by, role).
async fn invitations(api: &Api, token: &str) -> Result<Vec<(String, String, String)>> {
    let (s, v) = api
        .call("GET", "/v1/users/me/invitations", Some(token), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    let list = v["invitations"].as_array().cloned().unwrap_or_default();
    Ok(list
        .iter()
        .map(|i| {
            let text = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
            (text("room"), text("by"), text("role"))
        })
        .collect())
}

/// `token`'s answer to its invitation to `room`: accept (`POST`) or decline (`DELETE`).
async fn answer(api: &Api, token: &str, room: &str, accept: bool) -> Result<(u16, Value)> {
    let method = if accept { "POST" } else { "DELETE" };
    let path = format!("/v1/users/me/invitations/{room}");
    api.call(method, &path, Some(token), None).await
}

/// The members of `room` as `token` reads them: (user, role).
async fn members(api: &Api, token: &str, room: &str) -> Result<Vec<(String, String)>> {
    let path = format!("/v1/rooms/{room}/members");
    let (s, v) = api.call("GET", &path, Some(token), None).await?;
    assert_eq!(s, 200, "{v}");
    let list = v["members"].as_array().cloned().unwrap_or_default();
    Ok(list
        .iter()
        .map(|m| {
            let text = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (text("user"), text("role"))
        })
        .collect())
}

/// Makes `user` (by `token`) take invitations.
async fn takes_invitations(api: &Api, token: &str) -> Result<()> {
    let (s, v) = api
        .call("GET", "/v1/users/me/adds", Some(token), None)
        .await?;
    assert_eq!((s, v["adds"].as_str()), (200, Some("anyone")), "{v}");
    let body = json!({"adds": "invitations"});
    let (s, v) = api
        .call("PUT", "/v1/users/me/adds", Some(token), Some(body))
        .await?;
    assert_eq!((s, v["adds"].as_str()), (200, Some("invitations")), "{v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_takes_invitations_is_invited_told_and_added_once_it_accepts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    api.room(&ann, "hall", "private").await?;
    takes_invitations(&api, &bob).await?;
    let mut session = Client::login(&mesh.ws_url(), &bob).await?;

    let (s, v) = add(&api, &ann, "hall", "bob", "member").await?;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["invited"], json!(true));
    assert_eq!(v["invitation"]["room"], json!("hall"));
    assert_eq!(v["invitation"]["by"], json!("ann"));
    session
        .wait_for(|f| {
            matches!(f, ServerFrame::Invitation { room, by, role: chatmesh_protocol::service::Role::Member }
                if room == "hall" && by == "ann")
        })
        .await?;
    let refused = session.request(frame::join("hall")).await?;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::Forbidden),
        "{refused:?}"
    );
    let entry = ("hall".to_owned(), "ann".to_owned(), "member".to_owned());
    assert_eq!(invitations(&api, &bob).await?, vec![entry]);
    // Inviting again replaces the invitation (here with another role): still one.
    let (s, v) = add(&api, &ann, "hall", "bob", "admin").await?;
    assert_eq!(s, 202, "{v}");
    let entry = ("hall".to_owned(), "ann".to_owned(), "admin".to_owned());
    assert_eq!(invitations(&api, &bob).await?, vec![entry]);

    let (s, v) = answer(&api, &bob, "hall", true).await?;
    assert_eq!(s, 204, "{v}");
    session
        .wait_for(
            |f| matches!(f, ServerFrame::Membership { room, role: Some(_) } if room == "hall"),
        )
        .await?;
    session.join("hall").await?;
    assert!(invitations(&api, &bob).await?.is_empty());
    let (s, v) = answer(&api, &bob, "hall", true).await?;
    assert_eq!((s, http_error(&v)), (404, Some(ErrorCode::NotFound)), "{v}");

    // A member's role changes without an invitation; the caller adding itself needs none.
    let (s, v) = add(&api, &ann, "hall", "bob", "member").await?;
    assert_eq!(s, 204, "{v}");
    let roles = members(&api, &ann, "hall").await?;
    let want = [("ann", "owner"), ("bob", "member")].map(|(u, r)| (u.to_owned(), r.to_owned()));
    assert_eq!(roles, want);
    // A user who takes adds is added as before.
    let cat = api.user("cat").await?;
    let (s, v) = add(&api, &ann, "hall", "cat", "member").await?;
    assert_eq!(s, 204, "{v}");
    let mut c = Client::login(&mesh.ws_url(), &cat).await?;
    c.join("hall").await?;
    mesh.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_and_void_invitations_add_nobody() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let dan = api.user("dan").await?;
    for room in ["one", "two", "three"] {
        api.room(&ann, room, "private").await?;
    }
    takes_invitations(&api, &bob).await?;
    let (s, v) = add(&api, &ann, "two", "dan", "admin").await?;
    assert_eq!(s, 204, "{v}");
    for (room, by) in [("one", &ann), ("two", &dan), ("three", &ann)] {
        let (s, v) = add(&api, by, room, "bob", "member").await?;
        assert_eq!(s, 202, "{room}: {v}");
    }
    assert_eq!(invitations(&api, &bob).await?.len(), 3);

    // Declined: gone, and bob is no member.
    let (s, v) = answer(&api, &bob, "one", false).await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = answer(&api, &bob, "one", false).await?;
    assert_eq!((s, http_error(&v)), (404, Some(ErrorCode::NotFound)), "{v}");
    // Void: dan may no longer add members to `two` once demoted...
    let (s, v) = add(&api, &ann, "two", "dan", "member").await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = answer(&api, &bob, "two", true).await?;
    assert_eq!(
        (s, http_error(&v)),
        (403, Some(ErrorCode::Forbidden)),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("no longer valid"));
    // ...and bob was banned from `three` after his invitation.
    let (s, v) = api
        .call(
            "POST",
            "/v1/rooms/three/bans",
            Some(&ann),
            Some(json!({"user": "bob"})),
        )
        .await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = answer(&api, &bob, "three", true).await?;
    assert_eq!((s, http_error(&v)), (409, Some(ErrorCode::Conflict)), "{v}");
    assert!(
        invitations(&api, &bob).await?.is_empty(),
        "void ones are gone"
    );

    for room in ["one", "two", "three"] {
        let names = members(&api, &ann, room).await?;
        assert!(!names.iter().any(|(u, _)| u == "bob"), "{room}: {names:?}");
    }
    // A bad setting is refused.
    let (s, v) = api
        .call(
            "PUT",
            "/v1/users/me/adds",
            Some(&bob),
            Some(json!({"adds": "nobody"})),
        )
        .await?;
    assert_eq!(s, 400, "{v}");
    mesh.stop().await
}

/// A kick voids the invitations made before it: bob, invited to a public room as admin,
/// joins it by himself as a plain member, misbehaves and is removed by the owner; his old
/// invitation then adds nobody (it made him admin before). One made after the kick still
/// counts, and bob leaving by himself voids nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_voids_the_invitations_made_before_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    api.room(&ann, "open", "public").await?;
    takes_invitations(&api, &bob).await?;
    let (s, v) = add(&api, &ann, "open", "bob", "admin").await?;
    assert_eq!(s, 202, "{v}");
    let join = |token: String| {
        let url = mesh.ws_url();
        async move {
            let mut c = Client::login(&url, &token).await?;
            c.join("open").await?;
            anyhow::Ok(())
        }
    };
    join(bob.clone()).await?;
    assert!(members(&api, &ann, "open")
        .await?
        .contains(&("bob".into(), "member".into())));
    let (s, v) = api
        .call("DELETE", "/v1/rooms/open/members/bob", Some(&ann), None)
        .await?;
    assert_eq!(s, 204, "{v}");

    let (s, v) = answer(&api, &bob, "open", true).await?;
    assert_eq!(
        (s, http_error(&v)),
        (403, Some(ErrorCode::Forbidden)),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("no longer valid"));
    assert!(
        invitations(&api, &bob).await?.is_empty(),
        "the void one is gone"
    );
    assert!(!members(&api, &ann, "open")
        .await?
        .iter()
        .any(|(u, _)| u == "bob"));

    // Invited again after the kick: that one counts. Leaving by himself voids nothing.
    let (s, v) = add(&api, &ann, "open", "bob", "member").await?;
    assert_eq!(s, 202, "{v}");
    let (s, v) = answer(&api, &bob, "open", true).await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = api
        .call("DELETE", "/v1/rooms/open/members/bob", Some(&bob), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = add(&api, &ann, "open", "bob", "admin").await?;
    assert_eq!(s, 202, "{v}");
    join(bob.clone()).await?;
    let (s, v) = api
        .call("DELETE", "/v1/rooms/open/members/bob", Some(&bob), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = answer(&api, &bob, "open", true).await?;
    assert_eq!(s, 204, "{v}");
    assert!(members(&api, &ann, "open")
        .await?
        .contains(&("bob".into(), "admin".into())));
    mesh.stop().await
}

/// Inviters cannot flood a user with one room's invitation: one replacement soon after it
/// (a role corrected) is taken, then replacing it again (another role or another inviter)
/// within a minute is refused `rate_limited` with a `Retry-After`, and the user keeps the
/// one it has; the same invitation again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inviter_cannot_flood_a_user_with_one_rooms_invitation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let dan = api.user("dan").await?;
    api.room(&ann, "club", "private").await?;
    let (s, v) = add(&api, &ann, "club", "dan", "admin").await?;
    assert_eq!(s, 204, "{v}");
    takes_invitations(&api, &bob).await?;
    let (s, v) = add(&api, &dan, "club", "bob", "member").await?;
    assert_eq!(s, 202, "{v}");
    let (s, v) = add(&api, &dan, "club", "bob", "member").await?;
    assert_eq!(s, 202, "the same one again: {v}");
    let (s, v) = add(&api, &ann, "club", "bob", "admin").await?;
    assert_eq!(s, 202, "the owner corrects the role: {v}");
    for (by, role) in [(&dan, "member"), (&ann, "member")] {
        let res = reqwest::Client::new()
            .post(format!("{}/v1/rooms/club/members", api.base))
            .bearer_auth(by)
            .json(&json!({"user": "bob", "role": role}))
            .send()
            .await?;
        assert_eq!(res.status(), 429, "replaced within a minute ({role})");
        assert!(res.headers().contains_key("retry-after"));
    }
    assert_eq!(
        invitations(&api, &bob).await?,
        vec![("club".into(), "ann".into(), "admin".into())]
    );
    mesh.stop().await
}

/// The Rust SDK's side: `set_adds`, `add_or_invite` (`Added::Invited`), the session's
/// `Event::Invitation`, `invitations`, `accept_invitation` and `decline_invitation`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_invites_and_answers() -> Result<()> {
    use chatmesh_client::{Added, Adds, Event};
    use chatmesh_protocol::service::{Role, RoomKind};

    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    for name in ["ann", "bob", "cat"] {
        api.user(name).await?;
    }
    let url = mesh.url();
    let connect = |user: &'static str| {
        chatmesh_client::Client::builder(&url)
            .login(user, "correct horse")
            .connect()
    };
    let ann = connect("ann").await?;
    let mut bob = connect("bob").await?;
    let mut events = bob.events().context("events")?;
    let set = bob.http().set_adds(Adds::Invitations).await?;
    assert_eq!(set, Adds::Invitations);
    assert_eq!(bob.http().adds().await?, Adds::Invitations);
    for room in ["den", "loft"] {
        ann.http().create_room(room, RoomKind::Private).await?;
    }

    let added = ann.http().add_or_invite("den", "bob", false).await?;
    let Added::Invited(invitation) = added else {
        anyhow::bail!("bob was added: {added:?}");
    };
    assert_eq!(
        (invitation.room.as_str(), invitation.by.as_str()),
        ("den", "ann")
    );
    let told = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(Event::Invitation { room, by, role }) => return Some((room, by, role)),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await?;
    let told = told.context("the session ended")?;
    assert_eq!(told, ("den".to_owned(), "ann".to_owned(), Role::Member));
    let admin = ann.http().add_or_invite("loft", "bob", true).await?;
    assert!(
        matches!(admin, Added::Invited(ref i) if i.role == Role::Admin),
        "{admin:?}"
    );
    let page = bob.http().invitations(None, 10).await?;
    let rooms: Vec<&str> = page.invitations.iter().map(|i| i.room.as_str()).collect();
    assert_eq!((rooms, page.more), (vec!["den", "loft"], false));

    bob.http().decline_invitation("loft").await?;
    bob.http().accept_invitation("den").await?;
    bob.join("den").await?;
    assert!(bob
        .http()
        .invitations(None, 10)
        .await?
        .invitations
        .is_empty());
    let cat = ann.http().add_or_invite("den", "cat", false).await?;
    assert_eq!(cat, Added::Member, "cat takes adds");
    mesh.stop().await
}
