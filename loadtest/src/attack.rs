//! The goose side of a run: one goose user per shard, running two transactions once
//! (`--iterations 1`): `connect` opens the shard's connections inside the transaction and
//! records each handshake, `record` then feeds every timing the shard's connections report
//! into goose (`record_custom_request_duration`) and into the shard's HdrHistograms until
//! the run stops. goose's HTML/JSON/Markdown reports thus show every operation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt as _};
use goose::config::GooseConfiguration;
use goose::prelude::*;

use crate::cli::Protocol;
use crate::engine::Engine;
use crate::stats::{Counters, Hists, Kind, Sample};
use crate::{conn, natsws};

/// goose's method label for every WebSocket operation.
const METHOD: &str = "WS";

/// Runs the goose attack over `engine`; returns when every shard's user is done.
pub async fn run(engine: Arc<Engine>, reports: Vec<String>) -> anyhow::Result<()> {
    let shards = engine.shard_count();
    let mut config = GooseConfiguration::default();
    config.host = Some(engine.common.target.clone());
    config.users = Some(shards);
    config.increase_rate = Some(shards.to_string());
    config.iterations = Some(1);
    config.report_file = reports;
    config.no_print_metrics = true;
    config.quiet = 1;
    // No telnet or WebSocket controllers: runs are scripted, and parallel runs would clash
    // on their fixed ports.
    config.no_telnet = true;
    config.no_websocket = true;
    let e1 = engine.clone();
    let connect: TransactionFunction =
        Arc::new(move |user| Box::pin(connect_shard(e1.clone(), user)));
    let e2 = engine.clone();
    let record: TransactionFunction =
        Arc::new(move |user| Box::pin(record_shard(e2.clone(), user)));
    let scenario = scenario!("chatmesh")
        .register_transaction(
            Transaction::new(connect)
                .set_name("connect")
                .set_sequence(1),
        )
        .register_transaction(Transaction::new(record).set_name("run").set_sequence(2));
    GooseAttack::initialize_with_config(config)?
        .register_scenario(scenario)
        .execute()
        .await?;
    Ok(())
}

async fn record(user: &mut GooseUser, s: Sample, ok: bool, err: Option<&str>) -> TransactionResult {
    let d = Duration::from_micros(s.us);
    user.record_custom_request_duration(METHOD, s.kind.name(), d, ok, None, err)
        .await
}

/// Opens this shard's connections (paced by `ramp_rate`), then marks the shard ready.
async fn connect_shard(engine: Arc<Engine>, user: &mut GooseUser) -> TransactionResult {
    let s = user.weighted_users_index % engine.shard_count();
    let tx = engine.shards[s].tx.lock().ok().and_then(|mut t| t.take());
    let Some(tx) = tx else {
        return Ok(());
    };
    let mut hists = Hists::new().map_err(custom)?;
    let conns: Vec<usize> = engine.shard_conns(s).collect();
    let concurrency = engine.common.connect_concurrency.max(1);
    let ramp_start = tokio::time::Instant::now();
    let e = engine.clone();
    let mut opened = stream::iter(conns)
        .map(move |c| {
            let e = e.clone();
            async move {
                if e.plan.ramp_rate > 0.0 {
                    let at = Duration::from_secs_f64(c as f64 / e.plan.ramp_rate);
                    tokio::time::sleep_until(ramp_start + at).await;
                }
                let started = Instant::now();
                let opened = match e.common.protocol {
                    Protocol::Chatmesh => conn::open(&e, c).await,
                    Protocol::NatsWs => natsws::open(&e, c).await,
                };
                (c, opened, started.elapsed())
            }
        })
        .buffer_unordered(concurrency);
    while let Some((c, result, took)) = opened.next().await {
        match result {
            Ok((socket, last_seq, samples)) => {
                for sample in samples {
                    hists.record(sample);
                    record(user, sample, true, None).await?;
                }
                Counters::add(&engine.counters.connections, 1);
                let (e, tx) = (engine.clone(), tx.clone());
                match engine.common.protocol {
                    Protocol::Chatmesh if e.common.reconnect => {
                        tokio::spawn(crate::resume::run(e, c, socket, last_seq, tx))
                    }
                    Protocol::Chatmesh => tokio::spawn(conn::run(e, c, socket, last_seq, tx)),
                    Protocol::NatsWs => tokio::spawn(natsws::run(e, c, socket, last_seq, tx)),
                };
            }
            Err(why) => {
                Counters::add(&engine.counters.connect_failures, 1);
                engine.counters.error("connect_failed");
                let sample = Sample {
                    kind: Kind::Connect,
                    us: took.as_micros() as u64,
                };
                record(user, sample, false, Some(&format!("{why:#}"))).await?;
            }
        }
    }
    engine.merge(&hists);
    engine.shard_ready();
    Ok(())
}

/// Records every sample of this shard until its connections have all stopped.
async fn record_shard(engine: Arc<Engine>, user: &mut GooseUser) -> TransactionResult {
    let s = user.weighted_users_index % engine.shard_count();
    let rx = engine.shards[s].rx.lock().ok().and_then(|mut r| r.take());
    let Some(mut rx) = rx else {
        return Ok(());
    };
    let mut hists = Hists::new().map_err(custom)?;
    let every = engine.common.goose_sample.max(1);
    let mut n: u64 = 0;
    while let Some(batch) = rx.recv().await {
        for sample in batch {
            hists.record(sample);
            if sample.kind != Kind::Deliver || n.is_multiple_of(every) {
                record(user, sample, true, None).await?;
            }
            n += u64::from(sample.kind == Kind::Deliver);
        }
    }
    engine.merge(&hists);
    Ok(())
}

fn custom(e: impl std::fmt::Display) -> Box<TransactionError> {
    Box::new(TransactionError::Custom(e.to_string()))
}
