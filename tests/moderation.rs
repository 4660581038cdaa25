//! Room moderation against a real mesh: bans (removal at once, kept out of joins, adds and
//! reading, listed, lifted), who may ban whom, mutes (every kind of send refused and nothing
//! stored, reading goes on, until a time, lifted), and topic, name and moderation changes
//! as events in the room's one order (live, history, a `join since` replay, not unread),
//! with the refusals of bad input.

mod common;

use std::time::Duration;

use anyhow::Result;
use chatmesh_client::{Http, RoomEvent};
use chatmesh_protocol::service::Role;
use common::*;
use serde_json::{json, Value};

/// `(status, error code)` of an HTTP answer.
fn code(s: u16, v: &Value) -> (u16, Option<String>) {
    (s, v["error"]["code"].as_str().map(str::to_owned))
}

fn refused(s: u16, v: &Value, status: u16, c: &str) {
    assert_eq!(code(s, v), (status, Some(c.to_owned())), "{v}");
}

/// The `error` answering a request, with its message; anything else fails.
#[track_caller]
fn error_of(f: &ServerFrame) -> (ErrorCode, String) {
    match f {
        ServerFrame::Error { code, message, .. } => (*code, message.to_string()),
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn ban(api: &Api, token: &str, room: &str, body: Value) -> Result<(u16, Value)> {
    let path = format!("/v1/rooms/{room}/bans");
    api.call("POST", &path, Some(token), Some(body)).await
}

async fn mute(api: &Api, token: &str, room: &str, body: Value) -> Result<(u16, Value)> {
    let path = format!("/v1/rooms/{room}/mutes");
    api.call("POST", &path, Some(token), Some(body)).await
}

async fn add(api: &Api, token: &str, room: &str, user: &str, role: &str) -> Result<(u16, Value)> {
    let path = format!("/v1/rooms/{room}/members");
    let body = json!({"user": user, "role": role});
    api.call("POST", &path, Some(token), Some(body)).await
}

/// The room's messages over HTTP, oldest first (the latest 100).
async fn history(api: &Api, token: &str, room: &str) -> Result<Vec<Message>> {
    let (s, v) = api
        .call(
            "GET",
            &format!("/v1/rooms/{room}/messages?limit=100"),
            Some(token),
            None,
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    Ok(http_page(&v).messages)
}

/// The caller's listing of `room` in `GET /v1/rooms`, if there is one.
async fn listing(api: &Api, token: &str, room: &str) -> Result<Option<RoomListing>> {
    let (_, v) = api.call("GET", "/v1/rooms", Some(token), None).await?;
    let rooms = http_rooms(&v).unwrap_or_default();
    Ok(rooms.into_iter().find(|r| r.room == room))
}

/// `owner` (joined to `room`) posts a message with id `id`; `banned` must not receive it
/// nor anything later of `room` (whatever was on its way arrives before its `pong`).
async fn not_delivered_after(
    owner: &mut Client,
    banned: &mut Client,
    room: &str,
    id: &str,
) -> Result<()> {
    let after = owner.post(room, id, "after the ban").await?;
    owner.messages(room, 1).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pong = banned.request(frame::ping()).await?;
    assert!(matches!(pong, ServerFrame::Pong { .. }));
    let leaked: Vec<_> = banned
        .backlog
        .iter()
        .filter(|f| matches!(f, ServerFrame::Message(m) if m.room == room && m.seq >= after.seq))
        .collect();
    assert!(leaked.is_empty(), "banned, yet delivered: {leaked:?}");
    Ok(())
}

/// A ban removes the user at once (its live session gets `left` and `membership` null and
/// no more of the room's messages), keeps it from joining, being added and reading the
/// room's history (HTTP and WebSocket); owners and admins list the bans; an unban lets the
/// user join again and does not re-add it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_removes_at_once_and_keeps_the_user_out_until_lifted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let cy = api.user("cy").await?;
    api.room(&ann, "hall", "public").await?;
    let mut owner = Client::login(&mesh.ws_url(), &ann).await?;
    owner.join("hall").await?;
    let mut banned = Client::login(&mesh.ws_url(), &bob).await?;
    banned.join("hall").await?;
    let mut watcher = Client::login(&mesh.ws_url(), &cy).await?;
    watcher.join("hall").await?;
    owner.post("hall", "a1", "before").await?;
    banned.messages("hall", 1).await?;

    let (s, v) = ban(
        &api,
        &ann,
        "hall",
        json!({"user": "bob", "reason": " spam "}),
    )
    .await?;
    assert_eq!(s, 204, "{v}");
    // The banned session is told, at once.
    banned
        .wait_for(|f| matches!(f, ServerFrame::Left { room, .. } if room == "hall"))
        .await?;
    banned
        .wait_for(|f| matches!(f, ServerFrame::Membership { room, role: None } if room == "hall"))
        .await?;
    // The room learns it in its order: a message with the event, from the owner.
    let ev = watcher.messages("hall", 2).await?.pop().unwrap_or_default();
    assert_eq!(
        ev.event,
        Some(RoomEvent::Ban {
            user: "bob".into(),
            reason: Some("spam".into())
        })
    );
    assert_eq!((ev.from.as_str(), ev.body.as_str()), ("ann", ""));
    // No more of the room's messages for the banned session.
    let after = owner.post("hall", "a2", "after the ban").await?;
    let got = watcher.messages("hall", 1).await?;
    assert_eq!(got[0].seq, after.seq);
    let pong = banned.request(frame::ping()).await?;
    assert!(matches!(pong, ServerFrame::Pong { .. }));
    assert!(
        !banned
            .backlog
            .iter()
            .any(|f| matches!(f, ServerFrame::Message(m) if m.seq >= ev.seq)),
        "{:?}",
        banned.backlog
    );

    // Kept out: join, re-add, history (both ways), the room list.
    let f = banned.request(frame::join("hall")).await?;
    assert_eq!(
        error_of(&f),
        (ErrorCode::Forbidden, "banned from this room".into())
    );
    let f = banned.request(frame::history("hall")).await?;
    assert_eq!(error_of(&f).0, ErrorCode::Forbidden);
    let (s, v) = api
        .call("GET", "/v1/rooms/hall/messages", Some(&bob), None)
        .await?;
    refused(s, &v, 403, "forbidden");
    let (s, v) = add(&api, &ann, "hall", "bob", "member").await?;
    refused(s, &v, 409, "conflict");
    assert!(listing(&api, &bob, "hall").await?.is_none());

    // The bans, for owners and admins only (the SDK's call).
    let http = Http::new(&mesh.url())?;
    let page = http.with_token(&ann).bans("hall", None, 10).await?;
    assert_eq!(page.bans.len(), 1);
    let b = &page.bans[0];
    assert_eq!(
        (b.user.as_str(), b.by.as_str(), b.reason.as_deref()),
        ("bob", "ann", Some("spam"))
    );
    assert!(!page.more);
    let (s, v) = api
        .call("GET", "/v1/rooms/hall/bans", Some(&cy), None)
        .await?;
    refused(s, &v, 403, "forbidden");

    // Lifted: not re-added, but may join again.
    http.with_token(&ann).unban("hall", "bob").await?;
    let lifted = watcher.messages("hall", 1).await?;
    assert_eq!(
        lifted[0].event,
        Some(RoomEvent::Unban { user: "bob".into() })
    );
    assert!(listing(&api, &bob, "hall")
        .await?
        .is_some_and(|r| r.role.is_none()));
    banned.join("hall").await?;
    let mine = listing(&api, &bob, "hall").await?;
    assert_eq!(mine.and_then(|r| r.role), Some(Role::Member));
    let (s, v) = api
        .call("DELETE", "/v1/rooms/hall/bans/bob", Some(&ann), None)
        .await?;
    refused(s, &v, 404, "not_found");
    Ok(())
}

/// A ban that lands while a `join` of its user is between its access check and the room's
/// fan-out (here held there: it waits for the gateway's only replay slot, which another
/// session's unread replay keeps) finds no session to remove; the join must still not leave
/// the session in the room: it ends with `left`, and no later message reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_during_a_join_keeps_the_session_out() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.max_replays = 1;
    config.gateway.replay_wait_ms = 10_000;
    config.gateway.limits.outbound_queue = 64;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    let cy = api.user("cy").await?;
    api.room(&ann, "big", "public").await?;
    api.room(&ann, "hall", "private").await?;
    let (s, v) = add(&api, &ann, "hall", "bob", "member").await?;
    assert_eq!(s, 204, "{v}");
    let mut owner = Client::login(&mesh.ws_url(), &ann).await?;
    // More than socket buffers and the session's queue hold: a replay nobody reads stalls.
    owner.fill("big", &vec!["y".repeat(8 * 1024); 800]).await?;
    let mut holder = Client::login(&mesh.ws_url(), &cy).await?;
    holder.send_with_ref(frame::join_since("big", 0), 1).await?;
    api.metric_reaches("chatmesh_replays_running", 1.0).await?;

    let mut banned = Client::login(&mesh.ws_url(), &bob).await?;
    banned
        .send_with_ref(frame::join_since("hall", 0), "j")
        .await?;
    // The join has passed its access check and waits for the slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = ban(&api, &ann, "hall", json!({"user": "bob"})).await?;
    assert_eq!(s, 204, "{v}");
    // The gateway has heard of the ban: bob's sessions are told.
    banned
        .wait_for(|f| matches!(f, ServerFrame::Membership { room, role: None } if room == "hall"))
        .await?;
    // The slot frees; the join goes on.
    holder.send(frame::leave("big")).await?;
    let answer = banned.wait_for(|f| replies_to(f, "j")).await?;
    if matches!(answer, ServerFrame::Joined { .. }) {
        banned
            .wait_for(|f| matches!(f, ServerFrame::Left { room, .. } if room == "hall"))
            .await?;
    } else {
        assert_eq!(error_of(&answer).0, ErrorCode::Forbidden);
    }
    owner.join("hall").await?;
    not_delivered_after(&mut owner, &mut banned, "hall", "a1").await?;
    holder.close().await;
    mesh.stop().await
}

/// `hall` (private, ann's) with bob on a second gateway whose only way to NATS is a proxy
/// the test can cut, ann on the mesh's, and `bystanders` more users in `lobby` on the second
/// gateway; one message posted in `hall` and read by bob; then the far gateway is cut off and
/// bob banned while it is away (the proxy still cut). `log` says what the far gateway's
/// event log looks like by then.
struct CutOff {
    _dir: tempfile::TempDir,
    mesh: chatmesh::Mesh,
    api: Api,
    far: FarGateway,
    banned: Client,
    owner: Client,
    _bystanders: Vec<Client>,
}

/// The far gateway's view of the event log at the ban.
#[derive(PartialEq)]
enum Log {
    /// Whatever it is (the mark may or may not be there yet).
    Any,
    /// Marked before the cut: the missed ban can be read back.
    Marked,
    /// Marked, then the log made anew while the gateway was away: it cannot say.
    RemadeWhileAway,
    /// Marked, and the log refusing to store anything new at the ban (full, discarding new
    /// events), then taking them again.
    RefusingAtTheBan,
}

async fn banned_while_cut_off(log: Log, bystanders: usize) -> Result<CutOff> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    api.room(&ann, "hall", "private").await?;
    api.room(&ann, "lobby", "public").await?;
    let (s, v) = add(&api, &ann, "hall", "bob", "member").await?;
    assert_eq!(s, 204, "{v}");
    let far = FarGateway::start(&mesh).await?;
    let mut others = Vec::new();
    for i in 0..bystanders {
        let token = api.user(&format!("by{i}")).await?;
        let mut c = Client::login(&far.ws_url(), &token).await?;
        c.join("lobby").await?;
        others.push(c);
    }
    let mut banned = Client::login(&far.ws_url(), &bob).await?;
    banned.join("hall").await?;
    let mut owner = Client::login(&mesh.ws_url(), &ann).await?;
    owner.join("hall").await?;
    owner.post("hall", "a1", "before").await?;
    banned.messages("hall", 1).await?;
    if log != Log::Any {
        far.marked().await?;
    }
    far.cut().await?;
    if log == Log::RemadeWhileAway {
        let admin = mesh.nats.connect().await?;
        let js = async_nats::jetstream::new(admin);
        js.delete_stream(chatmesh_protocol::subjects::EVENT_LOG)
            .await?;
        js.create_stream(chatmesh_workers::streams::event_log_config(
            &mesh.config.mesh,
        ))
        .await?;
    }
    let refusing = match log {
        Log::RefusingAtTheBan => Some(RefusingLog::start(&mesh).await?),
        _ => None,
    };
    let (s, v) = ban(&api, &ann, "hall", json!({"user": "bob"})).await?;
    assert_eq!(s, 204, "{v}");
    if let Some(refusing) = refusing {
        refusing.stop().await?;
    }
    Ok(CutOff {
        _dir: dir,
        mesh,
        api,
        far,
        banned,
        owner,
        _bystanders: others,
    })
}

/// The event log made to refuse new events (full, with `discard: new`) until stopped.
struct RefusingLog {
    js: async_nats::jetstream::Context,
    had: async_nats::jetstream::stream::Config,
}

impl RefusingLog {
    async fn start(mesh: &chatmesh::Mesh) -> Result<Self> {
        let js = async_nats::jetstream::new(mesh.nats.connect().await?);
        let mut log = js
            .get_stream(chatmesh_protocol::subjects::EVENT_LOG)
            .await?;
        let info = log.info().await?;
        let had = info.config.clone();
        let mut full = had.clone();
        full.max_messages = i64::try_from(info.state.messages)?;
        full.discard = async_nats::jetstream::stream::DiscardPolicy::New;
        js.update_stream(full).await?;
        Ok(Self { js, had })
    }

    async fn stop(self) -> Result<()> {
        self.js.update_stream(self.had).await?;
        Ok(())
    }
}

/// Waits for bob's `left` of `hall` and checks that nothing of the room reached him before.
async fn left_without_a_message(banned: &mut Client) -> Result<()> {
    loop {
        match banned.next().await? {
            ServerFrame::Left { room, .. } if room == "hall" => return Ok(()),
            ServerFrame::Message(m) => panic!("the banned user got {:?} after the ban", m.body),
            _ => {}
        }
    }
}

/// Membership events are core NATS: one published while a gateway is cut off from the bus
/// never reaches it. Once it is back, the gateway asks again about every user of its rooms,
/// so a user banned meanwhile is removed there (`membership` null, `left`) and gets no more
/// of the room's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_missed_while_cut_off_from_nats_applies_once_back() -> Result<()> {
    let CutOff {
        mesh,
        far,
        mut banned,
        mut owner,
        ..
    } = banned_while_cut_off(Log::Any, 0).await?;
    far.proxy.restore();

    banned
        .wait_for(|f| matches!(f, ServerFrame::Membership { room, role: None } if room == "hall"))
        .await?;
    banned
        .wait_for(|f| matches!(f, ServerFrame::Left { room, .. } if room == "hall"))
        .await?;
    not_delivered_after(&mut owner, &mut banned, "hall", "a2").await?;
    far.stop().await;
    mesh.stop().await
}

/// What was posted after a ban the far gateway missed (cut off from NATS) is not delivered
/// to the banned user once the gateway is back: the room's first live message after the
/// reconnect reveals the gap, and the room delivers neither the gap nor that message before
/// the access re-check has taken the banned user out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_posted_after_a_missed_ban_reaches_the_banned_after_the_reconnect() -> Result<()> {
    let CutOff {
        mesh,
        far,
        mut banned,
        mut owner,
        ..
    } = banned_while_cut_off(Log::Any, 0).await?;
    owner
        .post("hall", "a2", "while cut off, after the ban")
        .await?;
    far.proxy.restore();
    far.reconnected().await?;
    // At once, before the gateway's re-check: the live message that reveals the gap.
    owner.post("hall", "a3", "just after the reconnect").await?;

    left_without_a_message(&mut banned).await?;
    not_delivered_after(&mut owner, &mut banned, "hall", "a4").await?;
    far.stop().await;
    mesh.stop().await
}

/// Gives the far gateway its way to NATS back and waits until bob has left `hall` (nothing
/// of it reaching him first) and one catch-up of the kind `way` (`catchups`: from the event
/// log, `fallbacks`: by asking everyone) ran; returns how many (room, user) pairs it asked
/// about.
async fn questions_to_catch_up(
    far: &FarGateway,
    api: &Api,
    banned: &mut Client,
    way: &str,
) -> Result<f64> {
    let questions = "chatmesh_access_recheck_questions_total";
    let before = api.metric(questions).await?;
    far.proxy.restore();
    left_without_a_message(banned).await?;
    api.metric_reaches(&format!("chatmesh_event_log_{way}_total"), 1.0)
        .await?;
    Ok(api.metric(questions).await? - before)
}

/// A gateway back from a cut reads the events it missed from the event log and asks the
/// workers only about what they name: with 30 more users in a room here, the catch-up after
/// the missed ban asks one question (bob in `hall`), and bob is out before anything posted
/// after the ban reaches him.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_back_from_a_cut_asks_only_about_what_the_event_log_says_it_missed() -> Result<()>
{
    let CutOff {
        _dir,
        mesh,
        api,
        far,
        mut banned,
        mut owner,
        _bystanders,
    } = banned_while_cut_off(Log::Marked, 30).await?;
    owner
        .post("hall", "a2", "while cut off, after the ban")
        .await?;
    let asked = questions_to_catch_up(&far, &api, &mut banned, "catchups").await?;
    assert_eq!(
        asked, 1.0,
        "the catch-up asked about more than the missed event named"
    );
    assert_eq!(api.metric("chatmesh_event_log_fallbacks_total").await?, 0.0);
    not_delivered_after(&mut owner, &mut banned, "hall", "a3").await?;
    far.stop().await;
    mesh.stop().await
}

/// When the event log cannot say what was missed (here it was made anew while the gateway
/// was away, so its seqs start below the gateway's mark), the gateway asks about every user
/// of its rooms again, as without a log: the missed ban still applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_event_log_cannot_say_every_user_here_is_asked_about_again() -> Result<()> {
    let CutOff {
        _dir,
        mesh,
        api,
        far,
        mut banned,
        mut owner,
        _bystanders,
    } = banned_while_cut_off(Log::RemadeWhileAway, 5).await?;
    let asked = questions_to_catch_up(&far, &api, &mut banned, "fallbacks").await?;
    assert_eq!(
        asked, 6.0,
        "every user of the gateway's rooms is asked about"
    );
    assert_eq!(api.metric("chatmesh_event_log_catchups_total").await?, 0.0);
    not_delivered_after(&mut owner, &mut banned, "hall", "a2").await?;
    far.stop().await;
    mesh.stop().await
}

/// An event the event log did not store when it was published (the log refused it) is
/// published again, late, until the log has it: a gateway that was cut off at the ban still
/// learns of it from the log or from the late event, without asking about everyone, and
/// nothing posted after the ban reaches the banned user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_log_refused_is_stored_late_and_the_cut_gateway_learns_of_it() -> Result<()> {
    let CutOff {
        _dir,
        mesh,
        api,
        far,
        mut banned,
        mut owner,
        _bystanders,
    } = banned_while_cut_off(Log::RefusingAtTheBan, 3).await?;
    owner
        .post("hall", "a2", "while cut off, after the ban")
        .await?;
    let retries = "chatmesh_event_log_retries_total";
    api.metric_at_least(retries, 1.0).await?;
    far.proxy.restore();
    left_without_a_message(&mut banned).await?;
    assert_eq!(api.metric("chatmesh_event_log_fallbacks_total").await?, 0.0);
    api.metric_reaches("chatmesh_event_log_unstored", 0.0)
        .await?;
    not_delivered_after(&mut owner, &mut banned, "hall", "a3").await?;
    far.stop().await;
    mesh.stop().await
}

/// A late event (published again for the event log) may be older than what a gateway has
/// heard since, so it is checked with the workers, not applied: a late removal of bob, who
/// is a member, leaves him in the room (no `left`, the next message reaches him), while
/// the same event not marked late takes him out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_is_checked_with_the_workers_not_applied() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    api.room(&ann, "hall", "private").await?;
    let (s, v) = add(&api, &ann, "hall", "bob", "member").await?;
    assert_eq!(s, 204, "{v}");
    let mut member = Client::login(&mesh.ws_url(), &bob).await?;
    member.join("hall").await?;
    let mut owner = Client::login(&mesh.ws_url(), &ann).await?;
    owner.join("hall").await?;

    let bus = mesh.nats.connect().await?;
    let removal = serde_json::to_vec(&json!({"room": "hall", "user": "bob", "role": null}))?;
    let mut late = async_nats::HeaderMap::new();
    late.insert(chatmesh_protocol::subjects::LATE_HEADER, "1");
    let subject = chatmesh_protocol::subjects::member_subject("hall");
    let rechecks = "chatmesh_access_rechecks_total";
    let before = api.metric(rechecks).await?;
    bus.publish_with_headers(subject.clone(), late, removal.clone().into())
        .await?;
    bus.flush().await?;
    api.metric_at_least("chatmesh_event_log_late_events_total", 1.0)
        .await?;
    api.metric_at_least(rechecks, before + 1.0).await?;
    owner.post("hall", "a1", "after the late event").await?;
    let got = member.messages("hall", 1).await?;
    assert_eq!(got[0].body, "after the late event");
    assert!(
        !member
            .backlog
            .iter()
            .any(|f| matches!(f, ServerFrame::Left { .. })),
        "{:?}",
        member.backlog
    );

    bus.publish(subject, removal.into()).await?;
    bus.flush().await?;
    member
        .wait_for(|f| matches!(f, ServerFrame::Left { room, .. } if room == "hall"))
        .await?;
    mesh.stop().await
}

/// A NATS client that drops messages of a slow subscription may have dropped membership
/// events too: the gateway re-checks room access as after a reconnect. Here a subscription of
/// the far gateway's own client (connected by `chatmesh::nats::connect`, as every service)
/// is flooded past its buffer without being read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_drop_makes_the_gateway_ask_about_access_again() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let bob = api.user("bob").await?;
    api.room(&bob, "hall", "public").await?;
    let far = FarGateway::start(&mesh).await?;
    let mut c = Client::login(&far.ws_url(), &bob).await?;
    c.join("hall").await?;
    let before = api.metric("chatmesh_access_rechecks_total").await?;

    let _unread = far.nats.subscribe("chat.evt.flood").await?;
    for i in 0..70_000u32 {
        far.nats
            .publish("chat.evt.flood", i.to_string().into())
            .await?;
    }
    far.nats.flush().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while api.metric("chatmesh_access_rechecks_total").await? <= before {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no access re-check after the slow-consumer drop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The re-check keeps a member in: the room still delivers to it.
    c.post("hall", "b1", "still here").await?;
    c.messages("hall", 1).await?;
    far.stop().await;
    mesh.stop().await
}

/// Owner and admins ban, members do not; an admin bans neither the owner nor another admin;
/// the owner bans an admin; nobody bans themselves; a user who is not a member can be
/// banned ahead; a banned user does not see a private room anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_ban_whom() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let ad1 = api.user("ad1").await?;
    let ad2 = api.user("ad2").await?;
    let m1 = api.user("m1").await?;
    api.user("m2").await?;
    let eve = api.user("eve").await?;
    api.room(&ann, "den", "private").await?;
    for (u, role) in [
        ("ad1", "admin"),
        ("ad2", "admin"),
        ("m1", "member"),
        ("m2", "member"),
    ] {
        let (s, v) = add(&api, &ann, "den", u, role).await?;
        assert_eq!(s, 204, "{v}");
    }
    let cases = [
        (&m1, "m2", "a member"),
        (&ad1, "ad2", "an admin banning an admin"),
        (&ad1, "ann", "an admin banning the owner"),
        (&ann, "ann", "the owner banning itself"),
        (&ad1, "ad1", "an admin banning itself"),
        (&eve, "m2", "an outsider"),
    ];
    for (token, user, what) in cases {
        let (s, v) = ban(&api, token, "den", json!({ "user": user })).await?;
        assert_eq!(code(s, &v), (403, Some("forbidden".into())), "{what}: {v}");
    }
    let (s, v) = ban(&api, &ad1, "den", json!({"user": "m1"})).await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = ban(&api, &ann, "den", json!({"user": "ad2"})).await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = ban(&api, &ann, "den", json!({"user": "ad2"})).await?;
    refused(s, &v, 409, "conflict");
    // Ahead of time: eve is no member.
    let (s, v) = ban(&api, &ad1, "den", json!({"user": "eve"})).await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = add(&api, &ann, "den", "eve", "member").await?;
    refused(s, &v, 409, "conflict");

    // Banned from a private room: not listed, not joined, not read; the members are told.
    for token in [&m1, &ad2, &eve] {
        assert!(listing(&api, token, "den").await?.is_none());
        let mut c = Client::login(&mesh.ws_url(), token).await?;
        let f = c.request(frame::join("den")).await?;
        assert_eq!(error_of(&f).0, ErrorCode::Forbidden);
        let (s, _) = api
            .call("GET", "/v1/rooms/den/messages", Some(token), None)
            .await?;
        assert_eq!(s, 403);
    }
    let (s, v) = api
        .call("GET", "/v1/rooms/den/members", Some(&ann), None)
        .await?;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["user"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["ad1", "ann", "m2"]);
    let events: Vec<RoomEvent> = history(&api, &ann, "den")
        .await?
        .into_iter()
        .filter_map(|m| m.event)
        .collect();
    let banned: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::Ban { user, .. } => Some(user.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(banned, ["m1", "ad2", "eve"]);
    // An admin pages the bans by name.
    let (s, v) = api
        .call("GET", "/v1/rooms/den/bans?limit=2", Some(&ad1), None)
        .await?;
    assert_eq!((s, &v["more"]), (200, &json!(true)), "{v}");
    let (s, v) = api
        .call(
            "GET",
            "/v1/rooms/den/bans?limit=2&after=eve",
            Some(&ad1),
            None,
        )
        .await?;
    assert_eq!((s, &v["more"]), (200, &json!(false)), "{v}");
    assert_eq!(v["bans"][0]["user"], "m1");
    Ok(())
}

/// A removal whose membership event never reaches a gateway that saw no loss (a NATS route
/// that dropped it; here a proxy that drops the `chat.mem.*` messages on their way to the
/// gateway and keeps its connection up) still takes the removed member's session out of the
/// private room there (`left`) by the periodic re-check (`gateway.session_recheck_secs`),
/// and nothing posted after that reaches it: before, it kept getting the room's messages for
/// as long as it stayed connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_whose_event_never_arrived_takes_the_session_out_all_the_same() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.session_recheck_secs = 2;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    api.room(&ann, "den", "private").await?;
    let (s, v) = add(&api, &ann, "den", "bob", "member").await?;
    assert_eq!(s, 204, "{v}");
    let far = FarGateway::start(&mesh).await?;
    let mut removed = Client::login(&far.ws_url(), &bob).await?;
    removed.join("den").await?;
    far.proxy.drop_subjects("chat.mem.");
    let (s, v) = api
        .call("DELETE", "/v1/rooms/den/members/bob", Some(&ann), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    removed
        .wait_for(|f| matches!(f, ServerFrame::Left { room, .. } if room == "den"))
        .await?;
    let mut owner = Client::login(&mesh.ws_url(), &ann).await?;
    owner.join("den").await?;
    not_delivered_after(&mut owner, &mut removed, "den", "a1").await?;
    far.stop().await;
    mesh.stop().await
}

/// Only the owner bans or mutes an admin, and only the owner lifts it: another admin's
/// unban of an admin the owner banned, or unmute of one who left the room since, is refused
/// `forbidden` (before, the banned admin's role was gone, and with it the check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_lifts_a_ban_or_mute_of_an_admin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let xan = api.user("xan").await?;
    let yul = api.user("yul").await?;
    api.room(&ann, "hall", "public").await?;
    for user in ["xan", "yul"] {
        let (s, v) = add(&api, &ann, "hall", user, "admin").await?;
        assert_eq!(s, 204, "{v}");
    }
    let (s, v) = ban(&api, &ann, "hall", json!({"user": "xan"})).await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = api
        .call("DELETE", "/v1/rooms/hall/bans/xan", Some(&yul), None)
        .await?;
    refused(s, &v, 403, "forbidden");
    let (s, v) = api
        .call("DELETE", "/v1/rooms/hall/bans/xan", Some(&ann), None)
        .await?;
    assert_eq!(s, 204, "{v}");

    let (s, v) = add(&api, &ann, "hall", "xan", "admin").await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = mute(&api, &ann, "hall", json!({"user": "xan"})).await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = api
        .call("DELETE", "/v1/rooms/hall/members/xan", Some(&xan), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = api
        .call("DELETE", "/v1/rooms/hall/mutes/xan", Some(&yul), None)
        .await?;
    refused(s, &v, 403, "forbidden");
    let (s, v) = api
        .call("DELETE", "/v1/rooms/hall/mutes/xan", Some(&ann), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    mesh.stop().await
}

/// A muted admin's topic and room name changes, and a ban with a reason, are refused
/// `forbidden` too: each would put its text, from the muted, in front of every member.
/// Lifted, they are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_admin_cannot_speak_through_the_topic_the_name_or_a_ban() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    api.room(&ann, "hall", "public").await?;
    let (s, v) = add(&api, &ann, "hall", "bob", "admin").await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = mute(&api, &ann, "hall", json!({"user": "bob"})).await?;
    assert_eq!(s, 204, "{v}");
    for body in [json!({"topic": "buy now"}), json!({"name": "buy now"})] {
        let (s, v) = api
            .call("PATCH", "/v1/rooms/hall", Some(&bob), Some(body.clone()))
            .await?;
        refused(s, &v, 403, "forbidden");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("muted"),
            "{body}: {v}"
        );
    }
    // Nor through a ban's reason, which every member sees too (mal: his own second
    // account, banned ahead). Before, the ban was stored and its reason shown to all.
    api.user("mal").await?;
    let (s, v) = ban(
        &api,
        &bob,
        "hall",
        json!({"user": "mal", "reason": "buy now"}),
    )
    .await?;
    refused(s, &v, 403, "forbidden");
    let msgs = history(&api, &ann, "hall").await?;
    assert!(!msgs.iter().any(|m| m.from == "bob"), "{msgs:?}");

    let (s, v) = api
        .call("DELETE", "/v1/rooms/hall/mutes/bob", Some(&ann), None)
        .await?;
    assert_eq!(s, 204, "{v}");
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/rooms/hall",
            Some(&bob),
            Some(json!({"topic": "welcome"})),
        )
        .await?;
    assert_eq!(s, 200, "{v}");
    Ok(())
}

/// A muted member's sends of every kind are refused `forbidden` and not stored, while it
/// still reads; the member list shows the mute; an unmute lifts it; a mute with `until`
/// ends by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_refuses_every_send_until_lifted_or_over() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let bob = api.user("bob").await?;
    api.room(&ann, "hall", "public").await?;
    let mut owner = Client::login(&mesh.ws_url(), &ann).await?;
    owner.join("hall").await?;
    let mut muted = Client::login(&mesh.ws_url(), &bob).await?;
    muted.join("hall").await?;
    // Sent before: bob's access is cached as "may post" on the gateway.
    let own = muted.post("hall", "b1", "mine").await?;
    let other = owner.post("hall", "a1", "theirs").await?;

    let (s, v) = mute(&api, &ann, "hall", json!({"user": "bob"})).await?;
    assert_eq!(s, 204, "{v}");
    let sends = [
        frame::send("hall", "b2", "hello?"),
        frame::edit("hall", "b3", own.seq, "edited"),
        frame::delete("hall", "b4", own.seq),
        frame::react("hall", "b5", other.seq, "👍", false),
        frame::reply("hall", "b6", other.seq, "a reply"),
    ];
    for send in sends {
        let f = muted.request(send.clone()).await?;
        assert_eq!(
            error_of(&f),
            (ErrorCode::Forbidden, "muted in this room".into()),
            "{send:?}"
        );
    }
    // Nothing of it stored; the mute itself is the last message.
    let msgs = history(&api, &ann, "hall").await?;
    let last = msgs.last().cloned().unwrap_or_default();
    assert_eq!(
        last.event,
        Some(RoomEvent::Mute {
            user: "bob".into(),
            until: None
        })
    );
    assert_eq!(msgs.iter().filter(|m| m.from == "bob").count(), 1);
    // Still reads.
    let news = owner.post("hall", "a2", "news").await?;
    let got = muted
        .wait_for(|f| matches!(f, ServerFrame::Message(m) if m.seq == news.seq))
        .await?;
    assert!(matches!(got, ServerFrame::Message(_)));
    // The member list shows it.
    let (s, v) = api
        .call("GET", "/v1/rooms/hall/members", Some(&bob), None)
        .await?;
    assert_eq!(s, 200);
    let entry = v["members"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["user"] == "bob").cloned())
        .unwrap_or_default();
    assert_eq!(entry["muted"], true, "{v}");
    assert!(entry.get("muted_until").is_none(), "{entry}");
    // Leaving and joining again is no way out.
    muted.request(frame::leave("hall")).await?;
    let (s, _) = api
        .call("DELETE", "/v1/rooms/hall/members/bob", Some(&bob), None)
        .await?;
    assert_eq!(s, 204);
    muted.join("hall").await?;
    let f = muted.request(frame::send("hall", "b7", "again")).await?;
    assert_eq!(error_of(&f).0, ErrorCode::Forbidden);

    // Unmuted: sends again.
    let http = Http::new(&mesh.url())?.with_token(&ann);
    http.unmute("hall", "bob").await?;
    muted.post("hall", "b8", "back").await?;
    let (s, v) = api
        .call("DELETE", "/v1/rooms/hall/mutes/bob", Some(&ann), None)
        .await?;
    refused(s, &v, 404, "not_found");

    // For two seconds: refused, then accepted without anyone lifting it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    http.mute("hall", "bob", Some(now + 2)).await?;
    let (s, v) = api
        .call("GET", "/v1/rooms/hall/members", Some(&ann), None)
        .await?;
    assert_eq!(s, 200);
    let entry = v["members"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["user"] == "bob").cloned())
        .unwrap_or_default();
    assert_eq!(entry["muted_until"], json!(now + 2), "{entry}");
    let f = muted.request(frame::send("hall", "b9", "now?")).await?;
    assert_eq!(error_of(&f).0, ErrorCode::Forbidden);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        let f = muted
            .request(frame::send("hall", &format!("c{n}"), "later"))
            .await?;
        if matches!(f, ServerFrame::Ack { .. }) {
            break;
        }
        assert_eq!(error_of(&f).0, ErrorCode::Forbidden);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mute never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed_ok = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        >= now + 2;
    assert!(elapsed_ok, "accepted before the mute's end");

    // Refusals: a past or far `until`, a non-member, a member muting, the owner.
    for until in [now.saturating_sub(10), now + 20 * 366 * 24 * 3600] {
        let (s, v) = mute(&api, &ann, "hall", json!({"user": "bob", "until": until})).await?;
        refused(s, &v, 400, "bad_request");
    }
    api.user("cy").await?;
    let (s, v) = mute(&api, &ann, "hall", json!({"user": "cy"})).await?;
    refused(s, &v, 404, "not_found");
    let (s, v) = mute(&api, &bob, "hall", json!({"user": "ann"})).await?;
    refused(s, &v, 403, "forbidden");
    Ok(())
}

/// Topic and name changes, and moderation actions, are messages in the room's order: acked
/// seqs in the `prev` chain, live, in history and in a `join since` replay (once each), not
/// unread; the room list shows the latest topic and name; the `topic` frame still comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_and_name_changes_are_ordered_events() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let cy = api.user("cy").await?;
    api.room(&ann, "hall", "public").await?;
    let mut owner = Client::login(&mesh.ws_url(), &ann).await?;
    owner.join("hall").await?;
    let mut watcher = Client::login(&mesh.ws_url(), &cy).await?;
    let start = watcher.join("hall").await?;

    let m1 = owner.post("hall", "a1", "one").await?;
    let (s, t) = api
        .call(
            "PATCH",
            "/v1/rooms/hall",
            Some(&ann),
            Some(json!({"topic": "Plants"})),
        )
        .await?;
    assert_eq!(s, 200, "{t}");
    let http = Http::new(&mesh.url())?.with_token(&ann);
    http.set_room_name("hall", Some("  The Hall ")).await?;
    let m2 = owner.post("hall", "a2", "two").await?;
    http.set_topic("hall", Some("Trees")).await?;

    let live = watcher.messages("hall", 5).await?;
    assert_chain(&live, start);
    assert_eq!(live[0].seq, m1.seq);
    assert_eq!(live[1].seq, t["seq"].as_u64().unwrap_or_default());
    assert_eq!(live[1].event, Some(RoomEvent::Topic(Some("Plants".into()))));
    assert_eq!(
        live[2].event,
        Some(RoomEvent::Name(Some("The Hall".into())))
    );
    assert_eq!(live[3].seq, m2.seq);
    assert_eq!(live[4].event, Some(RoomEvent::Topic(Some("Trees".into()))));
    for ev in [&live[1], &live[2], &live[4]] {
        assert_eq!((ev.from.as_str(), ev.body.as_str()), ("ann", ""));
    }
    watcher
        .wait_for(|f| matches!(f, ServerFrame::Topic { topic: Some(t), .. } if t == "Trees"))
        .await?;

    // History has them in place.
    let stored = history(&api, &cy, "hall").await?;
    let seqs: Vec<(u64, Option<RoomEvent>)> =
        stored.iter().map(|m| (m.seq, m.event.clone())).collect();
    let want: Vec<(u64, Option<RoomEvent>)> =
        live.iter().map(|m| (m.seq, m.event.clone())).collect();
    assert_eq!(seqs, want);
    // A replay from `since` carries them once each, in order.
    let mut late = Client::login(&mesh.ws_url(), &cy).await?;
    let f = late.request(frame::join_since("hall", start)).await?;
    joined(&f);
    let replayed = late.messages("hall", 5).await?;
    assert_eq!(
        replayed.iter().map(|m| m.seq).collect::<Vec<_>>(),
        live.iter().map(|m| m.seq).collect::<Vec<_>>()
    );
    let pong = late.request(frame::ping()).await?;
    assert!(matches!(pong, ServerFrame::Pong { .. }));
    assert!(!late
        .backlog
        .iter()
        .any(|f| matches!(f, ServerFrame::Message(_))));

    // The room list: the latest topic and name; events are not unread.
    let mine = listing(&api, &cy, "hall").await?.expect("cy's room");
    assert_eq!(mine.topic.as_deref(), Some("Trees"));
    assert_eq!(mine.name.as_deref(), Some("The Hall"));
    assert_eq!(mine.unread, 2, "{mine:?}");
    // Nobody edits, reacts or replies to an event.
    for send in [
        frame::edit("hall", "x1", live[1].seq, "no"),
        frame::react("hall", "x2", live[1].seq, "👍", false),
        frame::reply("hall", "x3", live[1].seq, "no"),
    ] {
        let f = owner.request(send).await?;
        assert_eq!(error_of(&f).0, ErrorCode::BadRequest, "{f:?}");
    }

    // Cleared; bad names refused; members may not name the room.
    http.set_room_name("hall", None).await?;
    let cleared = watcher.messages("hall", 1).await?;
    assert_eq!(cleared[0].event, Some(RoomEvent::Name(None)));
    let mine = listing(&api, &cy, "hall").await?.expect("cy's room");
    assert_eq!(mine.name, None);
    for bad in [json!("x".repeat(65)), json!("two\nlines"), json!(7)] {
        let (s, v) = api
            .call(
                "PATCH",
                "/v1/rooms/hall",
                Some(&ann),
                Some(json!({ "name": bad })),
            )
            .await?;
        refused(s, &v, 400, "bad_request");
    }
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/rooms/hall",
            Some(&ann),
            Some(json!({"name": "a", "topic": "b"})),
        )
        .await?;
    refused(s, &v, 400, "bad_request");
    let (s, v) = api
        .call(
            "PATCH",
            "/v1/rooms/hall",
            Some(&cy),
            Some(json!({"name": "mine"})),
        )
        .await?;
    refused(s, &v, 403, "forbidden");
    Ok(())
}

/// Bad input: unknown users and rooms 404, bad names and fields 400, an oversize reason
/// 400, a DM 403, the bound on bans per room 403, a bad page 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_moderation_requests_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.worker.max_bans_per_room = 2;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    for u in ["bob", "cy", "dee"] {
        api.user(u).await?;
    }
    api.room(&ann, "hall", "public").await?;

    let (s, v) = ban(&api, &ann, "hall", json!({"user": "nobody"})).await?;
    refused(s, &v, 404, "not_found");
    let (s, v) = ban(&api, &ann, "nowhere", json!({"user": "bob"})).await?;
    refused(s, &v, 404, "not_found");
    for body in [
        json!({"user": "a.b"}),
        json!({"user": "bob", "reason": "x".repeat(257)}),
        json!({"user": "bob", "reason": "line\nbreak"}),
        json!({"user": "bob", "why": "x"}),
        json!({}),
    ] {
        let (s, v) = ban(&api, &ann, "hall", body.clone()).await?;
        assert_eq!(
            code(s, &v),
            (400, Some("bad_request".into())),
            "{body}: {v}"
        );
    }
    let (s, v) = mute(&api, &ann, "hall", json!({"user": "bob", "until": "soon"})).await?;
    refused(s, &v, 400, "bad_request");
    for path in ["/v1/rooms/hall/bans/a.b", "/v1/rooms/hall/mutes/a.b"] {
        let (s, v) = api.call("DELETE", path, Some(&ann), None).await?;
        refused(s, &v, 400, "bad_request");
    }
    for q in ["limit=0", "limit=201", "limit=x", "after=a.b", "sort=x"] {
        let (s, v) = api
            .call("GET", &format!("/v1/rooms/hall/bans?{q}"), Some(&ann), None)
            .await?;
        assert_eq!(s, 400, "{q}: {v}");
    }
    let (s, _) = api.call("GET", "/v1/rooms/hall/bans", None, None).await?;
    assert_eq!(s, 401);
    // A DM has no admins.
    let (_, dm) = api.call("POST", "/v1/dm/bob", Some(&ann), None).await?;
    let room = dm["room"].as_str().unwrap_or_default().to_owned();
    let (s, v) = ban(&api, &ann, &room, json!({"user": "bob"})).await?;
    refused(s, &v, 403, "forbidden");
    let (s, v) = mute(&api, &ann, &room, json!({"user": "bob"})).await?;
    refused(s, &v, 403, "forbidden");
    // At most two bans here.
    for u in ["bob", "cy"] {
        let (s, v) = ban(&api, &ann, "hall", json!({ "user": u })).await?;
        assert_eq!(s, 204, "{v}");
    }
    let (s, v) = ban(&api, &ann, "hall", json!({"user": "dee"})).await?;
    refused(s, &v, 403, "forbidden");
    let (s, _) = api
        .call("DELETE", "/v1/rooms/hall/bans/cy", Some(&ann), None)
        .await?;
    assert_eq!(s, 204);
    let (s, v) = ban(&api, &ann, "hall", json!({"user": "dee"})).await?;
    assert_eq!(s, 204, "{v}");
    Ok(())
}
