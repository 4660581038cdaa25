//! The store writer against a real nats-server: every published message is stored once, in
//! stream order with an intact prev chain, also across a graceful stop and a crash of the
//! worker in the middle of the stream, across a restart of nats-server itself, and when its
//! consumers are lost.

mod common;

use std::collections::BTreeMap;

use async_nats::jetstream::consumer::PullConsumer;
use chatmesh_protocol::subjects::{in_subject, store_consumer, STREAM};
use chatmesh_workers::model::Model;
use chatmesh_workers::{ensure_stream, open_store, Store, Worker};
use common::mesh::{self, publish, stored_count, stored_exactly, Running};
use common::{config, eventually};

const ROOMS: [&str; 5] = ["general", "random", "rust", "nats", "ops-1"];

/// Opens the store in `dir`, waiting until a crashed worker's last handles are gone.
async fn reopen(dir: &std::path::Path) -> Store {
    let cfg = config(dir);
    eventually(10, "the store to be free", || {
        let cfg = cfg.clone();
        async move { open_store(&cfg).await.ok() }
    })
    .await
}

/// A worker on a fresh store in its own directory, against `server`: its client, the model
/// over its store, the worker, and the directory (kept while the test runs).
async fn start_worker(
    server: &natsd::NatsServer,
) -> (async_nats::Client, Model, Worker, tempfile::TempDir) {
    let nats = server.connect().await.unwrap();
    let mesh = mesh::mesh(server.url());
    let dir = tempfile::tempdir().unwrap();
    let store = reopen(dir.path()).await;
    let model = Model::new(store.clone());
    let worker = Worker::start(config(dir.path()), mesh, nats.clone(), store)
        .await
        .unwrap();
    (nats, model, worker, dir)
}

/// 1,000 messages published before the worker starts are all stored once, in order, with the
/// prev chain JetStream's sequence implies; a resend is not stored again, garbage is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_a_backlog_in_order() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let mesh = mesh::mesh(server.url());
    ensure_stream(&mesh::js(&nats), &mesh).await.unwrap();
    let js = mesh::js(&nats);
    let mut want: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in 0..1_000 {
        let room = ROOMS[i % 3];
        let (seq, dup) = publish(&js, room, "ann", &format!("{room}-{i}")).await;
        assert!(!dup);
        want.entry(room.to_owned()).or_default().push(seq);
    }
    let (seq, dup) = publish(&js, "general", "ann", "general-0").await;
    assert!(dup && seq == want["general"][0], "a resend keeps its seq");
    // Garbage in the stream is skipped; the room's chain goes around it.
    let garbage = js
        .publish(in_subject(mesh::PARTITIONS, "general"), "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let (seq, _) = publish(&js, "general", "ann", "general-1000").await;
    assert_eq!(seq, garbage.sequence + 1);
    want.entry("general".into()).or_default().push(seq);

    let dir = tempfile::tempdir().unwrap();
    let store = reopen(dir.path()).await;
    let model = Model::new(store.clone());
    let worker = Worker::start(config(dir.path()), mesh, nats, store)
        .await
        .unwrap();
    let _: () = eventually(30, "every message stored", || async {
        stored_exactly(&model, &want).await.ok()
    })
    .await;
    assert!(worker.ready());
    worker.stop().await.unwrap();
    let last = want.values().flatten().max().copied().unwrap();
    let checkpoints: Vec<u64> =
        futures::future::join_all((0..mesh::PARTITIONS).map(|p| model.checkpoint(p)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    assert!(checkpoints.contains(&last), "{checkpoints:?}");
}

/// A worker stopped mid-stream and another one crashed mid-stream lose nothing and store
/// nothing twice: the next worker resumes from the store's checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_mid_stream_lose_and_duplicate_nothing() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let mesh = mesh::mesh(server.url());
    let dir = tempfile::tempdir().unwrap();
    let rooms: Vec<String> = ROOMS.iter().map(|r| r.to_string()).collect();
    let cfg = config(dir.path());

    let store = reopen(dir.path()).await;
    let model = Model::new(store.clone());
    let first = Running::spawn(cfg.clone(), mesh.clone(), nats.clone(), store);
    // The publisher needs the stream; the first worker creates it.
    ensure_stream(&mesh::js(&nats), &mesh).await.unwrap();
    let js = mesh::js(&nats);
    let publisher = tokio::spawn(async move {
        let mut want: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for i in 0..3_000usize {
            let room = ROOMS[(i * 7) % ROOMS.len()];
            let (seq, _) = publish(&js, room, "bob", &format!("{room}-{i}")).await;
            want.entry(room.to_owned()).or_default().push(seq);
        }
        want
    });

    eventually(30, "500 messages stored", || async {
        (stored_count(&model, rooms.iter()).await >= 500).then_some(())
    })
    .await;
    first.stop().await.unwrap();
    drop(model);

    let store = reopen(dir.path()).await;
    let model = Model::new(store.clone());
    let second = Running::spawn(cfg.clone(), mesh.clone(), nats.clone(), store);
    eventually(30, "1,500 messages stored", || async {
        (stored_count(&model, rooms.iter()).await >= 1_500).then_some(())
    })
    .await;
    second.crash().await;
    drop(model);

    let store = reopen(dir.path()).await;
    let model = Model::new(store.clone());
    let third = Running::spawn(cfg, mesh, nats, store);
    let want = publisher.await.unwrap();
    let total: usize = want.values().map(Vec::len).sum();
    assert_eq!(total, 3_000);
    let result = eventually(60, "all 3,000 messages stored exactly once", || async {
        match stored_exactly(&model, &want).await {
            Ok(()) => Some(Ok(())),
            Err(e) if stored_count(&model, rooms.iter()).await > 3_000 => Some(Err(e)),
            Err(_) => None,
        }
    })
    .await;
    result.unwrap();
    third.stop().await.unwrap();
}

/// A nats-server restart under a running worker: the client reconnects, the store writers
/// start new sessions from their checkpoints, and every message is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_nats_server_restart() {
    let mut server = natsd::NatsServer::start_temp().await.unwrap();
    let (nats, model, worker, _dir) = start_worker(&server).await;
    let js = mesh::js(&nats);
    let mut want: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in 0..1_000usize {
        if i == 500 {
            server.restart().await.unwrap();
        }
        let room = ROOMS[i % ROOMS.len()];
        let (seq, _) = publish(&js, room, "cy", &format!("{room}-{i}")).await;
        want.entry(room.to_owned()).or_default().push(seq);
    }
    let _: () = eventually(60, "every message stored after the restart", || async {
        stored_exactly(&model, &want).await.ok()
    })
    .await;
    eventually(30, "the worker to be ready again", || async {
        worker.ready().then_some(())
    })
    .await;
    // The restart forgot the consumers (their state lives in memory); every partition's
    // writer recreates its own, also those of partitions that received nothing since.
    let stream = js.get_stream(STREAM).await.unwrap();
    eventually(30, "every partition's consumer recreated", || async {
        for p in 0..mesh::PARTITIONS {
            stream.consumer_info(store_consumer(p)).await.ok()?;
        }
        Some(())
    })
    .await;
    worker.stop().await.unwrap();
}

/// The store writers' consumers keep their state in memory (the store's checkpoint is what
/// counts), so a nats-server restart forgets them; one deleted under a running worker is
/// recreated from the checkpoint, and every message is still stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_consumer_is_recreated_from_the_checkpoint() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let (nats, model, worker, _dir) = start_worker(&server).await;
    let js = mesh::js(&nats);
    let stream = js.get_stream(STREAM).await.unwrap();
    let mut want: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in 0..600usize {
        if i == 300 {
            for p in 0..mesh::PARTITIONS {
                let mut consumer: PullConsumer =
                    stream.get_consumer(&store_consumer(p)).await.unwrap();
                let info = consumer.info().await.unwrap();
                assert!(
                    info.config.memory_storage,
                    "store-p{p} keeps its state in memory"
                );
                stream.delete_consumer(&store_consumer(p)).await.unwrap();
            }
        }
        let room = ROOMS[i % ROOMS.len()];
        let (seq, _) = publish(&js, room, "dee", &format!("{room}-{i}")).await;
        want.entry(room.to_owned()).or_default().push(seq);
    }
    let _: () = eventually(
        60,
        "every message stored after the consumers were lost",
        || async { stored_exactly(&model, &want).await.ok() },
    )
    .await;
    worker.stop().await.unwrap();
}

/// The environment variable that makes [`a_store_that_can_no_longer_write_stops_the_worker`]
/// run its body (in a child process of its own: the file size limit it sets must not reach
/// the other tests of this binary under `cargo test`).
const FSIZE_CHILD: &str = "CHATMESH_TEST_FSIZE_CHILD";

/// A store whose journal write fails (here the file size limit; ENOSPC or EIO in
/// production) is poisoned for good: fjall refuses every later write. The worker then
/// stops with the store's error, so that its process exits and a supervisor or a standby
/// takes over (a restart recovers the journal), instead of retrying forever while its
/// health checks stay green and nothing more is stored.
#[test]
fn a_store_that_can_no_longer_write_stops_the_worker() {
    if std::env::var_os(FSIZE_CHILD).is_some() {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(stops_when_the_store_fails());
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_store_that_can_no_longer_write_stops_the_worker",
            "--exact",
            "--nocapture",
        ])
        .env(FSIZE_CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn stops_when_the_store_fails() {
    // nats-server first: a child started later would inherit the limit.
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let (nats, _model, mut worker, _dir) = start_worker(&server).await;
    let js = mesh::js(&nats);
    publish(&js, "general", "ann", "before").await;
    // Writes past 256 KiB of any file fail with EFBIG (the store's journal is a sparse
    // file of 64 MiB, written from its start: a few KiB of it are in use now); the signal
    // that would kill the process is ignored, as a full disk sends none.
    let _ignored =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25)).unwrap(); // SIGXFSZ
    let limit = format!("--fsize={}:unlimited", 256 << 10);
    let pid = std::process::id().to_string();
    let set = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &limit])
        .status()
        .expect("prlimit (util-linux)");
    assert!(set.success());
    let failed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let publishing = async {
            for i in 0..100_000 {
                let room = ROOMS[i % ROOMS.len()];
                publish(&js, room, "ann", &format!("m{i}-{}", "x".repeat(500))).await;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            e = worker.failed() => e,
            () = publishing => unreachable!(),
        }
    })
    .await
    .expect("the worker went on with a store that cannot write");
    let text = chatmesh_protocol::error::Chain(&failed).to_string();
    assert!(text.contains("can no longer write"), "{text}");
}

/// A stream deleted and made again under a running worker: the store's checkpoints are the
/// old stream's seqs, so consuming the new one from them would take its messages below them
/// for stored ones (skipped, then trimmed from the stream). The next store-writer session
/// finds the stream ending below its checkpoint and stops the worker, as a start on that
/// stream is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_again_under_the_worker_stops_it() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let (nats, model, mut worker, _dir) = start_worker(&server).await;
    let js = mesh::js(&nats);
    let mut want: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in 0..20 {
        let (seq, _) = publish(&js, "general", "ann", &format!("general-{i}")).await;
        want.entry("general".to_owned()).or_default().push(seq);
    }
    let _: () = eventually(30, "the messages stored", || async {
        stored_exactly(&model, &want).await.ok()
    })
    .await;
    js.delete_stream(STREAM).await.unwrap();
    ensure_stream(&js, &mesh::mesh(server.url())).await.unwrap();
    publish(&js, "general", "ann", "general-new").await;
    let failed = tokio::time::timeout(std::time::Duration::from_secs(60), worker.failed())
        .await
        .expect("the worker went on consuming a stream that ends below its checkpoints");
    assert!(
        matches!(
            failed,
            chatmesh_workers::WorkerError::StreamBehindStore {
                checkpoint: 20,
                last: 1,
                ..
            }
        ),
        "{failed}"
    );
}
