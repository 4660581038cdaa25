//! The SDK against a real embedded mesh (nats-server child, worker, fjall store, gateway):
//! requests and events, history paging, and exactly-once delivery and storage across
//! connections cut by a TCP proxy in the middle.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use chatmesh::{Config, Mesh, MeshOptions};
use chatmesh_client::{Client, ErrorCode, Event, Events, Http, RoomKind};
use futures::TryStreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

async fn mesh(dir: &std::path::Path) -> Mesh {
    mesh_with(dir, |_| {}).await
}

async fn mesh_with(dir: &std::path::Path, edit: impl FnOnce(&mut Config)) -> Mesh {
    let mut config = Config::for_tests();
    edit(&mut config);
    Mesh::start(MeshOptions::local(dir.join("mesh"), config))
        .await
        .expect("mesh starts")
}

async fn user(base: &str, name: &str) -> Result<Client> {
    Http::new(base)?.register(name, "password-1").await?;
    let client = Client::builder(base)
        .login(name, "password-1")
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(20))
        .connect()
        .await?;
    Ok(client)
}

/// The next event that `pick` takes, within 10 s.
async fn next<T>(events: &mut Events, mut pick: impl FnMut(Event) -> Option<T>) -> Result<T> {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if let Some(t) = pick(event) {
                return Ok(t);
            }
        }
        anyhow::bail!("events ended")
    })
    .await
    .context("no such event within 10 s")?
}

#[tokio::test]
async fn requests_events_and_history() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    let mut ann = user(&base, "ann").await?;
    let mut bob = user(&base, "bob").await?;
    assert_eq!(ann.user(), "ann");
    ann.http().create_room("general", RoomKind::Public).await?;
    // One region: "here" is the room as named; a region the deployment lacks is refused.
    let http = ann.http();
    assert_eq!(
        http.create_room_in("nearby", RoomKind::Public, "here")
            .await?,
        "nearby"
    );
    assert!(ann
        .http()
        .create_room_in("faraway", RoomKind::Public, "ap")
        .await
        .is_err());
    let (mut ann_events, mut bob_events) = (ann.events().unwrap(), bob.events().unwrap());
    assert!(ann.events().is_none(), "events are taken once");

    assert_eq!(bob.join("general").await?, 0);
    ann.join("general").await?;
    // bob sees himself come online, then ann.
    next(&mut bob_events, |e| match e {
        Event::Presence { joined, .. } if joined.iter().any(|u| u == "ann") => Some(()),
        _ => None,
    })
    .await?;
    assert_eq!(bob.presence("general").await?, ["ann", "bob"]);

    let ack = ann.send("general", "hello \"bob\"").await?;
    let got = next(&mut bob_events, |e| match e {
        Event::Message(m) => Some(m),
        _ => None,
    })
    .await?;
    assert_eq!(
        (got.seq, got.id.as_str(), got.from.as_str()),
        (ack.seq, ack.id.as_str(), "ann")
    );
    assert_eq!(got.body, "hello \"bob\"");
    let again = ann
        .send_with_id("general", &ack.id, "hello \"bob\"")
        .await?;
    assert_eq!(
        (again.seq, again.ts),
        (ack.seq, ack.ts),
        "a resend is stored once"
    );

    ann.typing("general").await?;
    next(&mut bob_events, |e| {
        matches!(e, Event::Typing { ref user, .. } if user == "ann").then_some(())
    })
    .await?;
    bob.read("general", ack.seq).await?;
    let seq = next(&mut ann_events, |e| match e {
        Event::Receipt { user, seq, .. } if user == "bob" => Some(seq),
        _ => None,
    })
    .await?;
    assert_eq!(seq, ack.seq);

    // 25 more, then history from the newest page back, 10 at a time.
    let mut last = 0;
    for i in 0..25 {
        last = ann.send("general", &format!("m{i}")).await?.seq;
    }
    next(&mut bob_events, |e| {
        matches!(e, Event::Message(m) if m.seq == last).then_some(())
    })
    .await?;
    let pages: Vec<_> = bob.history_pages("general", 10).try_collect().await?;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 6]);
    let seqs: Vec<u64> = pages.iter().rev().flatten().map(|m| m.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs.len() == 26);

    // Asked for, a replay comes again, though it was delivered before.
    bob.join_since("general", ack.seq).await?;
    let replayed = next(&mut bob_events, |e| match e {
        Event::Message(m) => Some(m.seq),
        _ => None,
    })
    .await?;
    assert!(replayed > ack.seq && replayed < last, "{replayed}");
    next(&mut bob_events, |e| {
        matches!(e, Event::Message(m) if m.seq == last).then_some(())
    })
    .await?;

    let err = bob.join("no-such-room").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    bob.leave("general").await?;
    ann.send("general", "after bob left").await?;
    ann.ping().await?;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), async {
            loop {
                if let Some(Event::Message(m)) = bob_events.recv().await {
                    return m;
                }
            }
        })
        .await
        .is_err(),
        "no messages after leave"
    );
    ann.close().await;
    bob.close().await;
    Ok(())
}

#[tokio::test]
async fn a_refused_token_is_an_unauthorized_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let err = Client::builder(mesh.url())
        .token("not.a.token")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    let err = Client::builder(mesh.url())
        .login("nobody", "password-1")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    Ok(())
}

/// A TCP proxy whose connections can be cut, as a network failure would.
struct Proxy {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                held.lock().unwrap().push(link);
            }
        });
        Ok(Self {
            addr,
            links,
            accept,
        })
    }

    /// Drops every connection through the proxy (both sockets close without a close frame).
    fn cut(&self) -> usize {
        let links = std::mem::take(&mut *self.links.lock().unwrap());
        links.iter().for_each(JoinHandle::abort);
        links.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Connections cut again and again while both sides send: every message reaches the
/// receiver once and in order, and every send is acked and stored once.
#[tokio::test]
async fn cut_connections_lose_and_duplicate_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    let gateway: SocketAddr = base.trim_start_matches("http://").parse()?;
    let proxy = Proxy::start(gateway).await?;
    let via_proxy = format!("http://{}", proxy.addr);

    let ann = user(&base, "ann").await?;
    ann.http().create_room("general", RoomKind::Public).await?;
    ann.join("general").await?;
    Http::new(&base)?.register("bob", "password-1").await?;
    let mut bob = Client::builder(&via_proxy)
        .login("bob", "password-1")
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    let mut events = bob.events().unwrap();
    bob.join("general").await?;
    let bob = Arc::new(bob);

    const EACH: usize = 60;
    let ann_sends = tokio::spawn(async move {
        for i in 0..EACH {
            ann.send("general", &format!("ann {i}")).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(ann)
    });
    let sender = bob.clone();
    let bob_sends = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..EACH {
            acked.push(sender.send("general", &format!("bob {i}")).await?.seq);
        }
        anyhow::Ok(acked)
    });
    let mut cuts = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        cuts += proxy.cut();
    }
    let ann = ann_sends.await??;
    let bob_acked = bob_sends.await??;
    assert!(cuts >= 3, "only {cuts} connections were cut");

    // Everything arrives once, in order: 2 × EACH messages.
    let mut seqs = Vec::new();
    let mut reconnects = 0;
    while seqs.len() < 2 * EACH {
        match next(&mut events, Some).await? {
            Event::Message(m) => seqs.push(m.seq),
            Event::Reconnected => reconnects += 1,
            _ => {}
        }
    }
    assert!(reconnects >= 1, "the client reconnected");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates: {seqs:?}"
    );
    let distinct: BTreeSet<u64> = bob_acked.iter().copied().collect();
    assert_eq!(distinct.len(), EACH, "each of bob's sends has its own seq");
    assert!(
        distinct.iter().all(|s| seqs.contains(s)),
        "bob sees his own sends too"
    );

    // And the store holds each once.
    let stored: Vec<_> = ann.history_pages("general", 100).try_collect().await?;
    let bodies: Vec<String> = stored.into_iter().flatten().map(|m| m.body).collect();
    let unique: BTreeSet<&String> = bodies.iter().collect();
    assert_eq!((bodies.len(), unique.len()), (2 * EACH, 2 * EACH));
    Ok(())
}

/// A resume of more rooms than the session may replay at once: re-joins refused
/// `rate_limited` are tried again, and every room's backlog arrives (no room is lost).
#[tokio::test]
async fn a_resume_beyond_the_replay_limit_rejoins_every_room() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh_with(dir.path(), |c| c.gateway.max_replays_per_session = 1).await;
    let base = mesh.url();
    let gateway: SocketAddr = base.trim_start_matches("http://").parse()?;
    let proxy = Proxy::start(gateway).await?;
    let ann = user(&base, "ann").await?;
    Http::new(&base)?.register("bob", "password-1").await?;
    let mut bob = Client::builder(format!("http://{}", proxy.addr))
        .login("bob", "password-1")
        .reconnect_backoff(Duration::from_millis(200), Duration::from_millis(400))
        .connect()
        .await?;
    let mut events = bob.events().unwrap();
    const ROOMS: usize = 6;
    const EACH: usize = 150;
    for r in 0..ROOMS {
        let room = format!("room-{r}");
        ann.http().create_room(&room, RoomKind::Public).await?;
        bob.join(&room).await?;
    }
    assert!(proxy.cut() >= 1);
    // A backlog in every room while bob is away (he reconnects after 100-400 ms).
    for i in 0..EACH {
        for r in 0..ROOMS {
            ann.send(&format!("room-{r}"), &format!("m{i}")).await?;
        }
    }
    let mut got = vec![0usize; ROOMS];
    let mut removed = Vec::new();
    while got.iter().sum::<usize>() < ROOMS * EACH && removed.is_empty() {
        match next(&mut events, Some).await? {
            Event::Message(m) => got[m.room["room-".len()..].parse::<usize>()?] += 1,
            Event::Removed { room } => removed.push(room),
            _ => {}
        }
    }
    assert!(removed.is_empty(), "rooms given up: {removed:?}");
    assert_eq!(got, vec![EACH; ROOMS]);
    Ok(())
}

/// At the gateway's default flood guard (100 frames a second, burst 200; 50 frames over it
/// close the session with 4008) and send rate (20 a second, burst 50), a client in 300 rooms
/// re-joins them all after a reconnect, with the sends written while it was away, without
/// being closed again: the driver paces what it writes. (Before, every re-join went out at
/// once and the session was closed with 4008 after each reconnect.)
#[tokio::test]
async fn a_client_in_many_rooms_resumes_within_the_flood_guard() -> Result<()> {
    const ROOMS: usize = 300;
    const SENDS: usize = 60;
    let dir = tempfile::tempdir()?;
    let defaults = Config::default();
    let mesh = mesh_with(dir.path(), |c| {
        c.gateway.frames_per_second = defaults.gateway.frames_per_second;
        c.gateway.limits.sends_per_second = defaults.gateway.limits.sends_per_second;
        c.gateway.limits.send_burst = defaults.gateway.limits.send_burst;
        c.worker.max_rooms_per_user = 1_000;
    })
    .await;
    let base = mesh.url();
    let gateway: SocketAddr = base.trim_start_matches("http://").parse()?;
    let proxy = Proxy::start(gateway).await?;
    let ann = user(&base, "ann").await?;
    Http::new(&base)?.register("bob", "password-1").await?;
    let mut bob = Client::builder(format!("http://{}", proxy.addr))
        .login("bob", "password-1")
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(60))
        .connect()
        .await?;
    // The application takes its events as they come (the driver waits on a full queue).
    let mut events = bob.events().unwrap();
    let seen = Arc::new(Mutex::new((BTreeSet::new(), Vec::new(), Vec::new())));
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let mut seen = seen.lock().unwrap();
                match event {
                    Event::Message(m) if m.from == "ann" => {
                        seen.0.insert(m.room);
                    }
                    Event::Removed { room } => seen.1.push(room),
                    Event::Disconnected { code, .. } => seen.2.push(code),
                    _ => {}
                }
            }
        })
    };
    let rooms: Vec<String> = (0..ROOMS).map(|r| format!("r{r}")).collect();
    for room in &rooms {
        ann.http().create_room(room, RoomKind::Public).await?;
    }
    futures::future::try_join_all(rooms.iter().map(|room| bob.join(room))).await?;
    assert!(proxy.cut() >= 1);
    let bodies: Vec<String> = (0..SENDS).map(|i| format!("while away {i}")).collect();
    let sends = futures::future::try_join_all(
        bodies
            .iter()
            .enumerate()
            .map(|(i, body)| bob.send(&rooms[i % ROOMS], body)),
    );
    let hellos = async {
        for room in &rooms {
            ann.send(room, "hello").await?;
        }
        anyhow::Ok(())
    };
    let (acks, hellos) = tokio::join!(sends, hellos);
    hellos?;
    assert!(acks?.iter().all(|a| a.seq > 0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().0.len() < ROOMS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.abort();
    let (heard, removed, closes) = std::mem::take(&mut *seen.lock().unwrap());
    assert!(removed.is_empty(), "rooms given up: {removed:?}");
    assert_eq!(
        heard.len(),
        ROOMS,
        "a message of every room after the resume"
    );
    assert!(closes.len() <= 1, "closed again after the cut: {closes:?}");
    Ok(())
}

/// Membership changes reach every session of the user at once, joined to the room or not:
/// added to a private room, a new DM, removed.
#[tokio::test]
async fn membership_changes_arrive_live() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    let ann = user(&base, "ann").await?;
    let mut bob = user(&base, "bob").await?;
    let cy = user(&base, "cy").await?;
    let mut events = bob.events().unwrap();
    let membership = |e: Event| match e {
        Event::Membership { room, role } => Some((room, role)),
        _ => None,
    };
    ann.http().create_room("secret", RoomKind::Private).await?;
    ann.http().add_member("secret", "bob", false).await?;
    let got = next(&mut events, membership).await?;
    assert_eq!(
        got,
        ("secret".to_owned(), Some(chatmesh_client::Role::Member))
    );
    let dm = cy.http().dm("bob").await?;
    let got = next(&mut events, membership).await?;
    assert_eq!(got, (dm, Some(chatmesh_client::Role::Member)));
    ann.http().remove_member("secret", "bob").await?;
    let got = next(&mut events, membership).await?;
    assert_eq!(got, ("secret".to_owned(), None));
    Ok(())
}

/// The edit and delete helpers: an edit reaches the other member as a message with
/// `edit_of`, history shows the new body, `Http::edits` lists both versions; another user's
/// edit is `forbidden`; a delete leaves a tombstone.
#[tokio::test]
async fn edit_delete_and_search_helpers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    let ann = user(&base, "ann").await?;
    let mut bob = user(&base, "bob").await?;
    ann.http().create_room("general", RoomKind::Public).await?;
    let mut bob_events = bob.events().unwrap();
    bob.join("general").await?;
    ann.join("general").await?;

    let first = ann.send("general", "helo").await?;
    let edit = ann.edit("general", first.seq, "hello").await?;
    let got = next(&mut bob_events, |e| match e {
        Event::Message(m) if m.seq == edit.seq => Some(m),
        _ => None,
    })
    .await?;
    assert_eq!((got.edit_of, got.body.as_str()), (Some(first.seq), "hello"));
    let err = bob.edit("general", first.seq, "mine").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));

    let versions = bob.http().edits("general", first.seq).await?.versions;
    let bodies: Vec<&str> = versions.iter().map(|v| v.body.as_str()).collect();
    assert_eq!(bodies, ["helo", "hello"]);

    let del = ann.delete("general", first.seq).await?;
    assert!(del.seq > edit.seq);
    let page = bob.history("general", None, 10).await?;
    let m = page.messages.iter().find(|m| m.seq == first.seq).unwrap();
    assert!(m.deleted && m.body.is_empty(), "{m:?}");
    let err = bob.http().edits("general", first.seq).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));

    // Search: the index commits about once a second.
    let kept = ann.send("general", "quarterly llama report").await?;
    let mut query = chatmesh_client::SearchQuery::new("llama");
    query.room = Some("general".into());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let found = loop {
        let r = bob.http().search(&query).await?;
        if !r.hits.is_empty() || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        found.hits.iter().map(|h| h.seq).collect::<Vec<_>>(),
        [kept.seq]
    );
    query.q = String::new();
    let err = bob.http().search(&query).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    ann.close().await;
    bob.close().await;
    Ok(())
}

/// The reaction, reply and thread helpers: a reaction reaches the other member with
/// `react_to`, history shows the aggregate and a removal takes it off; a second identical
/// reaction is `bad_request`; a reply to a reply joins the root's thread, which
/// `Http::thread` pages with the reader's unread count until `Http::read_thread`.
#[tokio::test]
async fn reaction_reply_and_thread_helpers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    let ann = user(&base, "ann").await?;
    let mut bob = user(&base, "bob").await?;
    ann.http().create_room("general", RoomKind::Public).await?;
    let mut bob_events = bob.events().unwrap();
    bob.join("general").await?;
    ann.join("general").await?;

    let root = ann.send("general", "lunch?").await?;
    let up = ann.react("general", root.seq, "👍").await?;
    let got = next(&mut bob_events, |e| match e {
        Event::Message(m) if m.seq == up.seq => Some(m),
        _ => None,
    })
    .await?;
    assert_eq!((got.react_to, got.body.as_str()), (Some(root.seq), "👍"));
    let err = ann.react("general", root.seq, "👍").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    bob.react("general", root.seq, "👍").await?;
    let page = bob.history("general", None, 10).await?;
    let m = page.messages.iter().find(|m| m.seq == root.seq).unwrap();
    assert_eq!(m.reactions.len(), 1);
    assert_eq!((m.reactions[0].count, m.reactions[0].users.len()), (2, 2));
    ann.unreact("general", root.seq, "👍").await?;
    let err = ann.unreact("general", root.seq, "👍").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));

    let r1 = bob.reply("general", root.seq, "yes").await?;
    let r2 = ann.reply("general", r1.seq, "12:30?").await?;
    let got = next(&mut bob_events, |e| match e {
        Event::Message(m) if m.seq == r2.seq => Some(m),
        _ => None,
    })
    .await?;
    assert_eq!(
        (got.reply_to, got.thread_root),
        (Some(r1.seq), Some(root.seq))
    );
    let t = bob.http().thread("general", root.seq, None, 1).await?;
    assert_eq!(
        t.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [r1.seq]
    );
    assert!(t.more);
    assert_eq!(t.unread, 1, "ann's reply; bob's own is read");
    bob.http().read_thread("general", root.seq, r2.seq).await?;
    let t = bob
        .http()
        .thread("general", root.seq, Some(r1.seq), 10)
        .await?;
    assert_eq!(
        t.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [r2.seq]
    );
    assert_eq!((t.unread, t.more), (0, false));
    let summary = t.root.and_then(|r| r.thread).expect("the root's summary");
    assert_eq!((summary.count, summary.last_seq), (2, r2.seq));
    let err = bob
        .reply("general", up.seq, "to a reaction")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    ann.close().await;
    bob.close().await;
    Ok(())
}

/// A client whose first gateway cannot be reached connects through its fallback (another
/// region's gateway, docs/REGIONS.md), and its HTTP calls go there too.
#[tokio::test]
async fn an_unreachable_gateway_falls_back_to_the_next() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh(dir.path()).await;
    let base = mesh.url();
    Http::new(&base)?.register("fay", "password-1").await?;
    // Port 1 on loopback: nothing listens there.
    let client = Client::builder("http://127.0.0.1:1")
        .fallback(&base)
        .login("fay", "password-1")
        .connect()
        .await?;
    assert_eq!(client.user(), "fay");
    client
        .http()
        .create_room("fallback", RoomKind::Public)
        .await?;
    client.join("fallback").await?;
    let ack = client.send("fallback", "through the fallback").await?;
    assert!(ack.seq > 0);
    // Without a fallback the same first gateway is an error, not a hang.
    let refused = Client::builder("http://127.0.0.1:1")
        .login("fay", "password-1")
        .connect()
        .await;
    assert!(refused.is_err());
    client.close().await;
    Ok(())
}

/// Over the server's per-user API rate (here 2 calls at once, then one a second), calls wait
/// out the 429's `Retry-After` and go through; with no wait allowed the 429 is the error.
#[tokio::test]
async fn calls_wait_out_the_per_user_api_rate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = mesh_with(dir.path(), |c| {
        c.gateway.api_user_burst = 2;
        c.gateway.api_per_user_per_minute = 60;
    })
    .await;
    let http = Http::new(&mesh.url())?;
    http.register("eager", "password-1").await?;
    let login = http.login("eager", "password-1").await?;
    let http = http.with_token(login.token);
    for _ in 0..4 {
        http.rooms().await?;
    }
    let err = http
        .with_rate_limit_wait(Duration::ZERO)
        .rooms()
        .await
        .expect_err("over the rate with no wait");
    assert_eq!(err.code(), Some(ErrorCode::RateLimited), "{err}");
    Ok(())
}
