//! The room fan-out against a real nats-server: retained reads by batch direct get, and the
//! gap fill that repairs what core NATS drops between JetStream and a gateway.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use chatmesh_gateway::fanout::{Fanout, RoomEnv};
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
