//! The event log (stream `MESH_EVENTS`) against a real nats-server: the workers' start makes it
//! and it keeps the membership and account events as published; a bus where it cannot be
//! made (here another stream already takes its subjects) does not stop the message stream
//! from being made, so workers still start. An event the log refuses is published again,
//! late, until the log has it.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType, Stream};
use chatmesh_protocol::subjects::{member_subject, user_subject, EVENT_LOG, LATE_HEADER, STREAM};
use chatmesh_workers::ensure_stream;
use chatmesh_workers::events::Events;
use common::{eventually, mesh};
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_keeps_the_events_and_its_absence_stops_nothing() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let js = mesh::js(&nats);
    let mesh = mesh::mesh(server.url());

    let squatter = Config {
        name: "SQUATTER".into(),
        subjects: vec!["chat.mem.*".into()],
        ..Default::default()
    };
    js.create_stream(squatter).await.unwrap();
    ensure_stream(&js, &mesh)
        .await
        .expect("the message stream is made without the event log");
    assert!(js.get_stream(STREAM).await.is_ok());
    assert!(js.get_stream(EVENT_LOG).await.is_err(), "the log was made");

    js.delete_stream("SQUATTER").await.unwrap();
    ensure_stream(&js, &mesh).await.unwrap();
    let mut log = js.get_stream(EVENT_LOG).await.unwrap();
    let cfg = &log.cached_info().config;
    assert_eq!(cfg.storage, StorageType::File);
    assert_eq!(cfg.max_age.as_secs(), 3600);
    assert!(cfg.allow_direct);
    nats.publish(member_subject("hall"), "{}".into())
        .await
        .unwrap();
    nats.publish(user_subject("ann"), "{}".into())
        .await
        .unwrap();
    nats.publish("chat.svc.elsewhere", "{}".into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let kept = kept_at_least(&log, 2, 10).await;
    assert_eq!(kept, 2, "only the events are kept");
    assert_eq!(log.info().await.unwrap().state.last_sequence, 2);
}

/// While the log refuses new events (full, discarding new ones) an event still reaches
/// subscribers at once; once the log takes events again the worker publishes it again,
/// marked late, the log keeps that copy, and subscribers get it too, marked. Without the log
/// events go out unmarked and nothing is published again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_log_refused_is_published_again_late_until_it_is_stored() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let js = mesh::js(&nats);
    ensure_stream(&js, &mesh::mesh(server.url())).await.unwrap();
    // Full at one event (a limit of 0 means none).
    nats.publish(user_subject("ann"), "{}".into())
        .await
        .unwrap();
    let mut log = js.get_stream(EVENT_LOG).await.unwrap();
    kept_at_least(&log, 1, 10).await;
    let had = log.info().await.unwrap().config.clone();
    let full = Config {
        max_messages: 1,
        discard: DiscardPolicy::New,
        ..had.clone()
    };
    js.update_stream(full).await.unwrap();
    let mut live = nats.subscribe(member_subject("hall")).await.unwrap();
    nats.flush().await.unwrap();

    let events = Events::new(nats.clone(), true);
    events.publish(member_subject("hall"), "{}".into()).await;
    let first = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .unwrap()
        .unwrap();
    assert!(first
        .headers
        .as_ref()
        .and_then(|h| h.get(LATE_HEADER))
        .is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        log.info().await.unwrap().state.messages,
        1,
        "the log refused it"
    );

    js.update_stream(had).await.unwrap();
    assert_eq!(kept_at_least(&log, 2, 20).await, 2);
    let stored = log.direct_get(2).await.unwrap();
    assert_eq!(stored.subject.as_str(), member_subject("hall"));
    assert!(stored.headers.get(LATE_HEADER).is_some());

    // Subscribers got each copy published again (one refused before the log took events
    // again, perhaps), marked; once stored, it is not published again. Without the log,
    // events go out plain and are never published again.
    let plain = Events::new(nats.clone(), false);
    plain.publish(member_subject("hall"), "{}".into()).await;
    let mut late = 0;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), live.next())
            .await
            .unwrap()
            .unwrap();
        match msg.headers.as_ref().and_then(|h| h.get(LATE_HEADER)) {
            Some(_) => late += 1,
            None => break,
        }
    }
    assert!(late >= 1, "the late copy reached subscribers");
    let more = tokio::time::timeout(Duration::from_secs(1), live.next()).await;
    assert!(more.is_err(), "published again: {more:?}");
}

/// How many events `log` keeps, once at least `n` (waiting up to `secs`).
async fn kept_at_least(log: &Stream, n: u64, secs: u64) -> u64 {
    eventually(secs, &format!("the log to keep {n} events"), || {
        let mut log = log.clone();
        async move {
            let kept = log.info().await.ok()?.state.messages;
            (kept >= n).then_some(kept)
        }
    })
    .await
}
