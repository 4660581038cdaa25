//! The event log (stream `MESH_EVENTS`) against a real nats-server: the workers' start makes it
//! and it keeps the membership and account events as published; a bus where it cannot be
//! made (here another stream already takes its subjects) does not stop the message stream
//! from being made, so workers still start.

mod common;

use async_nats::jetstream::stream::{Config, StorageType};
use chatmesh_protocol::subjects::{member_subject, user_subject, EVENT_LOG, STREAM};
use chatmesh_workers::ensure_stream;
use common::{eventually, mesh};

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
    let kept = eventually(10, "the log to keep both events", || {
        let log = log.clone();
        async move {
            let mut log = log;
            let n = log.info().await.ok()?.state.messages;
            (n >= 2).then_some(n)
        }
    })
    .await;
    assert_eq!(kept, 2, "only the events are kept");
    assert_eq!(log.info().await.unwrap().state.last_sequence, 2);
}
