//! A hot standby on the embedded store, and the worker's cache metrics, against a real fjall
//! store (and a real nats-server for the worker): a second opener of a locked store fails
//! clearly unless it is a standby; a standby waits, reports itself in
//! `chatmesh_worker_standby`, stops when asked, and opens the store as soon as its holder
//! lets go. Every cache lookup of a running worker is counted by cache and result.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chatmesh_protocol::service::*;
use chatmesh_protocol::ErrorCode;
use chatmesh_workers::model::Model;
use chatmesh_workers::store::{FjallStore, WriteBatch};
use chatmesh_workers::{open_store, open_store_or_wait, KvStore, StoreError, Worker};
use common::mesh::{call, js, mesh, publish};
use common::{config, creds, eventually};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tokio_util::sync::CancellationToken;

/// A recorder that keeps every counter and gauge in an atomic, by `name{label="value",...}`.
#[derive(Clone, Default)]
struct Values(Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>);

impl Values {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = if labels.is_empty() {
            key.name().to_owned()
        } else {
            format!("{}{{{}}}", key.name(), labels.join(","))
        };
        let mut map = self.0.lock().unwrap();
        map.entry(name).or_default().clone()
    }

    fn counter(&self, name: &str) -> u64 {
        let map = self.0.lock().unwrap();
        map.get(name).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        let map = self.0.lock().unwrap();
        map.get(name)
            .map(|c| f64::from_bits(c.load(Ordering::Relaxed)))
    }
}

impl Recorder for Values {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// The process-wide recorder (installed once; tests of one binary share it).
fn values() -> &'static Values {
    static VALUES: OnceLock<Values> = OnceLock::new();
    VALUES.get_or_init(|| {
        let v = Values::default();
        metrics::set_global_recorder(v.clone()).expect("no other recorder");
        v
    })
}

const STANDBY: &str = "chatmesh_worker_standby";

/// Without `standby` a locked store is an error at once; a standby waits (gauge 1), can be
/// stopped while waiting, and opens the store — with what the holder wrote — as soon as the
/// holder closes it (gauge 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_waits_for_the_store_and_takes_it_over() {
    let values = values();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let holder = open_store(&cfg).await.unwrap();
    let mut batch = WriteBatch::new();
    batch.put(b"k".to_vec(), b"written by the holder".to_vec());
    holder.write(batch).await.unwrap();

    // The cheap probe a standby uses sees the holder (and stays right if fjall renames its
    // lock file: then this fails).
    assert!(FjallStore::held_elsewhere(dir.path()));
    let empty = tempfile::tempdir().unwrap();
    assert!(!FjallStore::held_elsewhere(empty.path()));

    // Not a standby: a clear error, immediately.
    let t = Instant::now();
    let Err(err) = open_store_or_wait(&cfg, std::future::pending()).await else {
        panic!("a locked store is an error without standby");
    };
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    let standby_cfg = chatmesh_workers::WorkerConfig {
        standby: true,
        ..cfg.clone()
    };
    // A standby asked to stop while waiting returns at once, without the store.
    let stop = CancellationToken::new();
    let waiting = tokio::spawn({
        let (cfg, stop) = (standby_cfg.clone(), stop.clone());
        async move { open_store_or_wait(&cfg, stop.cancelled_owned()).await }
    });
    eventually(5, "the standby gauge", || async {
        (values.gauge(STANDBY) == Some(1.0)).then_some(())
    })
    .await;
    stop.cancel();
    let t = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("a stopped standby returns within a retry period")
        .unwrap()
        .unwrap();
    assert!(got.is_none(), "a stopped standby has no store");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // A standby that keeps waiting takes the store once the holder lets go.
    let waiting = tokio::spawn({
        let cfg = standby_cfg.clone();
        async move { open_store_or_wait(&cfg, std::future::pending()).await }
    });
    let mut waiting = std::pin::pin!(waiting);
    // It is still waiting while the holder lives (several retries).
    assert!(
        tokio::time::timeout(Duration::from_millis(800), &mut waiting)
            .await
            .is_err(),
        "the standby opened a store another opener holds"
    );
    assert_eq!(values.gauge(STANDBY), Some(1.0));
    holder.flush().await.unwrap();
    drop(holder);
    let released = Instant::now();
    let store = tokio::time::timeout(Duration::from_secs(10), &mut waiting)
        .await
        .expect("the standby takes the store within 10 s of its release")
        .unwrap()
        .unwrap()
        .expect("a store");
    let took = released.elapsed();
    assert!(
        FjallStore::held_elsewhere(dir.path()),
        "the standby holds the store now"
    );
    println!("standby opened the store {took:?} after the holder closed it");
    assert_eq!(
        store.get(b"k").await.unwrap().as_deref(),
        Some(&b"written by the holder"[..])
    );
    assert_eq!(values.gauge(STANDBY), Some(0.0));
}

fn hits(values: &Values, cache: &str, result: &str) -> u64 {
    values.counter(&format!(
        "chatmesh_worker_cache_requests_total{{cache=\"{cache}\",result=\"{result}\"}}"
    ))
}

/// A running worker counts every lookup of its room, access, stats and page caches, as a hit
/// or a miss (a load from the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_cache_lookups_are_counted() {
    let values = values();
    let server = natsd::NatsServer::start_temp().await.unwrap();
    let nats = server.connect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let store = open_store(&cfg).await.unwrap();
    let worker = Worker::start(cfg, mesh(server.url()), nats.clone(), store.clone())
        .await
        .unwrap();
    eventually(10, "the worker is ready", || async {
        worker.ready().then_some(())
    })
    .await;

    call::<Register>(&nats, "ann", &creds("ann")).await.unwrap();
    let create = CreateRoomRequest {
        room: "cached".into(),
        kind: RoomKind::Public,
        actor: "ann".into(),
    };
    call::<CreateRoom>(&nats, "cached", &create).await.unwrap();
    let js = js(&nats);
    for i in 0..3 {
        publish(&js, "cached", "ann", &format!("cached-{i}")).await;
    }
    let history = HistoryRequest {
        room: "cached".into(),
        before: None,
        after: None,
        limit: 10,
    };
    eventually(10, "three stored messages", || async {
        let page = call::<History>(&nats, "cached", &history).await.ok()?;
        (page.messages.len() == 3).then_some(())
    })
    .await;

    let names = ["room", "access", "stats", "page"];
    let before: Vec<(u64, u64)> = names
        .iter()
        .map(|c| (hits(values, c, "hit"), hits(values, c, "miss")))
        .collect();
    for _ in 0..2 {
        let page = call::<History>(&nats, "cached", &history).await.unwrap();
        assert_eq!(page.messages.len(), 3);
    }
    let bob = RoomUserRequest {
        room: "cached".into(),
        user: "bob".into(),
    };
    for _ in 0..2 {
        let access = call::<GetAccess>(&nats, "cached", &bob).await.unwrap();
        assert_eq!(access.role, None);
    }
    let missing = HistoryRequest {
        room: "nosuchroom".into(),
        ..history.clone()
    };
    let err = call::<History>(&nats, "nosuchroom", &missing)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);

    let delta: HashMap<&str, (u64, u64)> = names
        .iter()
        .zip(&before)
        .map(|(c, (h, m))| {
            (
                *c,
                (hits(values, c, "hit") - h, hits(values, c, "miss") - m),
            )
        })
        .collect();
    // Two history reads and two access checks of an existing room: 4 room hits; the room
    // that does not exist is a miss (absent rooms are not cached).
    assert_eq!(delta["room"], (4, 1), "{delta:?}");
    // bob's role: loaded once, then served from the cache.
    assert_eq!(delta["access"], (1, 1), "{delta:?}");
    // The store writer put the room's stats; every reader finds them.
    assert_eq!(delta["stats"], (4, 0), "{delta:?}");
    // The recent page holds the 3 messages (extended by the writer): both reads are hits.
    assert_eq!(delta["page"], (2, 0), "{delta:?}");

    worker.stop().await.unwrap();
    // A fresh model over the same store still reads what the worker stored.
    let stats = Model::new(store).stats("cached").await.unwrap();
    assert_eq!(stats.count, 3);
}
