//! History reads against what clients were told: a read after an `ack` includes the acked
//! message, pages stay under NATS's payload limit however large the messages, and re-joins
//! with `since` do not pile up replays.

mod common;

use std::collections::HashMap;

use anyhow::{Context, Result};
use common::*;
use serde_json::json;

/// `ann`'s token and a client of hers, in room `room` she created (not joined).
async fn owner(mesh: &chatmesh::Mesh, room: &str) -> Result<(Api, String, Client)> {
    let api = Api::new(mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, room, "public").await?;
    let c = Client::login(&mesh.ws_url(), &ann).await?;
    Ok((api, ann, c))
}

/// Checks that `got` (messages, oldest first) is exactly the `acked` messages with their
/// bodies intact.
fn assert_all(got: &[Message], acked: &[(u64, usize)], bodies: &[String], how: &str) {
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    let want: Vec<u64> = acked.iter().map(|a| a.0).collect();
    assert_eq!(seqs, want, "{how}: every message once, in order");
    for (m, (_, i)) in got.iter().zip(acked) {
        assert!(m.body == bodies[*i], "{how}: body of {} changed", m.seq);
    }
}

/// Messages replayed by the gateway (all joins with `since`).
const REPLAYED: &str = "chatmesh_replay_messages_total";
/// Replays holding one of the gateway's `max_replays` slots.
const RUNNING: &str = "chatmesh_replays_running";

/// What one session received, per join: the seqs each join (by its `ref`) delivered.
#[derive(Default)]
struct Joins {
    segs: HashMap<String, Vec<u64>>,
    /// The ref of each room's latest join.
    current: HashMap<String, String>,
}

impl Joins {
    /// Reads `c`'s frames until `done`; returns the frames other than `joined`, `message` and
    /// presence diffs, in order.
    async fn read(
        &mut self,
        c: &mut Client,
        done: impl Fn(&Self, &[ServerFrame<'static>]) -> bool,
    ) -> Result<Vec<ServerFrame<'static>>> {
        let mut others = Vec::new();
        while !done(self, &others) {
            match c.next().await? {
                ServerFrame::Joined { r#ref, room, .. } => {
                    // The ref as JSON text: `1` for the join sent with ref 1.
                    let r = r#ref.into_owned().unwrap_or_default().to_string();
                    self.segs.insert(r.clone(), Vec::new());
                    self.current.insert(room.into_owned(), r);
                }
                ServerFrame::Message(m) => {
                    let r = self
                        .current
                        .get(&m.room)
                        .context("a message before joined")?;
                    let seg = self.segs.get_mut(r).context("segment")?;
                    seg.push(m.seq);
                }
                ServerFrame::PresenceDiff { .. } => {}
                f => others.push(f),
            }
        }
        Ok(others)
    }

    /// The last seq join `r` delivered.
    fn last(&self, r: &str) -> Option<u64> {
        self.segs.get(r).and_then(|s| s.last().copied())
    }

    /// Each seq at most once per join, in order.
    fn assert_once_in_order(&self) {
        for (r, seg) in &self.segs {
            assert!(
                seg.windows(2).all(|w| w[0] < w[1]),
                "join {r}: a message twice or out of order"
            );
        }
    }
}

/// Seqs of a page's `messages`.
fn seqs(page: &Page) -> Vec<u64> {
    page.messages.iter().map(|m| m.seq).collect()
}

/// A client that is acked and reads at once sees its message, over HTTP and WebSocket,
/// every time (before: the worker answered from a store 2–6 ms behind the ack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_right_after_an_ack_includes_the_acked_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let (api, ann, mut c) = owner(&mesh, "now").await?;
    let mut missed = Vec::new();
    for i in 0..60 {
        let ack = c
            .request(frame::send("now", &format!("m{i}"), "hi"))
            .await?;
        // As before: a send that is not acked is looked for as seq 0 (and so missed).
        let seq = match ack {
            ServerFrame::Ack { seq, .. } => seq,
            _ => 0,
        };
        let page = if i % 2 == 0 {
            let (s, v) = api
                .call("GET", "/v1/rooms/now/messages?limit=5", Some(&ann), None)
                .await?;
            assert_eq!(s, 200, "{v}");
            http_page(&v)
        } else {
            let v = c.request(frame::history_before("now", None, 5)).await?;
            assert_eq!(v.frame_type(), FrameType::History, "{v:?}");
            page(&v)
        };
        if !seqs(&page).contains(&seq) {
            missed.push(seq);
        }
    }
    assert!(
        missed.is_empty(),
        "acked but missing from history: {missed:?}"
    );
    mesh.stop().await
}

/// A room of 100 bodies at the body limit and 30 of control characters (6 bytes each once
/// JSON-escaped): 3.4 MB of history, over NATS's 1 MiB payload in any page of 100. Paged
/// over HTTP and WebSocket, and replayed by a `join` with `since`, every page answers, is
/// under 1 MiB, holds at least one message, and together they hold each message once
/// (before: the worker's reply was dropped and the client got `unavailable` after 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_large_messages_stay_under_the_payload_limit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = fast_config();
    let max_body = config.gateway.limits.max_body_bytes;
    let mesh = start_mesh(dir.path(), config).await?;
    let (api, ann, mut c) = owner(&mesh, "big").await?;
    let control = escape_heavy();
    let bodies: Vec<String> = (0..130)
        .map(|i| match i % 13 {
            0..=2 => control.clone(),
            _ => format!("{i:05}").repeat(max_body / 5),
        })
        .collect();
    assert!(bodies.iter().all(|b| b.len() <= max_body));
    let acked = c.fill("big", &bodies).await?;

    let mut http = Vec::new();
    let mut before = String::new();
    loop {
        let path = format!("/v1/rooms/big/messages?limit=100{before}");
        let (s, v) = api.call("GET", &path, Some(&ann), None).await?;
        assert_eq!(s, 200, "{v}");
        let page = http_page(&v);
        assert!(!page.messages.is_empty(), "a page makes progress: {v}");
        assert!(v.to_string().len() < 1 << 20, "page over 1 MiB");
        before = format!("&before={}", page.messages[0].seq);
        http.splice(0..0, page.messages);
        if !page.more {
            break;
        }
    }
    assert_all(&http, &acked, &bodies, "HTTP");

    let mut ws = Vec::new();
    let mut before = None;
    loop {
        let v = c.request(frame::history_before("big", before, 100)).await?;
        assert_eq!(v.frame_type(), FrameType::History, "{v:?}");
        let Page { messages, more } = page(&v);
        assert!(!messages.is_empty(), "a page makes progress");
        before = Some(messages[0].seq);
        ws.splice(0..0, messages);
        if !more {
            break;
        }
    }
    assert_all(&ws, &acked, &bodies, "WebSocket history");

    let mut r = Client::login(&mesh.ws_url(), &ann).await?;
    r.request(frame::join_since("big", 0)).await?;
    let replayed = r.messages("big", acked.len()).await?;
    assert_all(&replayed, &acked, &bodies, "replay");
    mesh.stop().await
}

/// 60 re-joins with `since` of a room of 1,000 messages, each sent as soon as the previous
/// one is `joined`: each join delivers a message at most once, in order, and the last join
/// all of them; each re-join stops the replay it replaces, so far fewer than 60 × 1,000
/// messages are replayed in all (before: every replay ran to its end, ~60,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoins_cancel_the_replay_they_replace() -> Result<()> {
    const JOINS: u64 = 60;
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let (api, ann, mut c) = owner(&mesh, "busy").await?;
    let acked = c.fill("busy", &vec!["x".repeat(1000); 1000]).await?;
    let all: Vec<u64> = acked.iter().map(|a| a.0).collect();
    let last = all[all.len() - 1];
    let before = api.metric(REPLAYED).await?;
    let mut r = Client::login(&mesh.ws_url(), &ann).await?;
    let mut joins = Joins::default();
    for k in 1..=JOINS {
        r.send_with_ref(frame::join_since("busy", 0), k).await?;
        let key = k.to_string();
        let others = joins.read(&mut r, |j, _| j.segs.contains_key(&key)).await?;
        assert!(others.is_empty(), "{others:?}");
    }
    let key = JOINS.to_string();
    joins
        .read(&mut r, |j, _| j.last(&key) == Some(last))
        .await?;
    joins.assert_once_in_order();
    assert_eq!(joins.segs[&key], all, "the last join replays everything");
    let replayed = api.metric(REPLAYED).await? - before;
    eprintln!("{replayed} messages replayed for {JOINS} joins");
    assert!(
        replayed >= all.len() as f64 && replayed < (JOINS * 1000 / 4) as f64,
        "{replayed} messages replayed for {JOINS} joins of 1000"
    );
    mesh.stop().await
}

/// One user's slow readers cannot hold every replay slot of a gateway: with
/// `max_replays_per_user` 2 of `max_replays` 4, ann's sessions that never read keep two big
/// replays running and her further joins with `since` are refused `rate_limited` at once,
/// while bob's resume still gets a slot and every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_hold_every_replay_slot() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.max_replays_per_session = 2;
    config.gateway.max_replays = 4;
    config.gateway.max_replays_per_user = 2;
    let Slots {
        mesh,
        api,
        ann,
        small,
    } = replay_slots(dir.path(), config).await?;

    // Two sessions of ann's, neither reading, each asking for both big rooms.
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let mut s = Client::login(&mesh.ws_url(), &ann).await?;
        for (r, room) in [(1, "big1"), (2, "big2")] {
            s.send_with_ref(frame::join_since(room, 0), r).await?;
        }
        sessions.push(s);
    }
    held_and_refused(&api, Client::login(&mesh.ws_url(), &ann).await?).await?;
    let bob = api.user("bob").await?;
    still_served(&small, Client::login(&mesh.ws_url(), &bob).await?).await?;
    drop(sessions);
    mesh.stop().await
}

/// A gateway with `config`'s replay bounds, ann's rooms `big1` and `big2` (800 messages of
/// 8 KiB each) and `small` (50).
struct Slots {
    mesh: chatmesh::Mesh,
    api: Api,
    ann: String,
    /// The seqs of `small`.
    small: Vec<u64>,
}

async fn replay_slots(
    dir: &std::path::Path,
    mut config: chatmesh::config::Config,
) -> Result<Slots> {
    config.gateway.replay_wait_ms = 300;
    config.gateway.limits.outbound_queue = 64;
    let mesh = start_mesh(dir, config).await?;
    let (api, ann, mut c) = owner(&mesh, "big1").await?;
    api.room(&ann, "big2", "public").await?;
    api.room(&ann, "small", "public").await?;
    let big = vec!["y".repeat(8 * 1024); 800];
    c.fill("big1", &big).await?;
    c.fill("big2", &big).await?;
    let small: Vec<u64> = c
        .fill("small", &vec!["z".into(); 50])
        .await?
        .iter()
        .map(|a| a.0)
        .collect();
    Ok(Slots {
        mesh,
        api,
        ann,
        small,
    })
}

/// Two replays (of sessions that never read) keep running, and `third`'s join with
/// `since` is refused `rate_limited` at once.
async fn held_and_refused(api: &Api, mut third: Client) -> Result<()> {
    api.metric_reaches(RUNNING, 2.0).await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(api.metric(RUNNING).await?, 2.0, "the replays running");
    let refused = third.request(frame::join_since("small", 0)).await?;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::RateLimited),
        "{refused:?}"
    );
    Ok(())
}

/// `c`'s resume of `small` still gets a slot and every message.
async fn still_served(small: &[u64], mut c: Client) -> Result<()> {
    let joined = c.request(frame::join_since("small", 0)).await?;
    assert_eq!(joined.frame_type(), FrameType::Joined, "{joined:?}");
    let got: Vec<u64> = c
        .messages("small", small.len())
        .await?
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(got, small);
    Ok(())
}

/// Many accounts from one address cannot hold every replay slot either: with
/// `max_replays_per_ip` 2 of `max_replays` 4 (behind a trusted proxy, the address is the
/// forwarded client), two accounts' sessions from 203.0.113.9 that never read keep two big
/// replays running; a third account's join with `since` from that address is refused
/// `rate_limited` at once while the gateway still has free slots, and bob, from another
/// address, gets a slot and every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_replay_slot() -> Result<()> {
    const CROWD: &str = "203.0.113.9";
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.max_replays = 4;
    config.gateway.max_replays_per_ip = 2;
    config.gateway.trusted_proxies = vec![[127, 0, 0, 1].into()];
    let Slots {
        mesh, api, small, ..
    } = replay_slots(dir.path(), config).await?;

    // Two accounts from one address, neither reading, each replaying a big room.
    let mut sessions = Vec::new();
    for (user, room) in [("cat", "big1"), ("dan", "big2")] {
        let token = api.user(user).await?;
        let mut s = Client::login_from(&mesh.ws_url(), &token, CROWD).await?;
        s.send_with_ref(frame::join_since(room, 0), 1).await?;
        sessions.push(s);
    }
    let eve = api.user("eve").await?;
    held_and_refused(&api, Client::login_from(&mesh.ws_url(), &eve, CROWD).await?).await?;
    let bob = api.user("bob").await?;
    still_served(
        &small,
        Client::login_from(&mesh.ws_url(), &bob, "203.0.113.10").await?,
    )
    .await?;
    drop(sessions);
    mesh.stop().await
}

/// With `max_replays_per_session` 2, a session's third replay at once is refused
/// `rate_limited` while a re-join of a room it replays is not (it replaces that replay);
/// with `max_replays` 3, a join with `since` that finds every slot taken waits
/// `replay_wait_ms` and is refused `unavailable`; a `leave` frees its slot at once. Clients
/// that do not read keep their replays running: each big room is larger than what can be
/// buffered for them (socket buffers ≤ 4 MiB, half the 64-frame queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_bounded_per_session_and_per_gateway() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.max_replays_per_session = 2;
    config.gateway.max_replays = 3;
    config.gateway.replay_wait_ms = 300;
    config.gateway.limits.outbound_queue = 64;
    let mesh = start_mesh(dir.path(), config).await?;
    let (api, ann, mut c) = owner(&mesh, "big1").await?;
    api.room(&ann, "big2", "public").await?;
    api.room(&ann, "small", "public").await?;
    let big = vec!["y".repeat(8 * 1024); 800];
    let big1: Vec<u64> = c.fill("big1", &big).await?.iter().map(|a| a.0).collect();
    c.fill("big2", &big).await?;
    let small: Vec<u64> = c
        .fill("small", &vec!["z".into(); 50])
        .await?
        .iter()
        .map(|a| a.0)
        .collect();

    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    for (r, room) in [(1, "big1"), (2, "big2"), (3, "small"), (4, "big1")] {
        a.send_with_ref(frame::join_since(room, 0), r).await?;
    }
    let mut b = Client::login(&mesh.ws_url(), &ann).await?;
    b.send_with_ref(frame::join_since("big1", 0), 1).await?;
    api.metric_reaches(RUNNING, 3.0).await?;
    let mut late = Client::login(&mesh.ws_url(), &ann).await?;
    let refused = late.request(frame::join_since("small", 0)).await?;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::Unavailable),
        "{refused:?}"
    );
    // A refused join changes nothing: a user not in the public room is not made a member.
    let bob = api.user("bob").await?;
    let mut outsider = Client::login(&mesh.ws_url(), &bob).await?;
    let refused = outsider.request(frame::join_since("small", 0)).await?;
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::Unavailable),
        "{refused:?}"
    );
    let (_, rooms) = api.call("GET", "/v1/rooms", Some(&bob), None).await?;
    let member = http_rooms(&rooms)
        .unwrap_or_default()
        .iter()
        .any(|r| r.room == "small" && r.role.is_some());
    assert!(!member, "a refused join made bob a member: {rooms}");
    a.send_with_ref(frame::leave("big2"), 5).await?;
    api.metric_reaches(RUNNING, 2.0).await?;
    let joined = late.request(frame::join_since("small", 0)).await?;
    assert_eq!(joined.frame_type(), FrameType::Joined, "{joined:?}");
    let got = late.messages("small", small.len()).await?;
    let got: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(got, small);

    let end = big1[big1.len() - 1];
    let mut joins = Joins::default();
    let others = joins
        .read(&mut a, |j, o| {
            o.iter().any(|f| f.frame_type() == FrameType::Left) && j.last("4") == Some(end)
        })
        .await?;
    joins.assert_once_in_order();
    assert_eq!(joins.segs["4"], big1, "the re-join replays everything");
    assert!(
        !joins.segs.contains_key("3"),
        "the refused join did not join"
    );
    let errors: Vec<_> = others
        .iter()
        .filter(|f| f.frame_type() == FrameType::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{others:?}");
    assert_eq!(
        (errors[0].reply_to(), error_code(errors[0])),
        (Some(&json!(3)), Some(ErrorCode::RateLimited))
    );

    let mut joins = Joins::default();
    joins.read(&mut b, |j, _| j.last("1") == Some(end)).await?;
    joins.assert_once_in_order();
    assert_eq!(joins.segs["1"], big1);
    mesh.stop().await
}

/// A replay holds one of the gateway's few slots, so its client must read it at
/// `replay_min_bytes_per_sec` while the replay waits: a client that reads one 16 KiB message
/// every 100 ms (~160 KiB/s, against 1 MiB/s here) loses its replay's slot and is closed
/// with 1013; a client that reads at full speed gets the whole backlog under the same setting.
/// The backlog (16 MiB) is more than loopback's socket buffers take without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_a_replay_is_closed_and_frees_its_slot() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.replay_min_bytes_per_sec = 1 << 20;
    config.gateway.limits.outbound_queue = 64;
    let mesh = start_mesh(dir.path(), config).await?;
    let (api, ann, mut c) = owner(&mesh, "big").await?;
    let big: Vec<u64> = c
        .fill("big", &vec!["y".repeat(16 * 1024 - 64); 1000])
        .await?
        .iter()
        .map(|a| a.0)
        .collect();

    let mut slow = Client::login(&mesh.ws_url(), &ann).await?;
    slow.send_with_ref(frame::join_since("big", 0), 1).await?;
    api.metric_reaches(RUNNING, 1.0).await?;
    // Its replay gives the slot up (what is already in the socket buffers still drains,
    // about 10 MiB at its pace).
    let given_up = async {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while api.metric("chatmesh_replays_too_slow_total").await? < 1.0 {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the slow reader kept its replay for a minute"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        ended = slow.read_slowly(std::time::Duration::from_millis(100)) => {
            anyhow::bail!("the slow reader's connection ended first: {ended:?}")
        }
        given_up = given_up => given_up?,
    }
    api.metric_reaches(RUNNING, 0.0).await?;
    assert_eq!(slow.ended().await, Ended::Closed(1013));

    let mut fast = Client::login(&mesh.ws_url(), &ann).await?;
    fast.request(frame::join_since("big", 0)).await?;
    let got: Vec<u64> = fast
        .messages("big", big.len())
        .await?
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(got, big);
    mesh.stop().await
}

/// Sessions from one address share `reply_bytes_per_address` of queued replies: two of its
/// clients asking for big history pages and reading none fill it, and a third session of
/// that address waits for its page until they are gone, while a session from another address
/// is answered at once. Without the share, each of an address's 256 sessions could hold 4 MiB
/// of unread replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_a_bounded_share_of_queued_replies() -> Result<()> {
    const CROWD: &str = "203.0.113.9";
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.reply_bytes_per_address = 6 << 20;
    config.gateway.trusted_proxies = vec![[127, 0, 0, 1].into()];
    let mesh = start_mesh(dir.path(), config).await?;
    let (api, ann, mut writer) = owner(&mesh, "big").await?;
    let body = "y".repeat(15 * 1024);
    for i in 0..40 {
        writer.post("big", &format!("m{i}"), &body).await?;
    }

    let mut hoarders = Vec::new();
    for user in ["cat", "dan"] {
        let token = api.user(user).await?;
        let mut s = Client::login_from(&mesh.ws_url(), &token, CROWD).await?;
        for _ in 0..40 {
            s.send(frame::history("big")).await?;
        }
        hoarders.push(s);
    }
    // Until the gateway stops reading their requests.
    let mut read = api.metric("chatmesh_frames_in_total").await?;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = api.metric("chatmesh_frames_in_total").await?;
        if now == read {
            break;
        }
        read = now;
    }
    let eve = api.user("eve").await?;
    let mut third = Client::login_from(&mesh.ws_url(), &eve, CROWD).await?;
    third.send_with_ref(frame::history("big"), 7).await?;
    let mut other = Client::login_from(&mesh.ws_url(), &ann, "203.0.113.10").await?;
    let page = other.request(frame::history("big")).await?;
    assert_eq!(page.frame_type(), FrameType::History, "{page:?}");
    let is_page = |f: &ServerFrame| f.frame_type() == FrameType::History;
    let early = tokio::time::timeout(std::time::Duration::from_secs(2), third.wait_for(is_page));
    assert!(
        early.await.is_err(),
        "the third session of the address waits while two hold its share"
    );
    drop(hoarders);
    third.wait_for(is_page).await?;
    mesh.stop().await
}

/// All addresses together hold at most `reply_bytes_total` of queued replies: when clients of
/// two addresses ask for big pages and read none, one of the two has its sessions closed with
/// 1013 (the one that has gone the longest without reading: which one that is depends on how
/// much the sockets took, so the order is the unit tests' `reply_share::tests`), what it held
/// leaves, the other keeps its sessions, and a client that reads its
/// pages meanwhile is left alone. Without it, each of an attacker's addresses (IPv6 /64s are
/// cheap) adds its whole `reply_bytes_per_address`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_reads_nothing_is_closed_when_the_gateway_holds_too_much() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.gateway.reply_bytes_per_address = 6 << 20;
    config.gateway.reply_bytes_total = 8 << 20;
    config.gateway.trusted_proxies = vec![[127, 0, 0, 1].into()];
    let mesh = start_mesh(dir.path(), config).await?;
    let (api, _ann, mut writer) = owner(&mesh, "big").await?;
    let body = "y".repeat(15 * 1024);
    for i in 0..40 {
        writer.post("big", &format!("m{i}"), &body).await?;
    }
    // Two sessions of a first address fill its 6 MiB (past what the sockets take): under the
    // gateway's 8, nobody is closed.
    let mut sessions = Vec::new();
    for (user, addr) in [("cat", "203.0.113.9"), ("eve", "203.0.113.9")] {
        let token = api.user(user).await?;
        let mut s = Client::login_from(&mesh.ws_url(), &token, addr).await?;
        hoard(&mut s, 80).await?;
        sessions.push(s);
    }
    api.metric_at_least("chatmesh_reply_bytes_queued", 5.5 * f64::from(1 << 20))
        .await?;
    assert_eq!(api.metric("chatmesh_reply_evictions_total").await?, 0.0);
    // Two sessions of a second address fill theirs: over 8 in all.
    for (user, addr) in [("dan", "203.0.113.20"), ("fay", "203.0.113.20")] {
        let token = api.user(user).await?;
        let mut s = Client::login_from(&mesh.ws_url(), &token, addr).await?;
        hoard(&mut s, 80).await?;
        sessions.push(s);
    }
    api.metric_reaches("chatmesh_reply_evictions_total", 1.0)
        .await?;
    // A client of a third address that reads what it asks for is answered throughout.
    let gus = api.user("gus").await?;
    let mut reader = Client::login_from(&mesh.ws_url(), &gus, "203.0.113.30").await?;
    for _ in 0..10 {
        let page = reader.request(frame::history("big")).await?;
        assert_eq!(page.frame_type(), FrameType::History, "{page:?}");
    }
    // One address's two sessions are closed with 1013; the other's stay open.
    let (a, c) = sessions.split_at_mut(2);
    let wait = std::time::Duration::from_secs(10);
    let first_closed = tokio::select! {
        end = a[0].ended() => (end, true),
        end = c[0].ended() => (end, false),
        () = tokio::time::sleep(wait) => anyhow::bail!("no hoarding session was closed"),
    };
    assert!(
        matches!(first_closed.0, Ended::Closed(1013)),
        "{first_closed:?}"
    );
    let (closed, kept) = if first_closed.1 { (a, c) } else { (c, a) };
    let end = tokio::time::timeout(wait, closed[1].ended()).await;
    assert!(
        matches!(end, Ok(Ended::Closed(1013))),
        "both of its sessions: {end:?}"
    );
    for s in kept {
        let open = tokio::time::timeout(std::time::Duration::from_secs(2), s.ended()).await;
        assert!(open.is_err(), "the other address is left alone: {open:?}");
    }
    assert_eq!(api.metric("chatmesh_reply_evictions_total").await?, 1.0);
    mesh.stop().await
}

/// Asks for `n` history pages of `big` without reading any.
async fn hoard(s: &mut Client, n: usize) -> Result<()> {
    for _ in 0..n {
        s.send(frame::history("big")).await?;
    }
    Ok(())
}
