//! The chat features of issue 3 over a real mesh: presence (also across gateways and after
//! a gateway is killed), typing, read receipts and unread counts, DMs, roles, removal,
//! and history paging.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use chatmesh_protocol::service::{DmRoom, Role, RoomKind};
use common::*;
use serde::Deserialize;
use serde_json::{json, Value};

/// Whether `f` is a `presence_diff` whose `joined` (or `left`) list satisfies `pred`.
fn diff(f: &ServerFrame, left: bool, pred: impl Fn(&[String]) -> bool) -> bool {
    match f {
        ServerFrame::PresenceDiff {
            joined, left: gone, ..
        } => {
            let list = if left { gone } else { joined };
            pred(&list.iter().map(|u| u.to_string()).collect::<Vec<_>>())
        }
        _ => false,
    }
}

/// The room list of `GET /v1/rooms` (a body that is not one fails the test).
#[track_caller]
fn rooms(v: &Value) -> Vec<RoomListing> {
    http_rooms(v).unwrap_or_else(|| panic!("not a room list: {v}"))
}

/// Presence: members see who joins and leaves; a user with two sessions stays online until
/// both are gone; `presence` lists everyone online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_sessions() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("hall").await?;
    let mut b1 = Client::login(&mesh.ws_url(), &bob).await?;
    b1.join("hall").await?;
    let d = a
        .wait_for(|f| diff(f, false, |j| j.contains(&"bob".into())))
        .await?;
    assert!(
        matches!(&d, ServerFrame::PresenceDiff { room, .. } if room == "hall"),
        "{d:?}"
    );
    let p = a.request(frame::presence("hall")).await?;
    assert_eq!(online(&p), ["ann", "bob"]);

    let mut b2 = Client::login(&mesh.ws_url(), &bob).await?;
    b2.join("hall").await?;
    b1.close().await;
    // bob is still online through b2: ann's presence still lists him after the close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = a.request(frame::presence("hall")).await?;
    assert_eq!(online(&p), ["ann", "bob"]);
    assert!(!a
        .backlog
        .iter()
        .any(|f| diff(f, true, |l| l.contains(&"bob".into()))));
    b2.request(frame::leave("hall")).await?;
    a.wait_for(|f| diff(f, true, |l| l == ["bob"])).await?;
    let p = a.request(frame::presence("hall")).await?;
    assert_eq!(online(&p), ["ann"]);
    mesh.stop().await
}

/// A user on a second gateway process shows online on the first; when that gateway is
/// killed with SIGKILL, the user shows offline within the presence TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_killed_gateway_go_offline_within_the_ttl() -> Result<()> {
    killed_gateway_goes_offline(false).await
}

/// The same when the first gateway never hears the killed gateway's expiry (the bucket's
/// events are core NATS: one missed while cut off from NATS is gone). Here the killed
/// gateway's key is purged, which republishes nothing: the first gateway forgets users
/// whose key was not refreshed for a TTL on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_killed_gateway_go_offline_without_its_expiry_event() -> Result<()> {
    killed_gateway_goes_offline(true).await
}

async fn killed_gateway_goes_offline(miss_the_expiry: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.presence_ttl_secs = 3;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let (ann, cat) = (api.user("ann").await?, api.user("cat").await?);
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("hall").await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut gw2 = Command::new(env!("CARGO_BIN_EXE_chatmesh"))
        .arg("gateway")
        .env(
            "CHATMESH__MESH__NATS_URLS",
            format!("[\"{}\"]", mesh.nats.url()),
        )
        .env("CHATMESH__GATEWAY__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "CHATMESH__MESH__NATS_NKEY_FILE",
            mesh.creds.seed_file(chatmesh_protocol::bus::Role::Gateway),
        )
        .env(
            "CHATMESH__GATEWAY__JWT_SECRET",
            &mesh.config.gateway.jwt_secret,
        )
        .env("CHATMESH__GATEWAY__PRESENCE_TTL_SECS", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let gw2_url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    while reqwest::get(format!("{gw2_url}/readyz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "second gateway never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut c = Client::login(&format!("ws://127.0.0.1:{port}/v1/ws"), &cat).await?;
    c.join("hall").await?;
    a.wait_for(|f| diff(f, false, |j| j == ["cat"])).await?;
    // cat sees ann, who is on the first gateway.
    let p = c.request(frame::presence("hall")).await?;
    assert_eq!(online(&p), ["ann", "cat"]);

    Command::new("kill")
        .args(["-KILL", &gw2.id().to_string()])
        .status()?;
    let killed = Instant::now();
    let _ = gw2.wait();
    if miss_the_expiry {
        let js = async_nats::jetstream::new(mesh.nats.connect().await?);
        let bucket = chatmesh_protocol::subjects::PRESENCE_BUCKET;
        js.get_stream(format!("KV_{bucket}"))
            .await?
            .purge()
            .filter(format!("$KV.{bucket}.hall.*"))
            .await?;
    }
    a.wait_for(|f| diff(f, true, |l| l == ["cat"])).await?;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(3 + 2),
        "offline after {took:?}, TTL 3 s"
    );
    mesh.stop().await
}

/// Typing reaches the other members (not the typist), is never stored, and is rate limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_ephemeral_and_rate_limited() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join("hall").await?;
    b.join("hall").await?;
    for _ in 0..5 {
        a.send(frame::typing("hall")).await?;
    }
    let t = b.wait_for(|f| f.frame_type() == FrameType::Typing).await?;
    let ServerFrame::Typing { room, user } = &t else {
        unreachable!()
    };
    assert_eq!((&**room, &**user), ("hall", "ann"));
    // A marker message: everything sent before it has been fanned out when it arrives.
    a.request(frame::send("hall", "m", "marker")).await?;
    b.wait_for(|f| f.frame_type() == FrameType::Message).await?;
    a.wait_for(|f| f.frame_type() == FrameType::Message).await?;
    let is_typing = |f: &ServerFrame| f.frame_type() == FrameType::Typing;
    let typings = b.backlog.iter().filter(|f| is_typing(f)).count();
    assert_eq!(typings, 0, "only one of five typing events went out");
    assert!(
        !a.backlog.iter().any(is_typing),
        "the typist does not get its own"
    );
    // The worker persists asynchronously: wait for the marker, then nothing else is there.
    let deadline = Instant::now() + WAIT;
    loop {
        let h = b.request(frame::history("hall")).await?;
        // Not a page (an error) counts as none, as in any poll.
        let n = match &h {
            ServerFrame::History { messages, .. } => messages.len(),
            _ => 0,
        };
        assert!(n <= 1, "typing is not stored: {h:?}");
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the marker was never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    mesh.stop().await
}

/// `read` persists a cursor, members get `receipt`, and `GET /v1/rooms` counts unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_and_unread_counts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "hall", "public").await?;
    api.room(&ann, "other", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join("hall").await?;
    b.join("hall").await?;
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(a.post("hall", &format!("m{i}"), "x").await?.seq);
    }
    // The listing of `room` (none if it is not listed).
    let unread = |v: &Value, room: &str| rooms(v).into_iter().find(|r| r.room == room);
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, v) = api.call("GET", "/v1/rooms", Some(&bob), None).await?;
        let hall = unread(&v, "hall");
        if let Some(hall) = hall.filter(|h| h.unread == 5) {
            assert_eq!(hall.role, Some(Role::Member));
            assert_eq!(Some(hall.last_seq), seqs.last().copied());
            assert!(
                unread(&v, "other").is_none_or(|o| o.role.is_none()),
                "public rooms bob is not in come with role null"
            );
            break;
        }
        assert!(Instant::now() < deadline, "unread never reached 5: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The sender's own messages are not unread for it (its cursor follows within a second).
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, v) = api.call("GET", "/v1/rooms", Some(&ann), None).await?;
        if unread(&v, "hall").is_some_and(|h| h.unread == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "own messages stay unread: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.send(frame::read("hall", seqs[2])).await?;
    let r = a.wait_for(|f| f.frame_type() == FrameType::Receipt).await?;
    let ServerFrame::Receipt { user, seq, .. } = &r else {
        unreachable!()
    };
    assert_eq!((&**user, *seq), ("bob", seqs[2]));
    let (_, v) = api.call("GET", "/v1/rooms", Some(&bob), None).await?;
    assert_eq!(unread(&v, "hall").map(|h| h.unread), Some(2));
    // A cursor never moves back.
    b.send(frame::read("hall", seqs[0])).await?;
    a.wait_for(|f| matches!(f, ServerFrame::Receipt { seq, .. } if *seq == seqs[0]))
        .await?;
    let (_, v) = api.call("GET", "/v1/rooms", Some(&bob), None).await?;
    assert_eq!(unread(&v, "hall").map(|h| h.unread), Some(2));
    mesh.stop().await
}

/// Mentions: `@name` and `@room` travel with the message (live, history); `GET /v1/rooms`
/// counts each member's unread mentions (by name or `@room`, never its own, not non-members'
/// names); reading the room clears them, and so does deleting the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_are_carried_and_counted_per_member() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob, cat, dan) = (
        api.user("ann").await?,
        api.user("bob").await?,
        api.user("cat").await?,
        api.user("dan").await?,
    );
    api.room(&ann, "hall", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    let mut c = Client::login(&mesh.ws_url(), &cat).await?;
    let mut d = Client::login(&mesh.ws_url(), &dan).await?;
    // A sender's cursor follows its own messages: bob and dan never send here.
    for s in [&mut a, &mut b, &mut c, &mut d] {
        s.join("hall").await?;
    }
    a.post("hall", "m1", "hi @bob, and @zed (not here)").await?;
    let live = b.messages("hall", 1).await?;
    assert_eq!(live[0].mentions.users, ["bob", "zed"]);
    assert!(!live[0].mentions.room);
    let at_room = a.post("hall", "m2", "@room standup in 5").await?.seq;
    a.post("hall", "m3", "no mention; mail ann@example.com")
        .await?;
    c.post("hall", "m4", "@ann thanks").await?;
    // The listing of `room` for `token`, once its mentions count is `want`.
    let mentions = |token: String, want: u64| {
        let api = &api;
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let (_, v) = api.call("GET", "/v1/rooms", Some(&token), None).await?;
                let got = rooms(&v)
                    .into_iter()
                    .find(|r| r.room == "hall")
                    .map(|r| r.mentions);
                if got == Some(want) {
                    return anyhow::Ok(());
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "mentions {got:?}, not {want}: {v}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    mentions(bob.clone(), 2).await?; // m1 by name, m2 by @room
    mentions(dan.clone(), 1).await?; // m2
    mentions(ann.clone(), 1).await?; // m4; her own @room is not hers
    let (_, page) = api
        .call("GET", "/v1/rooms/hall/messages", Some(&cat), None)
        .await?;
    let page = http_page(&page);
    let m2 = page
        .messages
        .iter()
        .find(|m| m.id == "m2")
        .expect("m2 in history");
    assert!(m2.mentions.room && m2.mentions.users.is_empty());
    let m3 = page
        .messages
        .iter()
        .find(|m| m.id == "m3")
        .expect("m3 in history");
    assert!(m3.mentions.is_empty(), "an e-mail address is not a mention");
    // Reading clears them; a new mention counts again.
    b.send(frame::read("hall", at_room)).await?;
    mentions(bob.clone(), 0).await?;
    let again = a.post("hall", "m5", "@bob again").await?.seq;
    mentions(bob.clone(), 1).await?;
    // A deleted message mentions nobody any more (and the delete itself mentions nobody).
    acked(&a.request(frame::delete("hall", "m6", again)).await?);
    mentions(bob, 0).await?;
    mesh.stop().await
}

/// A DM is one room per pair, readable only by the two users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_are_private_to_the_pair() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob, eve) = (
        api.user("ann").await?,
        api.user("bob").await?,
        api.user("eve").await?,
    );
    let (s, v) = api.call("POST", "/v1/dm/bob", Some(&ann), None).await?;
    assert_eq!(s, 200, "{v}");
    let room = DmRoom::deserialize(&v)?.room;
    let (_, v2) = api.call("POST", "/v1/dm/ann", Some(&bob), None).await?;
    assert_eq!(
        DmRoom::deserialize(&v2)?.room,
        room,
        "the one DM room of the two users"
    );
    let (_, list) = api.call("GET", "/v1/rooms", Some(&bob), None).await?;
    let dm = rooms(&list).into_iter().find(|r| r.room == room);
    assert_eq!(
        dm.map(|d| (d.kind, d.peer)),
        Some((RoomKind::Dm, Some("ann".to_owned()))),
        "{list}"
    );
    let (s, _) = api.call("POST", "/v1/dm/nobody", Some(&ann), None).await?;
    assert_eq!(s, 404);
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join(&room).await?;
    b.join(&room).await?;
    a.request(frame::send(&room, "1", "psst")).await?;
    assert_eq!(b.messages(&room, 1).await?[0].body, "psst");
    let mut e = Client::login(&mesh.ws_url(), &eve).await?;
    for f in [frame::join(&room), frame::history(&room)] {
        assert_eq!(error_code(&e.request(f).await?), Some(ErrorCode::Forbidden));
    }
    let (s, _) = api
        .call(
            "GET",
            &format!("/v1/rooms/{room}/messages"),
            Some(&eve),
            None,
        )
        .await?;
    assert_eq!(s, 403);
    mesh.stop().await
}

/// Roles: admins may invite, members may not, only the owner makes admins; a removed member
/// stops receiving the room's messages within a second and cannot read its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_invites_and_removal() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob, cat, dan) = (
        api.user("ann").await?,
        api.user("bob").await?,
        api.user("cat").await?,
        api.user("dan").await?,
    );
    api.room(&ann, "team", "private").await?;
    let add = |token: String, user: &'static str, role: &'static str| {
        let api = &api;
        async move {
            api.call(
                "POST",
                "/v1/rooms/team/members",
                Some(&token),
                Some(json!({"user":user,"role":role})),
            )
            .await
            .map(|r| r.0)
        }
    };
    assert_eq!(add(ann.clone(), "bob", "admin").await?, 204);
    assert_eq!(
        add(bob.clone(), "cat", "member").await?,
        204,
        "an admin invites"
    );
    assert_eq!(
        add(cat.clone(), "dan", "member").await?,
        403,
        "a member does not"
    );
    assert_eq!(
        add(bob.clone(), "dan", "admin").await?,
        403,
        "only the owner makes admins"
    );
    let (s, _) = api
        .call("DELETE", "/v1/rooms/team/members/ann", Some(&bob), None)
        .await?;
    assert_eq!(s, 403, "nobody removes the owner");

    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut c = Client::login(&mesh.ws_url(), &cat).await?;
    a.join("team").await?;
    c.join("team").await?;
    a.request(frame::send("team", "1", "before")).await?;
    c.messages("team", 1).await?;

    let (s, _) = api
        .call("DELETE", "/v1/rooms/team/members/cat", Some(&ann), None)
        .await?;
    assert_eq!(s, 204);
    let removed = Instant::now();
    c.wait_for(|f| matches!(f, ServerFrame::Left { room, .. } if room == "team"))
        .await?;
    assert!(
        removed.elapsed() < Duration::from_secs(1),
        "evicted within a second"
    );
    a.request(frame::send("team", "2", "after")).await?;
    let p = c.request(frame::ping()).await?;
    assert_eq!(p.frame_type(), FrameType::Pong);
    assert!(!c
        .backlog
        .iter()
        .any(|f| matches!(f, ServerFrame::Message(m) if m.body == "after")));
    assert_eq!(
        error_code(&c.request(frame::history("team")).await?),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        error_code(&c.request(frame::join("team")).await?),
        Some(ErrorCode::Forbidden)
    );
    let (s, _) = api
        .call("GET", "/v1/rooms/team/messages", Some(&cat), None)
        .await?;
    assert_eq!(s, 403);
    // A member may leave by removing itself.
    let (s, _) = api
        .call("DELETE", "/v1/rooms/team/members/bob", Some(&bob), None)
        .await?;
    assert_eq!(s, 204);
    let _ = dan;
    mesh.stop().await
}

/// `history` pages backwards from any seq to the first message, oldest first per page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_back_to_the_first_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "log", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("log").await?;
    for i in 0..230 {
        a.send(frame::send("log", &format!("m{i}"), &format!("{i}")))
            .await?;
    }
    let all = a.messages("log", 230).await?;
    let mut pages = Vec::new();
    let mut before: Option<u64> = None;
    let deadline = Instant::now() + WAIT;
    loop {
        let h = page(&a.request(frame::history_before("log", before, 40)).await?);
        let msgs = h.messages;
        if before.is_none() && msgs.last().map(|m| m.seq) != all.last().map(|m| m.seq) {
            assert!(
                Instant::now() < deadline,
                "the worker never stored everything"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert!(msgs.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
        before = msgs.first().map(|m| m.seq);
        pages.push(msgs);
        if !h.more {
            break;
        }
    }
    assert_eq!(pages.len(), 6, "230 messages in pages of 40");
    // A page holds the messages as they were delivered (a `message` frame without `type`).
    let flat: Vec<Message> = pages.into_iter().rev().flatten().collect();
    assert_eq!(flat, all);
    mesh.stop().await
}

/// Presence refreshes cost one message per (room, gateway), not per member: 40 sessions in
/// a room produce about one presence write per refresh interval once they have joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_refresh_costs_one_message_per_room_and_gateway() -> Result<()> {
    use futures::StreamExt;
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.presence_ttl_secs = 3; // a refresh every second
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let owner = api.user("owner").await?;
    api.room(&owner, "big", "public").await?;
    let mut clients = Vec::new();
    for i in 0..40 {
        let token = api.user(&format!("u{i}")).await?;
        let mut c = Client::login(&mesh.ws_url(), &token).await?;
        c.join("big").await?;
        clients.push(c);
    }
    let nats = mesh.nats.connect().await?;
    let mut writes = nats.subscribe("chat.pres.big.*").await?;
    nats.flush().await?;
    // Let the joins settle, then count the writes over 4 refresh intervals.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(10), writes.next()).await {}
    let window = Instant::now() + Duration::from_secs(4);
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout_at(window.into(), writes.next()).await {
        n += 1;
    }
    assert!(
        (2..=6).contains(&n),
        "{n} presence writes in 4 s for 40 members"
    );
    let p = clients[0].request(frame::presence("big")).await?;
    assert_eq!(online(&p).len(), 40);
    mesh.stop().await
}

/// A join/leave loop of a room's only session on its gateway (the room's fan-out closes and
/// starts again at each flip) still costs the presence bucket about one write a second, two
/// at most (a room started again waits out the last one's quiet window, and one that never
/// wrote writes nothing when it stops). Before, each start and each stop wrote: two a flip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_join_leave_loop_writes_presence_about_once_a_second() -> Result<()> {
    use futures::StreamExt;
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, mal) = (api.user("ann").await?, api.user("mal").await?);
    api.room(&ann, "lobby", "public").await?;
    let nats = mesh.nats.connect().await?;
    let mut writes = nats.subscribe("chat.pres.lobby.*").await?;
    nats.flush().await?;
    let mut m = Client::login(&mesh.ws_url(), &mal).await?;
    let started = Instant::now();
    for _ in 0..60 {
        m.request(frame::join("lobby")).await?;
        m.request(frame::leave("lobby")).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flips = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(10), writes.next()).await {
        n += 1;
    }
    let most = 2 * (flips.as_secs() as usize + 2);
    assert!(n <= most, "{n} presence writes for 120 flips in {flips:?}");
    mesh.stop().await
}

/// A member that joins and leaves a room in a loop costs the others at most about one
/// `presence_diff` a second (changes that undo each other within a second none), and the
/// presence bucket about one write a second, instead of one of each per flip; when the loop
/// ends the members learn where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_leave_loop_is_announced_at_most_once_a_second() -> Result<()> {
    use futures::StreamExt;
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, mal) = (api.user("ann").await?, api.user("mal").await?);
    api.room(&ann, "lobby", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("lobby").await?;
    let nats = mesh.nats.connect().await?;
    let mut writes = nats.subscribe("chat.pres.lobby.*").await?;
    nats.flush().await?;
    let mut m = Client::login(&mesh.ws_url(), &mal).await?;
    let started = Instant::now();
    for _ in 0..100 {
        m.send(frame::join("lobby")).await?;
        m.send(frame::leave("lobby")).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m.request(frame::join("lobby")).await?;
    let flips = started.elapsed();
    a.wait_for(|f| diff(f, false, |j| j == ["mal"])).await?;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    a.request(frame::ping()).await?;
    let diffs = a
        .backlog
        .iter()
        .filter(|f| matches!(f, ServerFrame::PresenceDiff { .. }))
        .count()
        + 1;
    let mut n = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(10), writes.next()).await {
        n += 1;
    }
    let most = flips.as_secs() as usize + 4;
    assert!(
        diffs <= most,
        "{diffs} presence_diff frames for 201 flips in {flips:?}"
    );
    assert!(n <= most, "{n} presence writes for 201 flips in {flips:?}");
    let p = a.request(frame::presence("lobby")).await?;
    assert_eq!(online(&p), ["ann", "mal"]);
    mesh.stop().await
}
