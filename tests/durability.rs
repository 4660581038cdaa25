//! Durability of the store writer across a hard crash of a real worker process: a
//! `chatmesh worker` killed with SIGKILL while messages stream in (so in the middle of a
//! batch) loses no message JetStream acked; a new worker on the same data dir gets the
//! unacked ones redelivered and stores each exactly once, with an intact `prev` chain.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, consumer::pull, message::PublishMessage};
use chatmesh_protocol::message::Payload;
use chatmesh_protocol::names::dedupe_id;
use chatmesh_protocol::subjects::{in_subject, store_consumer};
use chatmesh_protocol::MeshConfig;
use chatmesh_workers::model::{HistoryQuery, Model};
use chatmesh_workers::{open_store, WorkerConfig};
use tokio::process::{Child, Command};

const PARTITIONS: u32 = 4;
const ROOMS: [&str; 5] = ["general", "random", "rust", "nats", "ops-1"];
const TOTAL: usize = 6_000;
const KILL_AT: usize = 2_000;

fn worker(nats_url: &str, data: &Path) -> Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_chatmesh"))
        .arg("worker")
        .env("CHATMESH__MESH__NATS_URLS", format!("[\"{nats_url}\"]"))
        .env("CHATMESH__MESH__PARTITIONS", PARTITIONS.to_string())
        .env("CHATMESH__WORKER__DATA_DIR", data)
        .env("CHATMESH__WORKER__BATCH_MAX_MESSAGES", "256")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting chatmesh worker")
}

async fn signal(child: &Child, sig: &str) -> Result<()> {
    let pid = child.id().context("worker already reaped")?;
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill {sig} {pid} failed");
    Ok(())
}

/// Publishes messages `from..to` like a gateway (Nats-Msg-Id) with up to 200 PubAcks in
/// flight; returns the acked seqs per room.
async fn publish(js: &jetstream::Context, from: usize, to: usize) -> Result<Vec<(String, u64)>> {
    let mut acked = Vec::new();
    for wave in (from..to).collect::<Vec<_>>().chunks(200) {
        let mut pending = Vec::new();
        for &i in wave {
            let room = ROOMS[i % ROOMS.len()];
            let id = format!("{room}-{i}");
            let payload = Payload {
                id: id.clone(),
                from: "ann".into(),
                ts: 1,
                body: format!("body {i}"),
                attachments: Vec::new(),
                mentions: Default::default(),
                ..Default::default()
            };
            let msg = PublishMessage::build()
                .payload(serde_json::to_vec(&payload)?.into())
                .message_id(dedupe_id("ann", room, &id));
            let ack = js.send_publish(in_subject(PARTITIONS, room), msg).await?;
            pending.push((room, ack));
        }
        for (room, ack) in pending {
            let ack = ack.await?;
            anyhow::ensure!(!ack.duplicate, "unexpected duplicate");
            acked.push((room.to_owned(), ack.sequence));
        }
    }
    Ok(acked)
}

/// True once every partition's store consumer has nothing pending or unacked.
async fn all_acked(js: &jetstream::Context) -> Result<bool> {
    let stream = js.get_stream("CHAT").await?;
    for p in 0..PARTITIONS {
        let Ok(mut c) = stream
            .get_consumer::<pull::Config>(&store_consumer(p))
            .await
        else {
            return Ok(false);
        };
        // A starting worker may replace its consumer between the two calls.
        let Ok(info) = c.info().await else {
            return Ok(false);
        };
        if info.num_pending > 0 || info.num_ack_pending > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Messages the store consumers have not had acked yet (pending or delivered, unacked).
async fn in_flight(js: &jetstream::Context) -> Result<u64> {
    let stream = js.get_stream("CHAT").await?;
    let mut n = 0;
    for p in 0..PARTITIONS {
        if let Ok(mut c) = stream
            .get_consumer::<pull::Config>(&store_consumer(p))
            .await
        {
            if let Ok(info) = c.info().await {
                n += info.num_pending + info.num_ack_pending as u64;
            }
        }
    }
    Ok(n)
}

/// True once some store consumer has acked a batch (the worker is storing).
async fn stored_some(js: &jetstream::Context) -> Result<bool> {
    let stream = js.get_stream("CHAT").await?;
    for p in 0..PARTITIONS {
        if let Ok(mut c) = stream
            .get_consumer::<pull::Config>(&store_consumer(p))
            .await
        {
            if c.info()
                .await
                .is_ok_and(|i| i.ack_floor.stream_sequence > 0)
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

async fn until<F, Fut>(secs: u64, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await? {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A worker SIGKILLed mid-stream loses no acked message: after a restart on the same data
/// dir every acked message is stored exactly once, in order, with an intact prev chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_loses_and_duplicates_nothing() -> Result<()> {
    let server = natsd::NatsServer::start_temp().await?;
    let nats = server.connect().await?;
    let js = jetstream::new(nats.clone());
    let mesh = MeshConfig {
        nats_urls: vec![server.url()],
        partitions: PARTITIONS,
        ..MeshConfig::default()
    };
    chatmesh_workers::ensure_stream(&js, &mesh).await?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("store");

    let mut first = worker(&server.url(), &data)?;
    let mut acked = publish(&js, 0, KILL_AT).await?;
    until(60, "the first worker to be storing", || stored_some(&js)).await?;
    // Keep publishing while the worker is killed, so it dies with a batch in hand.
    let tail = {
        let js = js.clone();
        tokio::spawn(async move { publish(&js, KILL_AT, TOTAL).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let unstored = in_flight(&js).await?;
    signal(&first, "-KILL").await?;
    let status = first.wait().await?;
    anyhow::ensure!(!status.success(), "the worker was killed: {status:?}");
    acked.extend(tail.await??);
    anyhow::ensure!(unstored > 0, "the kill came after everything was stored");
    println!("killed with {unstored} messages delivered-but-unacked or pending");

    let mut second = worker(&server.url(), &data)?;
    until(120, "every message acked by the new worker", || {
        all_acked(&js)
    })
    .await?;
    signal(&second, "-TERM").await?;
    let status = second.wait().await?;
    anyhow::ensure!(status.success(), "graceful stop: {status:?}");

    let mut want: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (room, seq) in acked {
        want.entry(room).or_default().push(seq);
    }
    let cfg = WorkerConfig {
        data_dir: data,
        ..WorkerConfig::default()
    };
    let model = Model::new(open_store(&cfg).await?);
    let mut total = 0;
    for (room, mut seqs) in want {
        seqs.sort_unstable();
        let q = HistoryQuery {
            before: None,
            after: Some(0),
            limit: TOTAL + 1,
        };
        let (msgs, _) = model.history(&room, q).await?;
        let got: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
        anyhow::ensure!(
            got == seqs,
            "{room}: stored {} of {}",
            got.len(),
            seqs.len()
        );
        let mut prev = 0;
        let mut ids = HashSet::new();
        for m in &msgs {
            anyhow::ensure!(
                m.prev == prev,
                "{room}: seq {} prev {} != {prev}",
                m.seq,
                m.prev
            );
            anyhow::ensure!(ids.insert(m.id.clone()), "{room}: {} stored twice", m.id);
            prev = m.seq;
        }
        let stats = model.stats(&room).await?;
        anyhow::ensure!(stats.count == seqs.len() as u64 && stats.last_seq == prev);
        total += msgs.len();
    }
    anyhow::ensure!(total == TOTAL, "stored {total} of {TOTAL}");
    Ok(())
}
