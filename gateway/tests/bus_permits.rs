//! The gateway's JetStream context against a real nats-server whose presence writes are
//! never acked (a stalled bucket, a leader election): presence writes, which nothing waits
//! for, must not use up the PubAck permits that sends need.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::stream;
use chatmesh_gateway::presence;
use chatmesh_gateway::state::bus_context;
use chatmesh_protocol::subjects::{in_subject, PRESENCE_BUCKET, STREAM};

/// A gateway's rooms keep writing presence while its bucket answers nothing: 500 writes
/// (more than the context's 80 PubAck permits) each return at once, and a send then still
/// gets its PubAck (before: a dropped write's permit was held until async-nats gave up on its
/// ack, 30 s later; the 81st write blocked, and so did every send after it, unanswered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_presence_writes_leave_sends_their_permits() -> Result<()> {
    let server = natsd::NatsServer::start_temp().await?;
    let nats = server.connect().await?;
    let js = bus_context(nats.clone(), 16);
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["chat.in.>".into()],
        ..Default::default()
    })
    .await?;
    // Takes every presence write and answers none: a bucket that stalled.
    let _stalled = nats.subscribe(format!("$KV.{PRESENCE_BUCKET}.>")).await?;
    nats.flush().await?;

    let users = BTreeSet::from(["ann".to_owned()]);
    tokio::time::timeout(Duration::from_secs(5), async {
        for i in 0..500 {
            let room = format!("r{i}");
            let _ = presence::publish(&js, &room, "gw", &users, Duration::from_secs(30)).await;
        }
    })
    .await
    .context("presence writes blocked on PubAck permits")?;

    let ack = tokio::time::timeout(Duration::from_secs(5), async {
        js.publish(in_subject(4, "lobby"), "{}".into()).await?.await
    })
    .await
    .context("a send blocked behind presence writes")??;
    assert!(ack.sequence > 0);
    Ok(())
}
