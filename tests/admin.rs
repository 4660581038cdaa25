//! The admin API (issue 18, item 6) over a real mesh: only the server admins of
//! `[admin] users` get through (everyone else 403, audited), accounts are listed by pages,
//! disabled (login refused, tokens revoked, sessions closed 4001 on every gateway) and
//! enabled again, a room is deleted everywhere (members told, store, stream, search,
//! cursors) so its name starts afresh, a user's data is exported, and every action is in
//! the audit log.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use chatmesh::Config;
use chatmesh_protocol::admin::{
    AuditPage, Caller, DeleteProgress, DeleteRoomRequest, DeleteRoomStep, UserPage,
};
use chatmesh_protocol::search::SearchResults;
use chatmesh_protocol::service::{Op, Reply};
use chatmesh_protocol::subjects::{in_subject, svc_subject};
use common::*;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse";

/// A config whose only server admin is `root`.
fn admin_config() -> Config {
    with_admins(fast_config(), &["root"])
}

/// The audit log as `root` sees it (newest first, up to 100 entries).
async fn audit(api: &Api, root: &str) -> Result<AuditPage> {
    let (s, v) = api
        .call("GET", "/v1/admin/audit?limit=100", Some(root), None)
        .await?;
    anyhow::ensure!(s == 200, "audit: {s} {v}");
    Ok(serde_json::from_value(v)?)
}

/// Polls the audit log until an entry matches (a gateway's refusal is recorded without
/// waiting for the worker).
async fn audited(
    api: &Api,
    root: &str,
    what: impl Fn(&chatmesh_protocol::admin::AuditEntry) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = audit(api, root).await?;
        if page.entries.iter().any(&what) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never audited; the log: {:#?}",
            page.entries
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every admin route answers 401 without a token and 403 `forbidden` to a user who is not
/// an admin (even one with a made-up admin claim in its request), and each refusal is in
/// the audit log with the caller, the target and the client IP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admins_are_refused_everywhere_and_audited() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let root = api.server_admin("root").await?;
    let bob = api.user("bob").await?;
    api.room(&root, "lobby", "public").await?;
    let routes = [
        ("GET", "/v1/admin/users", "list_users", ""),
        ("POST", "/v1/admin/users/root/disable", "disable", "root"),
        ("POST", "/v1/admin/users/root/enable", "enable", "root"),
        ("GET", "/v1/admin/users/root/export", "export_user", "root"),
        ("DELETE", "/v1/admin/rooms/lobby", "delete_room", "lobby"),
        ("GET", "/v1/admin/audit", "audit", ""),
    ];
    for (method, path, action, target) in routes {
        let (s, v) = api.call(method, path, None, None).await?;
        assert_eq!(s, 401, "{method} {path} without a token: {v}");
        let body = serde_json::json!({"actor": "root", "admin": true});
        let (s, v) = api.call(method, path, Some(&bob), Some(body)).await?;
        assert_eq!(s, 403, "{method} {path} as bob: {v}");
        assert_eq!(http_error(&v), Some(ErrorCode::Forbidden), "{v}");
        audited(&api, &root, |e| {
            e.actor == "bob"
                && e.action == action
                && e.target == target
                && e.outcome == "forbidden"
                && e.ip == "127.0.0.1"
        })
        .await?;
    }
    // Nothing was done: the room is there, root is not disabled.
    let (s, _) = api
        .call("GET", "/v1/rooms/lobby/messages", Some(&root), None)
        .await?;
    assert_eq!(s, 200);
    mesh.stop().await
}

/// A name of `[admin] users` without an account is not anyone's for the taking: registering
/// it without the bootstrap token, or with a wrong one, is refused (403) and leaves no
/// account; the operator's registration with the token makes the server admin, and is
/// audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_admin_name_is_not_taken_by_whoever_registers_first() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let register = |token: Option<&str>| {
        let mut body = credentials("root", "mallory's password");
        if let Some(token) = token {
            body["admin_token"] = json!(token);
        }
        body
    };
    let wrong = "x".repeat(ADMIN_TOKEN.len());
    for token in [None, Some(wrong.as_str())] {
        let (s, v) = api
            .call("POST", "/v1/auth/register", None, Some(register(token)))
            .await?;
        assert_eq!(
            (s, http_error(&v)),
            (403, Some(ErrorCode::Forbidden)),
            "{v}"
        );
        assert!(v.to_string().contains("reserved for a server admin"), "{v}");
    }
    let (s, v) = api
        .call("POST", "/v1/auth/login", None, Some(register(None)))
        .await?;
    assert_eq!(s, 401, "no account was made: {v}");
    // A token with a name that is not listed is refused too.
    let mut body = credentials("mallory", PASSWORD);
    body["admin_token"] = json!(ADMIN_TOKEN);
    let (s, v) = api
        .call("POST", "/v1/auth/register", None, Some(body))
        .await?;
    assert_eq!(s, 400, "{v}");

    // The operator registers it with the token (naming an address of its own, which the
    // gateway replaces with the one it saw).
    let mut body = credentials("root", PASSWORD);
    body["admin_token"] = json!(ADMIN_TOKEN);
    body["ip"] = json!("198.51.100.7");
    let (s, v) = api
        .call("POST", "/v1/auth/register", None, Some(body))
        .await?;
    assert_eq!(s, 201, "{v}");
    let root = api.server_admin("root").await?;
    let (s, v) = api
        .call("GET", "/v1/admin/users", Some(&root), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    let (s, _) = api
        .call("POST", "/v1/auth/register", None, Some(register(None)))
        .await?;
    assert_eq!(s, 409, "the admin's account exists now");
    // The admin's registration is in the audit log, with the address the gateway saw (not
    // one a client names).
    audited(&api, &root, |e| {
        e.actor == "root"
            && e.action == "register_admin"
            && e.outcome == "ok"
            && e.ip == "127.0.0.1"
    })
    .await?;
    mesh.stop().await
}

/// The workers check the role themselves: a gateway configured with an admin the workers do
/// not know gets `forbidden` from them, and that refusal is audited too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_check_the_role_again() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let root = api.server_admin("root").await?;
    let mallory = api.user("mallory").await?;
    // A second gateway whose [admin] wrongly lists mallory.
    let mut cfg = mesh.config.clone();
    cfg.gateway.listen = "127.0.0.1:0".into();
    cfg.admin.users = vec!["mallory".into()];
    let role = chatmesh_protocol::bus::Role::Gateway;
    let nats = chatmesh::nats::connect(&cfg.mesh, role, "rogue-gateway").await?;
    let rogue = chatmesh::services::GatewayHandle::start(&cfg, nats).await?;
    let rogue_api = Api::at(&format!("http://{}", rogue.addr));
    let (s, v) = rogue_api
        .call("POST", "/v1/admin/users/root/disable", Some(&mallory), None)
        .await?;
    assert_eq!(s, 403, "{v}");
    audited(&api, &root, |e| {
        e.actor == "mallory" && e.action == "disable" && e.outcome == "forbidden"
    })
    .await?;
    let (s, _) = api.call("GET", "/v1/rooms", Some(&root), None).await?;
    assert_eq!(s, 200, "root still works");
    rogue.stop().await;
    mesh.stop().await
}

/// `GET /v1/admin/users` pages through every account once, without password hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_listed_by_pages() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let root = api.server_admin("root").await?;
    let mut names = vec!["root".to_owned()];
    for i in 0..7 {
        let name = format!("user{i}");
        api.user(&name).await?;
        names.push(name);
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/admin/users?limit=3&after={a}"),
            None => "/v1/admin/users?limit=3".to_owned(),
        };
        let (s, v) = api.call("GET", &path, Some(&root), None).await?;
        assert_eq!(s, 200, "{v}");
        assert!(!v.to_string().contains("argon2"), "no hash: {v}");
        let page: UserPage = serde_json::from_value(v)?;
        assert!(page.users.len() <= 3);
        for u in &page.users {
            assert!(!u.disabled && u.created_at > 0, "{u:?}");
            seen.push(u.user.clone());
        }
        if !page.more {
            break;
        }
        after = page.users.last().map(|u| u.user.clone());
    }
    seen.sort();
    names.sort();
    assert_eq!(seen, names, "every account once");
    for bad in [
        "limit=0",
        "limit=1001",
        "after=bad%20name",
        "limit=x",
        "colour=red",
    ] {
        let (s, v) = api
            .call("GET", &format!("/v1/admin/users?{bad}"), Some(&root), None)
            .await?;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    mesh.stop().await
}

/// Disabling an account: login answers 403, its old token 401 on every gateway, its open
/// sessions close with 4001 (here and on a second gateway); an admin cannot disable itself;
/// enabling lets the user log in again. Both actions are audited with actor and target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_and_enable_an_account() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let root = api.server_admin("root").await?;
    let carol = api.user("carol").await?;
    let role = chatmesh_protocol::bus::Role::Gateway;
    let nats = chatmesh::nats::connect(&mesh.config.mesh, role, "second-gateway").await?;
    let second = chatmesh::services::GatewayHandle::start(&mesh.config, nats).await?;
    let far_api = Api::at(&format!("http://{}", second.addr));
    let mut here = Client::login(&mesh.ws_url(), &carol).await?;
    let mut far = Client::login(&format!("ws://{}/v1/ws", second.addr), &carol).await?;

    let (s, v) = api
        .call("POST", "/v1/admin/users/carol/disable", Some(&root), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["disabled"], true);
    assert_eq!(here.ended().await, Ended::Closed(4001));
    assert_eq!(far.ended().await, Ended::Closed(4001));
    for a in [&api, &far_api] {
        let (s, v) = a.call("GET", "/v1/rooms", Some(&carol), None).await?;
        assert_eq!(s, 401, "the old token: {v}");
    }
    let (s, v) = api
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(credentials("carol", PASSWORD)),
        )
        .await?;
    assert_eq!(s, 403, "login of a disabled account: {v}");
    assert!(v.to_string().contains("disabled"), "{v}");
    // A wrong password learns nothing about the account's state.
    let (s, _) = api
        .call(
            "POST",
            "/v1/auth/login",
            None,
            Some(credentials("carol", "wrong pass")),
        )
        .await?;
    assert_eq!(s, 401);
    // Disabling again is harmless.
    let (s, _) = api
        .call("POST", "/v1/admin/users/carol/disable", Some(&root), None)
        .await?;
    assert_eq!(s, 200);

    let (s, v) = api
        .call("POST", "/v1/admin/users/root/disable", Some(&root), None)
        .await?;
    assert_eq!(s, 400, "an admin disabling itself: {v}");

    let (s, v) = api
        .call("POST", "/v1/admin/users/carol/enable", Some(&root), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["disabled"], false);
    let (s, _) = api.call("GET", "/v1/rooms", Some(&carol), None).await?;
    assert_eq!(s, 401, "tokens revoked by the disable stay revoked");
    let fresh = api.user("carol").await?;
    let (s, _) = far_api.call("GET", "/v1/rooms", Some(&fresh), None).await?;
    assert_eq!(s, 200, "a fresh login works, on every gateway");

    for (action, outcome) in [
        ("disable", "ok"),
        ("enable", "ok"),
        ("disable", "bad_request"),
    ] {
        audited(&api, &root, |e| {
            e.actor == "root"
                && e.action == action
                && e.outcome == outcome
                && (e.target == "carol" || outcome == "bad_request")
        })
        .await?;
    }
    let (s, v) = api
        .call("POST", "/v1/admin/users/nobody/disable", Some(&root), None)
        .await?;
    assert_eq!(s, 404, "{v}");
    let (s, v) = api
        .call(
            "POST",
            "/v1/admin/users/bad!name/disable",
            Some(&root),
            None,
        )
        .await?;
    assert_eq!(s, 400, "{v}");
    second.stop().await;
    mesh.stop().await
}

/// The events of two changes of one account can cross (workers publish them after they let
/// go of its lock): the event of a change made before an admin's disable, reaching a gateway
/// after the disable's, does not undo it there (the account's old tokens stay refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_generations_late_event_does_not_enable_a_disabled_account() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let root = api.server_admin("root").await?;
    let carol = api.user("carol").await?;
    let (s, v) = api
        .call("POST", "/v1/admin/users/carol/disable", Some(&root), None)
        .await?;
    assert_eq!((s, v["gen"].as_u64()), (200, Some(1)), "{v}");
    let (s, _) = api.call("GET", "/v1/rooms", Some(&carol), None).await?;
    assert_eq!(s, 401);
    // The late event of generation 0, not disabled, then a probe event behind it on the
    // same subscription (`chat.user.*`): once the probe has taken effect (dave's token of
    // generation 0 refused), the late event was handled before it.
    let dave = api.user("dave").await?;
    let event = |user: &str, gen| chatmesh_protocol::service::UserEvent {
        user: user.into(),
        gen,
        disabled: false,
    };
    for ev in [event("carol", 0), event("dave", 5)] {
        let subject = chatmesh_protocol::subjects::user_subject(&ev.user);
        mesh.worker_nats
            .publish(subject, serde_json::to_vec(&ev)?.into())
            .await?;
    }
    mesh.worker_nats.flush().await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (s, _) = api.call("GET", "/v1/rooms", Some(&dave), None).await?;
        if s == 401 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the probe event never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v) = api.call("GET", "/v1/rooms", Some(&carol), None).await?;
    assert_eq!(
        s, 401,
        "the disabled account's old token after a late event: {v}"
    );
    mesh.stop().await
}

/// Deleting a room: its members' sessions get `membership {role: null}` and `left`, its
/// history answers 404, the stream holds nothing of it, search finds nothing of it, and the
/// name can be created again, empty, with nobody's old cursor or unread count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_room_is_gone_everywhere() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let root = api.server_admin("root").await?;
    let (ann, bob, cid) = (
        api.user("ann").await?,
        api.user("bob").await?,
        api.user("cid").await?,
    );
    api.room(&ann, "doomed", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    let mut c = Client::login(&mesh.ws_url(), &cid).await?;
    a.join("doomed").await?;
    b.join("doomed").await?;
    c.join("doomed").await?;
    let first = a.post("doomed", "m1", "zebra crossing @bob").await?;
    b.post("doomed", "m2", "a zebra reply").await?;
    let reacted = a
        .request(frame::react("doomed", "r1", first.seq, "👍", false))
        .await?;
    assert!(matches!(reacted, ServerFrame::Ack { .. }), "{reacted:?}");
    a.request(frame::reply("doomed", "t1", first.seq, "threaded zebra"))
        .await?;
    // cid reads everything, then leaves: a former member with a cursor.
    let last = c.post("doomed", "m3", "bye").await?;
    c.send(frame::read("doomed", last.seq)).await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (s, _) = api
        .call("DELETE", "/v1/rooms/doomed/members/cid", Some(&cid), None)
        .await?;
    assert_eq!(s, 204);
    // Moderation state of the room: a ban and a display name, gone with it.
    let dan = api.user("dan").await?;
    let (s, v) = api
        .call(
            "POST",
            "/v1/rooms/doomed/bans",
            Some(&ann),
            Some(json!({"user": "dan"})),
        )
        .await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/rooms/doomed",
            Some(&ann),
            Some(json!({"name": "Doomed"})),
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    // The index and the stream have the messages before the deletion.
    until_search(&api, &ann, "q=zebra&room=doomed", |r| r.hits.len() == 3).await?;
    let js = async_nats::jetstream::new(mesh.worker_nats.clone());
    let stream = js.get_stream(chatmesh_protocol::subjects::STREAM).await?;
    let subject = chatmesh_protocol::subjects::in_subject(mesh.config.mesh.partitions, "doomed");
    stream.get_last_raw_message_by_subject(&subject).await?;

    let (s, v) = api
        .call("DELETE", "/v1/admin/rooms/doomed", Some(&root), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["done"], true, "{v}");
    assert_eq!(v["members"], 2, "{v}");
    assert!(v["messages"].as_u64() >= Some(5), "{v}");
    assert!(v["cursors"].as_u64() >= Some(1), "cid's cursor: {v}");
    for s in [&mut a, &mut b] {
        let m = s
            .wait_for(
                |f| matches!(f, ServerFrame::Membership { room, role: None } if room == "doomed"),
            )
            .await?;
        assert!(matches!(m, ServerFrame::Membership { .. }));
        s.wait_for(|f| matches!(f, ServerFrame::Left { room, .. } if room == "doomed"))
            .await?;
    }
    let (s, v) = api
        .call("GET", "/v1/rooms/doomed/messages", Some(&ann), None)
        .await?;
    assert_eq!(s, 404, "history of a deleted room: {v}");
    let (s, v) = api
        .call("DELETE", "/v1/admin/rooms/doomed", Some(&root), None)
        .await?;
    assert_eq!(s, 404, "deleting it again: {v}");

    // The stream holds no message of the room.
    assert!(
        stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .is_err(),
        "a message of the room is left in the stream"
    );

    // The name starts afresh: empty history, no unread for the former member, no old hits.
    api.room(&bob, "doomed", "public").await?;
    let (s, v) = api
        .call("GET", "/v1/rooms/doomed/messages", Some(&bob), None)
        .await?;
    assert_eq!(s, 200, "{v}");
    assert!(http_page(&v).messages.is_empty(), "{v}");
    b.join("doomed").await?;
    c.join("doomed").await?;
    let fresh = b.post("doomed", "n1", "a new start").await?;
    let page = b.request(frame::history_before("doomed", None, 10)).await?;
    let msgs = page_messages(&page);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!((msgs[0].seq, msgs[0].prev), (fresh.seq, 0), "a new chain");
    let rooms = rooms_of(&api, &cid).await?;
    let doomed = rooms
        .iter()
        .find(|r| r.room == "doomed")
        .context("listed")?;
    assert_eq!(doomed.unread, 1, "cid's old cursor is gone: {doomed:?}");
    assert_eq!(
        doomed.name, None,
        "the old display name is gone: {doomed:?}"
    );
    // dan was banned from the deleted room, not from the new one.
    let mut d = Client::login(&mesh.ws_url(), &dan).await?;
    d.join("doomed").await?;
    until_search(&api, &bob, "q=zebra&room=doomed", |r| r.hits.is_empty()).await?;

    audited(&api, &root, |e| {
        e.action == "delete_room" && e.target == "doomed" && e.outcome == "ok"
    })
    .await?;
    let (s, v) = api
        .call("DELETE", "/v1/admin/rooms/no-such-room", Some(&root), None)
        .await?;
    assert_eq!(s, 404, "{v}");
    let (s, v) = api
        .call("DELETE", "/v1/admin/rooms/bad%20room", Some(&root), None)
        .await?;
    assert_eq!(s, 400, "{v}");
    mesh.stop().await
}

/// A user's export: the account without its password hash, memberships, cursors, push
/// settings, blocks, invitations and the messages it sent (not others'), closed by an `end` line; audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_data_is_exported() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let root = api.server_admin("root").await?;
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "general", "public").await?;
    api.room(&bob, "side", "private").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join("general").await?;
    b.join("general").await?;
    a.post("general", "a1", "ann says hi").await?;
    b.post("general", "b1", "bob answers").await?;
    let last = a.post("general", "a2", "ann again").await?;
    a.send(frame::read("general", last.seq)).await?;
    let (s, v) = api
        .call("PUT", "/v1/users/me/blocks/bob", Some(&ann), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let takes = json!({"adds": "invitations"});
    let (s, v) = api
        .call("PUT", "/v1/users/me/adds", Some(&ann), Some(takes))
        .await?;
    assert_eq!(s, 200, "{v}");
    // ann blocked bob: cat invites her.
    let cat = api.user("cat").await?;
    api.room(&cat, "attic", "private").await?;
    let invite = json!({"user": "ann", "role": "member"});
    let (s, v) = api
        .call("POST", "/v1/rooms/attic/members", Some(&cat), Some(invite))
        .await?;
    assert_eq!(s, 202, "{v}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let resp = reqwest::Client::new()
        .get(format!("{}/v1/admin/users/ann/export", mesh.url()))
        .bearer_auth(&root)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await?;
    assert!(!text.contains("argon2"), "no password hash");
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let of = |t: &str| lines.iter().filter(|l| l["type"] == t).collect::<Vec<_>>();
    assert_eq!(of("account").len(), 1);
    assert_eq!(of("account")[0]["user"], "ann");
    let rooms: Vec<&Value> = of("membership").iter().map(|l| &l["room"]).collect();
    assert_eq!(rooms, [&Value::from("general")], "ann is not in side");
    assert_eq!(of("cursor").len(), 1, "{lines:?}");
    assert_eq!(of("push_settings").len(), 1);
    let blocked: Vec<&Value> = of("block").iter().map(|l| &l["user"]).collect();
    assert_eq!(blocked, [&Value::from("bob")], "{lines:?}");
    let invited: Vec<(&Value, &Value)> = of("invitation")
        .iter()
        .map(|l| (&l["room"], &l["by"]))
        .collect();
    assert_eq!(invited, [(&Value::from("attic"), &Value::from("cat"))]);
    let bodies: Vec<&str> = of("message")
        .iter()
        .map(|l| l["body"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(bodies.contains(&"ann says hi") && bodies.contains(&"ann again"));
    assert!(of("message")
        .iter()
        .all(|l| l["from"] == "ann" && l["room"] == "general"));
    assert_eq!(lines.last().map(|l| &l["type"]), Some(&Value::from("end")));

    audited(&api, &root, |e| {
        e.action == "export_user" && e.target == "ann" && e.outcome == "ok" && e.actor == "root"
    })
    .await?;
    let (s, v) = api
        .call("GET", "/v1/admin/users/nobody/export", Some(&root), None)
        .await?;
    assert_eq!(s, 404, "{v}");
    mesh.stop().await
}

/// A user whose messages are large is exported whole: a page stops at its byte budget in
/// the middle of the store keys it read, and the next one goes on from there. Before, a
/// page took every message of the 2,000 keys it read, 80 of 16 KiB here, more than the bus
/// carries in one reply, and the export ended with an `error` line at the same place every
/// time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_of_large_messages_is_exported_whole() -> Result<()> {
    const LARGE: usize = 80;
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let root = api.server_admin("root").await?;
    let ann = api.user("ann").await?;
    api.room(&ann, "general", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("general").await?;
    let body = "x".repeat(16 * 1024);
    for i in 0..LARGE {
        a.post("general", &format!("m{i}"), &body).await?;
    }
    let text = reqwest::Client::new()
        .get(format!("{}/v1/admin/users/ann/export", mesh.url()))
        .bearer_auth(&root)
        .send()
        .await?
        .text()
        .await?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let last = lines.last().map(|l| l["type"].clone());
    assert_eq!(last, Some(Value::from("end")), "{:?}", lines.last());
    let messages = lines.iter().filter(|l| l["type"] == "message").count();
    assert_eq!(messages, LARGE, "every message once");
    mesh.stop().await
}

/// A loop of refused admin calls does not grow the audit log without end (nor bury the real
/// entries): one user's refusals are written at most ten a minute; another user's refusal
/// is still written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_calls_is_audited_at_a_bounded_rate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let root = api.server_admin("root").await?;
    let carol = api.user("carol").await?;
    let bob = api.user("bob").await?;
    for _ in 0..60 {
        let (s, _) = api
            .call("GET", "/v1/admin/users", Some(&carol), None)
            .await?;
        assert_eq!(s, 403);
    }
    let (s, _) = api.call("GET", "/v1/admin/audit", Some(&bob), None).await?;
    assert_eq!(s, 403);
    audited(&api, &root, |e| e.actor == "bob" && e.action == "audit").await?;
    let page = audit(&api, &root).await?;
    let carols = page.entries.iter().filter(|e| e.actor == "carol").count();
    assert!(
        (10..=12).contains(&carols),
        "{carols} of carol's 60 refusals in the audit log"
    );
    mesh.stop().await
}

/// The audit log pages newest first with `before`, and refuses a bad cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_pages_newest_first() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    let root = api.server_admin("root").await?;
    for i in 0..5 {
        let name = format!("u{i}");
        api.user(&name).await?;
        let (s, _) = api
            .call(
                "POST",
                &format!("/v1/admin/users/{name}/disable"),
                Some(&root),
                None,
            )
            .await?;
        assert_eq!(s, 200);
    }
    let mut targets = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(b) => format!("/v1/admin/audit?limit=2&before={b}"),
            None => "/v1/admin/audit?limit=2".to_owned(),
        };
        let (s, v) = api.call("GET", &path, Some(&root), None).await?;
        assert_eq!(s, 200, "{v}");
        let page: AuditPage = serde_json::from_value(v)?;
        for e in &page.entries {
            targets.push(e.target.clone());
            assert!(e.ts > 0 && !e.id.is_empty());
        }
        if !page.more {
            break;
        }
        before = page.entries.last().map(|e| e.id.clone());
    }
    assert_eq!(
        targets,
        ["u4", "u3", "u2", "u1", "u0", "root"],
        "newest first, each once (root's registration first of all)"
    );
    for bad in ["before=xyz", "limit=0", "limit=5000"] {
        let (s, v) = api
            .call("GET", &format!("/v1/admin/audit?{bad}"), Some(&root), None)
            .await?;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    mesh.stop().await
}

/// Searches as `token` until `pred` holds (the index commits about once a second).
async fn until_search(
    api: &Api,
    token: &str,
    query: &str,
    pred: impl Fn(&SearchResults) -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (s, v) = api
            .call("GET", &format!("/v1/search?{query}"), Some(token), None)
            .await?;
        anyhow::ensure!(s == 200, "search {query}: {s} {v}");
        let r: SearchResults = serde_json::from_value(v)?;
        if pred(&r) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "search {query}: never matched, last {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rooms_of(api: &Api, token: &str) -> Result<Vec<RoomListing>> {
    let (s, v) = api.call("GET", "/v1/rooms", Some(token), None).await?;
    anyhow::ensure!(s == 200, "rooms: {s} {v}");
    http_rooms(&v).context("a room list")
}

fn page_messages(f: &ServerFrame) -> Vec<Message> {
    match f {
        ServerFrame::History { messages, .. } => messages.to_vec(),
        other => panic!("not a history page: {other:?}"),
    }
}

/// One step of deleting `room`, asked of its worker as the gateway asks it (as `root`).
async fn delete_step(mesh: &chatmesh::Mesh, room: &str) -> Result<DeleteProgress> {
    let ask = DeleteRoomRequest {
        caller: Caller {
            actor: "root".into(),
            ip: "127.0.0.1".into(),
        },
        room: room.into(),
    };
    let subject = svc_subject(mesh.config.mesh.partitions, room, DeleteRoomStep::NAME);
    let reply = mesh
        .gateway_nats
        .request(subject, serde_json::to_vec(&ask)?.into())
        .await?;
    let reply: Reply<DeleteProgress> = serde_json::from_slice(&reply.payload)?;
    reply.into_result().map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// A message acked after the deletion purged the room from the stream (its send passed the
/// gateway's check before the deletion began) and stored by a store writer that lags
/// behind the deletion is deleted too: the last step waits for the store to hold what the
/// stream has of the room. Before, the deletion finished first, the message was stored
/// after it, and whoever created the name again found it in the new room's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stored_after_its_room_was_deleted_does_not_outlive_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), admin_config()).await?;
    let api = Api::new(&mesh);
    api.server_admin("root").await?;
    let ann = api.user("ann").await?;
    api.room(&ann, "late", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("late").await?;
    a.post("late", "m1", "before").await?;
    let writer = StoreWriter::of(&mesh, "late").await?;
    let mut progress = delete_step(&mesh, "late").await?;
    while progress.phase != "messages" {
        progress = delete_step(&mesh, "late").await?;
    }
    // Purged from the stream; now a send that got past the gateway's check before the
    // deletion is acked, and the store writer is behind.
    writer.pause().await?;
    let late = json!({"id": "m2", "from": "ann", "ts": 1, "body": "a late word"});
    let js = async_nats::jetstream::new(mesh.gateway_nats.clone());
    let subject = in_subject(mesh.config.mesh.partitions, "late");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "ann:late:m2");
    js.publish_with_headers(subject.clone(), headers, late.to_string().into())
        .await?
        .await?;
    while progress.phase != "finish" {
        progress = delete_step(&mesh, "late").await?;
    }
    writer.resume().await?;
    // The last step waits for the store writer, which takes a moment to start again: a
    // step refused `unavailable` meanwhile is repeated, as an admin would.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !progress.done {
        match delete_step(&mesh, "late").await {
            Ok(p) => progress = p,
            Err(e) if e.to_string().contains("repeat the deletion") => {
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
    api.room(&ann, "late", "public").await?;
    // History answers once the store holds what the stream has (the store writer takes a
    // while to start again after its pause).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let v = loop {
        let (s, v) = api
            .call("GET", "/v1/rooms/late/messages", Some(&ann), None)
            .await?;
        if s == 200 {
            break v;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{s} {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // And the late message, if it was stored after the deletion, is stored by now.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (s, v2) = api
        .call("GET", "/v1/rooms/late/messages", Some(&ann), None)
        .await?;
    assert_eq!(s, 200, "{v2}");
    assert_eq!(
        (&v["messages"], &v2["messages"]),
        (&json!([]), &json!([])),
        "the new room has no old message"
    );
    let stream = js.get_stream(chatmesh_protocol::subjects::STREAM).await?;
    assert!(
        stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .is_err(),
        "the stream keeps nothing of the deleted room"
    );
    mesh.stop().await
}
