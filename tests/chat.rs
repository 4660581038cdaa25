//! End-to-end chat over a real mesh: nats-server child, worker with fjall, gateway, and
//! protocol v1 clients over real WebSockets.

mod common;

use anyhow::Result;
use common::*;

/// Two clients exchange 1,000 messages: every one arrives once, in order, with an intact
/// `prev` chain, and the acks carry the same seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_exchange_1000_messages_in_order() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "general", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    let ja = a.request(frame::join("general")).await?;
    assert_eq!(joined(&ja), 0);
    b.join("general").await?;

    for i in 0..1000 {
        let (c, id) = if i % 2 == 0 {
            (&mut a, format!("a{i}"))
        } else {
            (&mut b, format!("b{i}"))
        };
        c.send_with_ref(frame::send("general", &id, &format!("hello {i}")), i)
            .await?;
    }
    let got_a = a.messages("general", 1000).await?;
    let got_b = b.messages("general", 1000).await?;
    assert_chain(&got_a, 0);
    assert_chain(&got_b, 0);
    assert_eq!(got_a, got_b, "both members see the same stream");
    // Each sender's own messages keep their send order.
    let bodies: Vec<u64> = got_a
        .iter()
        .filter(|m| m.from == "ann")
        .map(|m| m.body[6..].parse().unwrap())
        .collect();
    assert!(bodies.windows(2).all(|w| w[0] < w[1]));
    // Every send was acked with the seq its message carries.
    let mut acks = Vec::new();
    while acks.len() < 500 {
        acks.push(acked(
            &a.wait_for(|f| f.frame_type() == FrameType::Ack).await?,
        ));
    }
    for ack in acks {
        let m = got_a
            .iter()
            .find(|m| m.id == ack.id)
            .expect("acked message delivered");
        assert_eq!(m.seq, ack.seq);
        assert_eq!(m.ts, ack.ts);
    }
    mesh.stop().await
}

/// Resending the same id returns the original seq and delivers nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_gets_the_same_seq_and_no_duplicate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "r1", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("r1").await?;
    let first = a.post("r1", "same", "one").await?;
    let again = a.post("r1", "same", "two").await?;
    assert_eq!(again.seq, first.seq);
    assert_eq!(again.ts, first.ts);
    let marker = a.post("r1", "next", "three").await?;
    let msgs = a.messages("r1", 2).await?;
    assert_eq!(msgs[0].body, "one");
    assert_eq!(
        msgs[1].seq, marker.seq,
        "no second copy of the resent message"
    );
    assert_eq!(msgs[1].prev, first.seq);
    mesh.stop().await
}

/// A client that disconnects and rejoins with `since` gets exactly what it missed, then
/// live messages, with no gap or duplicate at the seam, even while others keep sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_since_delivers_exactly_the_missed_messages() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "lobby", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("lobby").await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    b.join("lobby").await?;
    for i in 0..20 {
        a.send(frame::send("lobby", &format!("x{i}"), "before"))
            .await?;
    }
    let seen = b.messages("lobby", 20).await?;
    let held = assert_chain(&seen, 0);
    b.close().await;

    for i in 0..300 {
        a.send(frame::send("lobby", &format!("y{i}"), "missed"))
            .await?;
    }
    // Wait until all 300 are stored (acked), then resume while more are being sent.
    let mut acked = 0;
    while acked < 320 {
        a.wait_for(|f| f.frame_type() == FrameType::Ack).await?;
        acked += 1;
    }
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    b.send_with_ref(frame::join_since("lobby", held), "j")
        .await?;
    for i in 0..100 {
        a.send(frame::send("lobby", &format!("z{i}"), "during"))
            .await?;
    }
    let j = b.wait_for(|f| f.frame_type() == FrameType::Joined).await?;
    assert!(joined(&j) >= held);
    let got = b.messages("lobby", 400).await?;
    assert_chain(&got, held);
    let count = |body: &str| got.iter().filter(|m| m.body == body).count();
    assert_eq!((count("missed"), count("during")), (300, 100));
    // Nothing more arrives: send a marker and check it is the very next message.
    a.send(frame::send("lobby", "end", "end")).await?;
    let next = b.messages("lobby", 1).await?;
    assert_eq!(next[0].body, "end");
    assert_eq!(next[0].prev, got.last().unwrap().seq);
    mesh.stop().await
}

/// After stopping and restarting the whole mesh on the same data dir, history is intact
/// and seqs continue from where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_full_restart_and_seqs_continue() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "keep", "private").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("keep").await?;
    let mut last = 0;
    for i in 0..120 {
        last = a
            .post("keep", &format!("m{i}"), &format!("b{i}"))
            .await?
            .seq;
    }
    mesh.stop().await?;

    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    assert_eq!(a.join("keep").await?, last);
    // Page back through all of history over HTTP.
    let mut all = Vec::new();
    let mut before = String::new();
    loop {
        let (s, v) = api
            .call(
                "GET",
                &format!("/v1/rooms/keep/messages?limit=50{before}"),
                Some(&ann),
                None,
            )
            .await?;
        assert_eq!(s, 200, "{v}");
        let page = http_page(&v);
        before = format!("&before={}", page.messages[0].seq);
        all.splice(0..0, page.messages);
        if !page.more {
            break;
        }
    }
    assert_eq!(all.len(), 120);
    assert_chain(&all, 0);
    assert_eq!(all[119].body, "b119");
    let ack = a.post("keep", "after", "after").await?;
    assert!(ack.seq > last);
    let m = a.messages("keep", 1).await?;
    assert_eq!(m[0].prev, last);
    mesh.stop().await
}

/// Resume across retention: messages the store has trimmed but JetStream still holds are
/// replayed from JetStream (no gap); messages neither holds any more are reported with one
/// `gap {from, to}` before the rest, and the chain after it is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_fills_store_trims_from_jetstream_and_reports_real_gaps() -> Result<()> {
    for (js_per_room, expect_gap) in [(-1i64, false), (5, true)] {
        let dir = tempfile::tempdir()?;
        let mut config = fast_config();
        config.worker.retention.max_messages = 10;
        config.worker.retention.interval_ms = 50;
        config.mesh.stream_max_msgs_per_room = js_per_room;
        let mesh = start_mesh(dir.path(), config).await?;
        let api = Api::new(&mesh);
        let ann = api.user("ann").await?;
        api.room(&ann, "old", "public").await?;
        let mut a = Client::login(&mesh.ws_url(), &ann).await?;
        let mut seqs = Vec::new();
        for i in 0..30 {
            let ack = a.post("old", &format!("m{i}"), &format!("{i}")).await?;
            seqs.push(ack.seq);
        }
        // Wait for retention to trim the store to the last 10.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let h = a.request(frame::history_before("old", None, 100)).await?;
            // Not a page (an error) counts as none, as in any poll.
            let (n, more) = match &h {
                ServerFrame::History { messages, more, .. } => (messages.len(), *more),
                _ => (0, true),
            };
            if n == 10 && !more {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "store never trimmed: {n} left"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut b = Client::login(&mesh.ws_url(), &ann).await?;
        b.request(frame::join_since("old", 0)).await?;
        if expect_gap {
            let gap = b.wait_for(|f| f.frame_type() == FrameType::Gap).await?;
            let ServerFrame::Gap { from, to, .. } = gap else {
                unreachable!()
            };
            assert_eq!((from, to), (1, seqs[19]), "{gap:?}");
            let rest = b.messages("old", 10).await?;
            assert_eq!(rest[0].seq, seqs[20]);
            assert_chain(&rest, seqs[19]);
        } else {
            let all = b.messages("old", 30).await?;
            assert_chain(&all, 0);
            assert!(
                !b.backlog.iter().any(|f| f.frame_type() == FrameType::Gap),
                "no gap when JetStream has them"
            );
        }
        mesh.stop().await?;
    }
    Ok(())
}

/// The same client id in two rooms is two messages (the dedupe key includes the room): each
/// is acked with its own room's seq and stored, none is silently dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_in_two_rooms_is_two_messages() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "one", "public").await?;
    api.room(&ann, "two", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("one").await?;
    a.join("two").await?;
    let first = a.post("one", "same", "in one").await?;
    let second = a.post("two", "same", "in two").await?;
    assert_ne!(first.seq, second.seq);
    assert_eq!(a.messages("one", 1).await?[0].body, "in one");
    let two = a.messages("two", 1).await?;
    assert_eq!((two[0].body.as_str(), two[0].seq), ("in two", second.seq));
    mesh.stop().await
}

/// A resend after the stream's duplicate window (1 s here): JetStream no longer knows its id,
/// so without `resend_after` it is a new message (the window's documented bound); with
/// `resend_after` (the room's seq when it was first written) the gateway finds the stored copy
/// and acks its seq, nothing is stored or delivered twice, and another sender's message with
/// the same id is not taken for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_resend_with_resend_after_is_stored_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.mesh.duplicate_window_secs = 1;
    config.gateway.resend_check_burst = 3;
    config.gateway.resend_checks_per_minute = 1;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let (ann, bob) = (api.user("ann").await?, api.user("bob").await?);
    api.room(&ann, "lobby", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let mut b = Client::login(&mesh.ws_url(), &bob).await?;
    a.join("lobby").await?;
    b.join("lobby").await?;
    let before = a.post("lobby", "x0", "before").await?;
    let first = a.post("lobby", "m1", "hello").await?;
    let bobs = b.post("lobby", "m1", "bob's").await?;
    let plain = a.post("lobby", "m2", "later").await?;
    tokio::time::sleep(std::time::Duration::from_millis(3_000)).await;

    // Past the window a plain resend is a new message: the case `resend_after` is for.
    let again = acked(&a.request(frame::send("lobby", "m2", "later")).await?);
    assert_ne!(again.seq, plain.seq, "the duplicate window is over");
    let resend = |id: &str, body: &str, after: u64| {
        serde_json::json!({"type": "send", "room": "lobby", "id": id, "body": body,
                           "resend_after": after})
    };
    let found = acked(&a.request_json(resend("m1", "hello", before.seq)).await?);
    assert_eq!((found.seq, found.ts), (first.seq, first.ts));
    let found = acked(&a.request_json(resend("m1", "hello", 0)).await?);
    assert_eq!(found.seq, first.seq, "0: from the room's start");
    let found = acked(&b.request_json(resend("m1", "bob's", 0)).await?);
    assert_eq!(found.seq, bobs.seq, "ids are the sender's own");
    // Not stored after the seq the sender names: a message of its own.
    let new = acked(&a.request_json(resend("m3", "new", first.seq)).await?);
    assert!(new.seq > again.seq);
    // Each check reads the store: a user has a budget of them (3 at once here).
    let f = a.request_json(resend("m4", "over", 0)).await?;
    assert_eq!(error_code(&f), Some(ErrorCode::RateLimited), "{f:?}");

    let h = page(&b.request(frame::history("lobby")).await?).messages;
    let bodies: Vec<&str> = h.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["before", "hello", "bob's", "later", "later", "new"]
    );
    // Bob got each live once: the found resends were not published again.
    let live = b.messages("lobby", h.len()).await?;
    let seqs = |ms: &[Message]| ms.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&live), seqs(&h));
    let more = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        b.messages("lobby", 1),
    );
    assert!(more.await.is_err(), "nothing more arrives");
    mesh.stop().await
}

/// A room whose messages all aged out of the stream (`stream_max_age_secs`) still chains:
/// the next message's `prev` is the room's last stored message, whether the room's fan-out
/// ran all along on the gateway or starts again after the age-out (before: `prev` 0, "the
/// room's first message", while history said otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_after_the_stream_aged_out_chains_to_the_last_stored() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = fast_config();
    config.mesh.stream_max_age_secs = 2;
    config.mesh.duplicate_window_secs = 1;
    let mesh = start_mesh(dir.path(), config).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "open", "public").await?;
    api.room(&ann, "restarted", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    a.join("open").await?;
    let open = a.post("open", "o1", "before").await?.seq;
    a.messages("open", 1).await?;
    let mut b = Client::login(&mesh.ws_url(), &ann).await?;
    b.join("restarted").await?;
    let restarted = b.post("restarted", "r1", "before").await?.seq;
    b.close().await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;

    a.post("open", "o2", "after").await?;
    let live = a.messages("open", 1).await?;
    assert_eq!(live[0].prev, open, "the room's fan-out ran all along");

    // Someone who has not joined it yet: the gateway has no cached answer from before r1.
    let cat = api.user("cat").await?;
    let mut c = Client::login(&mesh.ws_url(), &cat).await?;
    assert_eq!(c.join("restarted").await?, restarted);
    c.post("restarted", "r2", "after").await?;
    let live = c.messages("restarted", 1).await?;
    assert_eq!(live[0].prev, restarted, "the room's fan-out started again");
    Ok(())
}

/// A `join` whose `since` lies beyond the room's last message (a client's stale or corrupt
/// cursor) still delivers what is sent after it: `joined` says the room's real `last_seq`,
/// and live messages above it arrive (before: every live message up to `since` was dropped
/// without a word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_beyond_the_room_still_gets_live_messages() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mesh = start_mesh(dir.path(), fast_config()).await?;
    let api = Api::new(&mesh);
    let ann = api.user("ann").await?;
    api.room(&ann, "ahead", "public").await?;
    let mut a = Client::login(&mesh.ws_url(), &ann).await?;
    let first = a.post("ahead", "m1", "one").await?.seq;
    let mut b = Client::login(&mesh.ws_url(), &ann).await?;
    let f = b.request(frame::join_since("ahead", 1_000_000)).await?;
    assert_eq!(joined(&f), first);
    let next = a.post("ahead", "m2", "two").await?.seq;
    let live = b.messages("ahead", 1).await?;
    assert_eq!((live[0].seq, live[0].prev), (next, first));
    Ok(())
}
