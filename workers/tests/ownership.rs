//! Partition ownership between live workers over one shared store (the shape of a TiKV
//! deployment), against a real nats-server: a joining worker takes its share, a crashed
//! worker's partitions move within the lease TTL, and every message published throughout is
//! stored exactly once with an intact prev chain.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chatmesh_workers::model::Model;
use chatmesh_workers::ownership::{rendezvous, OwnershipConfig, OwnershipMode};
use chatmesh_workers::{open_store, Worker};
use common::mesh::{js, mesh, publish, stored_exactly, PARTITIONS};
use common::{config, eventually};

fn shared(dir: &std::path::Path) -> chatmesh_workers::WorkerConfig {
    let mut cfg = config(dir);
    cfg.ownership = OwnershipConfig {
        mode: OwnershipMode::Shared,
        lease_ttl_secs: 3,
    };
    cfg
}

fn all() -> BTreeSet<u32> {
    (0..PARTITIONS).collect()
}

/// A worker on its own store (`cfg`), running every partition.
async fn lone_worker(server: &natsd::NatsServer, cfg: chatmesh_workers::WorkerConfig) -> Worker {
    let store = open_store(&cfg).await.unwrap();
    let w = Worker::start(
        cfg,
        mesh(server.url()),
        server.connect().await.unwrap(),
        store,
    )
    .await
    .unwrap();
    eventually(10, "the worker runs every partition", || async {
        (w.partitions().into_iter().collect::<BTreeSet<_>>() == all()).then_some(())
    })
    .await;
    w
}

/// Sends a signal (`-STOP`, `-CONT`) to the test's own nats-server child, by pid.
fn signaller(server: &natsd::NatsServer) -> impl Fn(&str) {
    let pid = server
        .pid()
        .expect("the test's nats-server runs")
        .to_string();
    move |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    }
}

/// Two workers split the partitions when the second joins; when one crashes, the other
/// runs them all within the lease TTL; no message is lost or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_rebalance_on_join_and_move_on_crash() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = shared(dir.path());
    let store = open_store(&cfg).await.unwrap();
    let mesh = mesh(server.url());
    let pub_nats = server.connect().await.unwrap();
    let js = js(&pub_nats);

    let a = Worker::start(
        cfg.clone(),
        mesh.clone(),
        server.connect().await.unwrap(),
        store.clone(),
    )
    .await
    .unwrap();
    eventually(10, "the first worker runs every partition", || async {
        (a.partitions().into_iter().collect::<BTreeSet<_>>() == all()).then_some(())
    })
    .await;

    let rooms: Vec<String> = (0..12).map(|i| format!("room{i}")).collect();
    let mut want: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut n = 0;
    let mut send = |js: async_nats::jetstream::Context, burst: usize| {
        let rooms = rooms.clone();
        let start = n;
        n += burst;
        async move {
            let mut out = Vec::new();
            for i in start..start + burst {
                let room = &rooms[i % rooms.len()];
                let (seq, _) = publish(&js, room, "ann", &format!("{room}-{i}")).await;
                out.push((room.clone(), seq));
            }
            out
        }
    };
    for (room, seq) in send(js.clone(), 300).await {
        want.entry(room).or_default().push(seq);
    }

    let b = Worker::start(
        cfg.clone(),
        mesh.clone(),
        server.connect().await.unwrap(),
        store.clone(),
    )
    .await
    .unwrap();
    let moving = tokio::spawn(send(js.clone(), 300));
    eventually(
        15,
        "the partitions split between the two workers",
        || async {
            let (pa, pb): (BTreeSet<u32>, BTreeSet<u32>) = (
                a.partitions().into_iter().collect(),
                b.partitions().into_iter().collect(),
            );
            // Each runs exactly its rendezvous share (ids are random: with 4 partitions one
            // worker gets none in 1 of 8 runs, so "both non-empty" would be a flaky check).
            let share = |w: &str| -> BTreeSet<u32> {
                all()
                    .into_iter()
                    .filter(|p| rendezvous([a.id(), b.id()], *p) == Some(w))
                    .collect()
            };
            (pa == share(a.id()) && pb == share(b.id())).then_some(())
        },
    )
    .await;
    for (room, seq) in moving.await.unwrap() {
        want.entry(room).or_default().push(seq);
    }

    // A crash: no graceful release; the survivor waits for the leases to expire.
    drop(a);
    let crashed = Instant::now();
    let after = tokio::spawn(send(js.clone(), 300));
    eventually(15, "the survivor runs every partition", || async {
        (b.partitions().into_iter().collect::<BTreeSet<_>>() == all()).then_some(())
    })
    .await;
    let took = crashed.elapsed();
    eprintln!("partitions moved {took:?} after the crash");
    assert!(
        took < Duration::from_secs(10),
        "partitions moved after {took:?}"
    );
    for (room, seq) in after.await.unwrap() {
        want.entry(room).or_default().push(seq);
    }

    let model = Model::new(store.clone());
    eventually(20, "every message stored exactly once", || async {
        stored_exactly(&model, &want).await.ok()
    })
    .await;
    b.stop().await.unwrap();
}

/// A worker told to stop while NATS is gone (its server killed) stops within seconds: the
/// lease renewals in flight (one round a second here) do not hold the stop back, its
/// partitions stop together, and their leases, which no server can hear released, are left
/// to expire. One after another, each renewal and then each release waited out its request
/// timeout: minutes for 16 partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_promptly_when_nats_is_gone() {
    let mut server = natsd::NatsServer::start_temp().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = lone_worker(&server, config(dir.path())).await;
    server.kill();
    // A renewal round starts without an answer (the TTL is 3 s: a round every second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopping = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(90), w.stop()).await;
    let took = stopping.elapsed();
    eprintln!("the worker stopped {took:?} after it was told to");
    assert!(
        stopped.is_ok(),
        "the worker was still stopping after {took:?}"
    );
    assert!(
        took < Duration::from_secs(12),
        "stopping without NATS took {took:?}"
    );
}

/// A renewal round that hangs (the lease bucket's server stops answering but keeps the
/// connection) does not keep the partitions running past their margin (two thirds of the
/// TTL since the last renewal): by then another worker may take their leases. They stop
/// within it, not after the round's request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_lease_renewal_stops_the_partitions_within_their_margin() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = lone_worker(&server, shared(dir.path())).await;
    // The server is frozen (our own child, by pid): requests go out, nothing comes back.
    let signal = signaller(&server);
    signal("-STOP");
    // TTL 3 s: stopped 2 s after the last renewal at most (plus a round's tick); a round's
    // requests would have waited out their 10 s timeout first.
    let stopped = tokio::time::timeout(Duration::from_secs(6), async {
        while !w.partitions().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    signal("-CONT");
    assert!(
        stopped.is_ok(),
        "partitions still running: {:?}",
        w.partitions()
    );
    let _ = tokio::time::timeout(Duration::from_secs(60), w.stop()).await;
}

/// Partitions stop within their margin even while the ownership loop is held up elsewhere:
/// here it is waiting on a lease read of another partition (one it wants but a ghost holds)
/// when the server stops answering, which would wait out its 10 s request timeout before a
/// round of renewals could start. Takes are cut at a third of the TTL, and each partition's
/// own watchdog stops it two thirds of the TTL after its last renewal (its unit tests, in
/// `ownership/mod.rs`, cover the watchdog alone; this one, either mechanism).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_stop_within_their_margin_while_the_loop_waits_on_another() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = lone_worker(&server, shared(dir.path())).await;
    // A ghost takes partition 0's lease and keeps it: the worker loses the partition, and
    // every loop tick (250 ms) reads the lease again, wanting it back.
    let ghost_nats = server.connect().await.unwrap();
    let ghost_js = js(&ghost_nats);
    let ghost = tokio::spawn(async move {
        loop {
            let put = natskit::put_ttl(
                &ghost_js,
                format!("$KV.{}.p0", chatmesh_protocol::subjects::LEASES_BUCKET),
                "ghost".into(),
                Duration::from_secs(3),
                natskit::Expect::Any,
            );
            let _ = put.await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let rest: BTreeSet<u32> = (1..PARTITIONS).collect();
    eventually(10, "the ghost's partition stops", || async {
        (w.partitions().into_iter().collect::<BTreeSet<_>>() == rest).then_some(())
    })
    .await;
    ghost.abort();
    let signal = signaller(&server);
    signal("-STOP");
    let frozen = Instant::now();
    // TTL 3 s: stopped 2 s after the last renewal at most (renewals every second), not
    // after the lease read's 10 s.
    let stopped = tokio::time::timeout(Duration::from_secs(5), async {
        while !w.partitions().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let took = frozen.elapsed();
    signal("-CONT");
    assert!(
        stopped.is_ok(),
        "partitions still running {took:?} after the freeze: {:?}",
        w.partitions()
    );
    eprintln!("partitions stopped {took:?} after the freeze");
    let _ = tokio::time::timeout(Duration::from_secs(60), w.stop()).await;
}

/// A worker whose view of the registry missed a departure (an expiry marker published while
/// it was cut off from NATS: the registry's events are core NATS, at most once) still ends
/// up running the departed worker's partitions: it reads the registry again every lease
/// renewal round. Here the departure leaves no event at all: the other worker's key is
/// purged from the bucket's stream, which republishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_departure_does_not_leave_partitions_unowned() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let admin = server.connect().await.unwrap();
    let js = js(&admin);
    let w = lone_worker(&server, shared(dir.path())).await;

    // Another worker that wins at least one partition registers (the worker sees it and
    // gives up that share)...
    let ghost = (0..)
        .map(|i| format!("ghost{i}"))
        .find(|g| {
            all()
                .iter()
                .any(|p| rendezvous([w.id(), g.as_str()], *p) == Some(g.as_str()))
        })
        .unwrap();
    let mine: BTreeSet<u32> = all()
        .into_iter()
        .filter(|p| rendezvous([w.id(), ghost.as_str()], *p) == Some(w.id()))
        .collect();
    let bucket = chatmesh_protocol::subjects::OwnershipBuckets::of(None).workers;
    js.publish(format!("$KV.{bucket}.{ghost}"), "up".into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually(10, "the worker gives up the newcomer's share", || async {
        (w.partitions().into_iter().collect::<BTreeSet<_>>() == mine).then_some(())
    })
    .await;

    // ...and is gone without an event the worker could see.
    js.get_stream(format!("KV_{bucket}"))
        .await
        .unwrap()
        .purge()
        .filter(format!("$KV.{bucket}.{ghost}"))
        .await
        .unwrap();
    eventually(10, "the worker runs every partition again", || async {
        (w.partitions().into_iter().collect::<BTreeSet<_>>() == all()).then_some(())
    })
    .await;
    w.stop().await.unwrap();
}

/// A partition that comes back to a worker after another ran it for a while is written on
/// from the store, not from what the first worker cached before: each room's prev chain stays
/// intact (before, the first worker's stale stats of those rooms broke it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_comes_back_is_written_on_from_the_store() {
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = shared(dir.path());
    let store = open_store(&cfg).await.unwrap();
    let mesh = mesh(server.url());
    let pub_nats = server.connect().await.unwrap();
    let js = js(&pub_nats);
    let rooms: Vec<String> = (0..12).map(|i| format!("room{i}")).collect();
    let mut want: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut n = 0;
    let mut send = |round: &str| {
        let (js, rooms, round) = (js.clone(), rooms.clone(), round.to_owned());
        n += 1;
        let start = n * 1000;
        async move {
            let mut out = Vec::new();
            for (i, room) in rooms.iter().enumerate() {
                let id = format!("{room}-{round}{}", start + i);
                let (seq, _) = publish(&js, room, "ann", &id).await;
                out.push((room.clone(), seq));
            }
            out
        }
    };
    let start = |nats| Worker::start(cfg.clone(), mesh.clone(), nats, store.clone());
    let a = start(server.connect().await.unwrap()).await.unwrap();
    eventually(10, "the first worker runs every partition", || async {
        (a.partitions().into_iter().collect::<BTreeSet<_>>() == all()).then_some(())
    })
    .await;
    // The first worker stores (and caches) every room.
    for (room, seq) in send("a").await {
        want.entry(room).or_default().push(seq);
    }
    let model = Model::new(store.clone());
    eventually(20, "the first round stored", || async {
        stored_exactly(&model, &want).await.ok()
    })
    .await;
    // A second worker that wins some partitions (ids are random: try a few).
    let mut b = None;
    for _ in 0..8 {
        let w = start(server.connect().await.unwrap()).await.unwrap();
        let wins = all()
            .into_iter()
            .any(|p| rendezvous([a.id(), w.id()], p) == Some(w.id()));
        if wins {
            b = Some(w);
            break;
        }
        w.stop().await.unwrap();
    }
    let b = b.expect("a second worker that wins a partition");
    let theirs: BTreeSet<u32> = all()
        .into_iter()
        .filter(|p| rendezvous([a.id(), b.id()], *p) == Some(b.id()))
        .collect();
    eventually(15, "the second worker runs its share", || async {
        (b.partitions().into_iter().collect::<BTreeSet<_>>() == theirs).then_some(())
    })
    .await;
    for (room, seq) in send("b").await {
        want.entry(room).or_default().push(seq);
    }
    eventually(20, "the second round stored", || async {
        stored_exactly(&model, &want).await.ok()
    })
    .await;
    // It leaves; the first worker takes its partitions back and writes on.
    b.stop().await.unwrap();
    eventually(
        15,
        "the first worker runs every partition again",
        || async { (a.partitions().into_iter().collect::<BTreeSet<_>>() == all()).then_some(()) },
    )
    .await;
    for (room, seq) in send("c").await {
        want.entry(room).or_default().push(seq);
    }
    eventually(
        20,
        "every message stored exactly once, chains intact",
        || async { stored_exactly(&model, &want).await.ok() },
    )
    .await;
    a.stop().await.unwrap();
}
