//! The room fan-out against a real nats-server: retained reads by batch direct get, and the
//! gap fill that repairs what core NATS drops between JetStream and a gateway.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use chatmesh_gateway::fanout::{Fanout, OnBan, RoomEnv};
use chatmesh_gateway::jsread::JsReader;
use chatmesh_gateway::link::{Out, SessionLink};
use chatmesh_protocol::subjects::{in_subject, live_subject, STREAM};
use tokio_util::sync::CancellationToken;

const P: u32 = 4;

async fn stream_without_republish(js: &jetstream::Context) -> Result<()> {
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["chat.in.>".into()],
        allow_direct: true,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// A nats-server with the stream (no republish) and a gateway's room fan-out on it, its
/// rooms refreshed every third of `presence_ttl`.
async fn fanout(
    presence_ttl: Duration,
) -> Result<(
    natsd::NatsServer,
    async_nats::Client,
    jetstream::Context,
    Fanout,
)> {
    fanout_with(presence_ttl, OnBan::default()).await
}

/// [`fanout`], telling `on_ban` of the bans its rooms reach.
async fn fanout_with(
    presence_ttl: Duration,
    on_ban: OnBan,
) -> Result<(
    natsd::NatsServer,
    async_nats::Client,
    jetstream::Context,
    Fanout,
)> {
    let server = natsd::NatsServer::start_temp().await?;
    let nats = server.connect().await?;
    let js = jetstream::new(nats.clone());
    stream_without_republish(&js).await?;
    let reader = JsReader::new(nats.clone(), &js, Duration::from_secs(5)).await?;
    let fanout = Fanout::new(RoomEnv {
        nats: nats.clone(),
        js: js.clone(),
        reader,
        partitions: P,
        gateway: Arc::from("gw-test"),
        presence_ttl,
        timeout: Duration::from_secs(5),
        // No access re-check here: the rooms never hold their messages for one.
        rechecked: tokio::sync::watch::channel(u64::MAX).1,
        recheck_hold: Duration::ZERO,
        on_ban,
    });
    Ok((server, nats, js, fanout))
}

async fn publish(js: &jetstream::Context, room: &str, body: &str) -> Result<u64> {
    let payload = serde_json::json!({"id": body, "from": "ann", "ts": 1, "body": body});
    let ack = js
        .publish(in_subject(P, room), payload.to_string().into())
        .await?
        .await?;
    Ok(ack.sequence)
}

/// A batch direct get returns only the asked room's retained messages, in order, from the
/// asked seq, bounded by the batch size.
#[tokio::test]
async fn batch_reads_one_rooms_messages_in_order() -> Result<()> {
    let server = natsd::NatsServer::start_temp().await?;
    let nats = server.connect().await?;
    let js = jetstream::new(nats.clone());
    stream_without_republish(&js).await?;
    let mut mine = Vec::new();
    for i in 0..30 {
        mine.push(publish(&js, "alpha", &format!("a{i}")).await?);
        publish(&js, "beta", &format!("b{i}")).await?;
    }
    let reader = JsReader::new(nats, &js, Duration::from_secs(5)).await?;
    let subject = in_subject(P, "alpha");
    let all = reader.batch(&subject, 1, 100).await?;
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), mine);
    let page = reader.batch(&subject, mine[10], 5).await?;
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), mine[10..15]);
    assert!(reader.batch(&subject, mine[29] + 1, 10).await?.is_empty());
    assert_eq!(reader.last_seq(&subject).await?, mine[29]);
    assert_eq!(reader.last_seq(&in_subject(P, "gamma")).await?, 0);
    Ok(())
}

/// When a live message arrives whose `prev` the gateway never saw (core NATS dropped the
/// ones between), the room reads them from JetStream first: members get the whole chain.
#[tokio::test]
async fn a_dropped_live_message_is_filled_from_jetstream() -> Result<()> {
    let (_server, nats, js, fanout) = fanout(Duration::from_secs(30)).await?;

    let link = Arc::new(SessionLink::new(1, 64, CancellationToken::new()));
    let joined = |last: u64| bytes::Bytes::from(format!("joined {last}"));
    let (last, _) = fanout.join("room1", &link, 1, 0, None, &joined).await?;
    assert_eq!(last, 0);

    // Six messages are stored, but (no republish here) none reaches the gateway live ...
    let mut seqs = Vec::new();
    for i in 0..6 {
        seqs.push(publish(&js, "room1", &format!("m{i}")).await?);
    }
    // ... until the live copy of the sixth arrives, naming the fifth as its prev.
    let stored = js.get_stream(STREAM).await?.direct_get(seqs[5]).await?;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Sequence", seqs[5].to_string().as_str());
    headers.insert("Nats-Last-Sequence", seqs[4].to_string().as_str());
    nats.publish_with_headers(live_subject(P, "room1"), headers, stored.payload)
        .await?;
    nats.flush().await?;

    let mut got = Vec::new();
    while got.len() < 6 {
        let out = tokio::time::timeout(Duration::from_secs(10), link.recv())
            .await
            .context("nothing delivered")?;
        if let Out::Live { seq, frame, .. } = out {
            let v: serde_json::Value = serde_json::from_slice(&frame)?;
            assert_eq!(v["seq"], seq);
            got.push((seq, v["prev"].as_u64().unwrap_or(u64::MAX)));
        }
    }
    let mut prev = 0;
    for (i, (seq, p)) in got.iter().enumerate() {
        assert_eq!(*seq, seqs[i]);
        assert_eq!(*p, prev, "prev chain intact at {seq}");
        prev = *seq;
    }
    Ok(())
}

/// Messages stored while the bus was reconnecting never come live, and in a room that then
/// goes quiet no later message reveals the gap: after a reconnect, each room reads the
/// stream's last seq for it (at its next refresh tick) and delivers what it missed.
#[tokio::test]
async fn what_was_stored_during_a_reconnect_reaches_a_quiet_room() -> Result<()> {
    // A refresh tick every second.
    let (_server, nats, js, fanout) = fanout(Duration::from_secs(3)).await?;
    let link = Arc::new(SessionLink::new(1, 64, CancellationToken::new()));
    let joined = |last: u64| bytes::Bytes::from(format!("joined {last}"));
    fanout.join("room1", &link, 1, 0, None, &joined).await?;

    // Stored, never live (no republish here: as if published while the gateway's
    // connection was down), and nothing after them.
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(publish(&js, "room1", &format!("m{i}")).await?);
    }
    nats.force_reconnect().await?;

    let mut got = Vec::new();
    while got.len() < 3 {
        let out = tokio::time::timeout(Duration::from_secs(10), link.recv())
            .await
            .context("the messages stored during the reconnect never arrived")?;
        if let Out::Live { seq, .. } = out {
            got.push(seq);
        }
    }
    assert_eq!(got, seqs);
    Ok(())
}

/// In a NATS cluster a room's new subscription reaches the stream's leader a little after
/// its own node confirmed it, and the starting seq may come from a follower a little behind:
/// a message stored in that window is neither live here nor counted before the join, and in a
/// room that then goes quiet no later message reveals it. So each room reads the stream's
/// last seq for it again shortly after it starts and delivers what it missed. (Here the
/// message is stored after the join with no republish at all, and nothing is lost on the bus:
/// only that re-read can deliver it.)
#[tokio::test]
async fn a_message_stored_as_a_room_starts_reaches_it_without_a_later_one() -> Result<()> {
    // Refresh ticks every 20 s: none falls within the test.
    let (_server, _nats, js, fanout) = fanout(Duration::from_secs(60)).await?;
    let link = Arc::new(SessionLink::new(1, 64, CancellationToken::new()));
    let joined = |last: u64| bytes::Bytes::from(format!("joined {last}"));
    let (last, _) = fanout.join("room1", &link, 1, 0, None, &joined).await?;
    assert_eq!(last, 0);
    let seq = publish(&js, "room1", "m0").await?;

    let got = loop {
        let out = tokio::time::timeout(Duration::from_secs(10), link.recv())
            .await
            .context("a message stored as the room started never arrived")?;
        if let Out::Live { seq, frame, .. } = out {
            let v: serde_json::Value = serde_json::from_slice(&frame)?;
            break (seq, v["prev"].as_u64());
        }
    };
    assert_eq!(got, (seq, Some(0)));
    Ok(())
}

/// Stores `payload` and hands the gateway its live copy (there is no republish here).
async fn store_and_go_live(
    nats: &async_nats::Client,
    js: &jetstream::Context,
    room: &str,
    payload: &chatmesh_protocol::message::Payload,
    prev: u64,
) -> Result<u64> {
    let bytes = bytes::Bytes::from(serde_json::to_vec(payload)?);
    let seq = js
        .publish(in_subject(P, room), bytes.clone())
        .await?
        .await?
        .sequence;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Sequence", seq.to_string().as_str());
    headers.insert("Nats-Last-Sequence", prev.to_string().as_str());
    nats.publish_with_headers(live_subject(P, room), headers, bytes)
        .await?;
    nats.flush().await?;
    Ok(seq)
}

/// Everything queued for `link` until it stays quiet for a moment.
async fn drain(link: &SessionLink) -> Vec<Out> {
    let mut out = Vec::new();
    while let Ok(o) = tokio::time::timeout(Duration::from_millis(300), link.recv()).await {
        out.push(o);
    }
    out
}

/// A ban takes effect in the room's order on every gateway, whenever the membership event
/// arrives (none does here): the banned user's sessions leave the room when the fan-out
/// reaches the ban's event message, and neither it nor what follows reaches them; the
/// others get all of it. The gateway is told first (it drops the user's cached access), and
/// a room the ban leaves empty closes. A user's send whose id looks like an event's bans no
/// one.
#[tokio::test]
async fn a_ban_evicts_the_banned_in_the_rooms_order() -> Result<()> {
    use chatmesh_protocol::message::Payload;
    use chatmesh_protocol::moderation::RoomEvent;

    let told = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let on_ban = {
        let told = told.clone();
        OnBan::new(move |room, user| told.lock().unwrap().push((room.into(), user.into())))
    };
    let (_server, nats, js, fanout) = fanout_with(Duration::from_secs(30), on_ban).await?;
    let joined = |last: u64| bytes::Bytes::from(format!("joined {last}"));
    let mut links = Vec::new();
    for (id, user) in [(1, "bob"), (2, "carol"), (3, "bob")] {
        let link = Arc::new(SessionLink::new(id, 64, CancellationToken::new()));
        link.user.set(Arc::from(user)).expect("set once");
        fanout.join("room1", &link, 1, 0, None, &joined).await?;
        links.push(link);
    }
    let send = |id: &str, from: &str, body: &str| Payload {
        id: id.into(),
        from: from.into(),
        ts: 1,
        body: body.into(),
        ..Payload::default()
    };
    let lookalike = send("evt-x-1", "carol", r#"{"ban":{"user":"bob"}}"#);
    let s1 = store_and_go_live(&nats, &js, "room1", &lookalike, 0).await?;
    let ban = Payload {
        event: Some(RoomEvent::Ban {
            user: "bob".into(),
            reason: None,
        }),
        ..send("evt-gw2-1", "ann", "")
    };
    let s2 = store_and_go_live(&nats, &js, "room1", &ban, s1).await?;
    let s3 = store_and_go_live(&nats, &js, "room1", &send("m3", "carol", "after"), s2).await?;

    let live = |outs: &[Out]| -> Vec<u64> {
        outs.iter()
            .filter_map(|o| match o {
                Out::Live { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    };
    let carol = drain(&links[1]).await;
    assert_eq!(live(&carol), [s1, s2, s3], "carol gets everything");
    for bob in [&links[0], &links[2]] {
        let outs = drain(bob).await;
        // What bob's session sees of the room's order (presence frames aside).
        let seen: Vec<String> = outs
            .iter()
            .filter_map(|o| match o {
                Out::Live { seq, .. } => Some(format!("live {seq}")),
                Out::Untrack { .. } => Some("untrack".into()),
                Out::Frame(f) => {
                    let v: serde_json::Value = serde_json::from_slice(f).ok()?;
                    (v["type"] == "left").then(|| format!("left {}", v["room"]))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            seen,
            [
                format!("live {s1}"),
                "untrack".into(),
                "left \"room1\"".into()
            ],
            "bob gets what came before his ban only, then leaves the room and is told"
        );
        assert!(!fanout.holds("room1", bob.id));
    }
    assert!(fanout.holds("room1", links[1].id));
    assert_eq!(*told.lock().unwrap(), [("room1".into(), "bob".into())]);

    // Bob alone in another room: banned there, the room closes.
    let lone = Arc::new(SessionLink::new(4, 64, CancellationToken::new()));
    lone.user.set(Arc::from("bob")).expect("set once");
    fanout.join("room2", &lone, 1, 0, None, &joined).await?;
    let ban2 = Payload {
        id: "evt-gw2-2".into(),
        ..ban
    };
    store_and_go_live(&nats, &js, "room2", &ban2, 0).await?;
    let outs = drain(&lone).await;
    assert!(live(&outs).is_empty(), "{outs:?}");
    assert!(fanout.get("room2").is_none(), "the emptied room is closed");
    Ok(())
}

/// A room whose fan-out task ends unasked (here: it panics on a ban) closes its sessions
/// with 1013, to resume, and is not joined again: the next join starts a new fan-out that
/// gets live messages. Before, the dead room kept its members and took new ones, none of
/// which got another live message.
#[tokio::test]
async fn a_room_whose_fan_out_fails_closes_its_sessions_and_starts_anew() -> Result<()> {
    use chatmesh_protocol::message::Payload;
    use chatmesh_protocol::moderation::RoomEvent;

    let on_ban = OnBan::new(|_, _| panic!("a fan-out task that fails"));
    let (_server, nats, js, fanout) = fanout_with(Duration::from_secs(30), on_ban).await?;
    let joined = |last: u64| bytes::Bytes::from(format!("joined {last}"));
    let carol = Arc::new(SessionLink::new(1, 64, CancellationToken::new()));
    carol.user.set(Arc::from("carol")).expect("set once");
    fanout.join("room1", &carol, 1, 0, None, &joined).await?;
    let ban = Payload {
        id: "evt-gw2-1".into(),
        from: "ann".into(),
        ts: 1,
        event: Some(RoomEvent::Ban {
            user: "bob".into(),
            reason: None,
        }),
        ..Payload::default()
    };
    let s1 = store_and_go_live(&nats, &js, "room1", &ban, 0).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while carol.close_reason().is_none() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "carol never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(carol.close_reason().map(|r| r.0), Some(1013));
    assert!(fanout.get("room1").is_none(), "the failed room is closed");

    let dan = Arc::new(SessionLink::new(2, 64, CancellationToken::new()));
    dan.user.set(Arc::from("dan")).expect("set once");
    fanout.join("room1", &dan, 1, 0, None, &joined).await?;
    let hello = Payload {
        id: "m2".into(),
        from: "ann".into(),
        ts: 1,
        body: "hello".into(),
        ..Payload::default()
    };
    let s2 = store_and_go_live(&nats, &js, "room1", &hello, s1).await?;
    let live: Vec<u64> = drain(&dan)
        .await
        .iter()
        .filter_map(|o| match o {
            Out::Live { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(live, [s2], "the new fan-out delivers");
    Ok(())
}

/// When core NATS dropped the messages between the room's last dispatched one and a live
/// message, and the stream has since been purged up to and past that last one, the gap fill
/// does not hand the session what the stream holds next labelled `prev` = last: each message
/// the session gets follows the one before it, or shows the gap with a `prev` above it.
#[tokio::test]
async fn a_gap_fill_after_a_purge_past_the_last_dispatched_shows_the_gap() -> Result<()> {
    use chatmesh_protocol::message::Payload;

    let (_server, nats, js, fanout) = fanout(Duration::from_secs(30)).await?;
    let link = Arc::new(SessionLink::new(1, 64, CancellationToken::new()));
    let joined = |last: u64| bytes::Bytes::from(format!("joined {last}"));
    fanout.join("room1", &link, 1, 0, None, &joined).await?;
    let send = |body: &str| Payload {
        id: body.into(),
        from: "ann".into(),
        ts: 1,
        body: body.into(),
        ..Payload::default()
    };

    // The first message comes live: the room's last dispatched seq.
    let mut seqs = vec![store_and_go_live(&nats, &js, "room1", &send("m0"), 0).await?];
    let first: Vec<u64> = drain(&link)
        .await
        .into_iter()
        .filter_map(|o| match o {
            Out::Live { seq, .. } => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(first, seqs, "the first message came live");

    // Four are stored but core NATS drops their live copies ...
    for i in 1..5 {
        seqs.push(publish(&js, "room1", &format!("m{i}")).await?);
    }
    // ... and the store writer trims the room below the fourth: the last dispatched
    // message and the two after it are gone.
    let purged = js
        .get_stream(STREAM)
        .await?
        .purge()
        .filter(in_subject(P, "room1"))
        .sequence(seqs[3])
        .await?;
    assert_eq!(purged.purged, 3);
    // A live message then names the last stored one as its prev.
    let prev = *seqs.last().expect("published");
    seqs.push(store_and_go_live(&nats, &js, "room1", &send("m5"), prev).await?);

    let mut got = Vec::new();
    for out in drain(&link).await {
        if let Out::Live { seq, frame, .. } = out {
            let v: serde_json::Value = serde_json::from_slice(&frame)?;
            assert_eq!(v["seq"], seq);
            got.push((seq, v["prev"].as_u64().context("a prev")?));
        }
    }
    assert_eq!(got.last().map(|g| g.0), Some(seqs[5]), "{got:?}");
    let mut before = seqs[0];
    for &(seq, prev) in &got {
        if prev == before {
            let next = seqs.iter().find(|&&s| s > before).copied();
            assert_eq!(
                Some(seq),
                next,
                "{seq} claims to follow {before} but {next:?} was published after it; got {got:?}"
            );
        } else {
            assert!(
                prev > before,
                "{seq} has prev {prev} below the last received {before}; got {got:?}"
            );
        }
        before = seq;
    }
    Ok(())
}
