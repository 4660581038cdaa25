//! The run's clock: waits for every shard to connect, sets the common start, prints a
//! progress line while the schedule runs, waits (bounded by `--grace`) for outstanding acks
//! and deliveries, then raises the stop signal. Every wait here has a deadline.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_us;
use crate::coord::Coordinator;
use crate::engine::Engine;
use crate::stats::Counters;

/// How long all shards together may take to connect.
const CONNECT_DEADLINE: Duration = Duration::from_secs(900);
/// Lead time between "all connected" and the first scheduled send.
const LEAD: Duration = Duration::from_millis(500);

/// Phase timings of a run, for the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    pub connect_s: f64,
    /// Start of the measured phase, unix µs.
    pub t0_us: u64,
    pub measured_s: f64,
    pub drain_s: f64,
}

/// Drives one run; `hold` runs while every connection is up (e.g. a /metrics scrape). With
/// a coordinator, the start waits for every generator (the barrier); the coordinator is
/// handed back for the results.
pub async fn control<F>(
    engine: Arc<Engine>,
    hold: F,
    mut coord: Option<Coordinator>,
) -> (anyhow::Result<Phases>, Option<Coordinator>)
where
    F: std::future::Future<Output = ()>,
{
    let began = tokio::time::Instant::now();
    let progress = engine.common.progress_secs;
    let connecting = async {
        loop {
            tokio::time::sleep(Duration::from_secs(progress.max(1))).await;
            if progress > 0 {
                let c = &engine.counters;
                eprintln!(
                    "[connect] {:>6.1}s  held {}  failed {}  of {}",
                    began.elapsed().as_secs_f64(),
                    Counters::get(&c.connections),
                    Counters::get(&c.connect_failures),
                    engine.own_conns().count()
                );
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(CONNECT_DEADLINE, engine.all_ready()) => {}
        _ = connecting => {}
    }
    let connect_s = began.elapsed().as_secs_f64();
    let t0 = match coord.as_mut() {
        None => now_us() + LEAD.as_micros() as u64,
        Some(coord) => {
            let c = &engine.counters;
            let (held, failed) = (
                Counters::get(&c.connections),
                Counters::get(&c.connect_failures),
            );
            match coord.barrier(held, failed, LEAD, CONNECT_DEADLINE).await {
                Ok(t0) => t0,
                Err(e) => {
                    // Nothing will be sent: let every connection task end.
                    engine.stop.send_replace(true);
                    return (Err(e), None);
                }
            }
        }
    };
    engine.start.send_replace(Some(t0));
    let end = engine.instant_of(t0 + engine.common.duration.as_micros() as u64);
    let run = async {
        hold.await;
        tokio::time::sleep_until(end).await;
    };
    tokio::select! {
        _ = run => {}
        _ = print_progress(&engine, "run", t0) => {}
    }
    let measured_s = (now_us() - t0) as f64 / 1e6;
    let drained = tokio::time::Instant::now();
    let deadline = drained + engine.common.grace;
    while tokio::time::Instant::now() < deadline && !settled(&engine) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.stop.send_replace(true);
    let phases = Phases {
        connect_s,
        t0_us: t0,
        measured_s,
        drain_s: drained.elapsed().as_secs_f64(),
    };
    (Ok(phases), coord)
}

/// Every scheduled send answered (ack or error), every acked message delivered, and every
/// scheduled `history` page answered.
fn settled(engine: &Engine) -> bool {
    let c = &engine.counters;
    // With `--reconnect` a lost connection answers no send: its sends go out again.
    let errors = if engine.common.reconnect {
        c.error_total() - c.connection_errors()
    } else {
        c.error_total()
    };
    let answered = Counters::get(&c.acked) + errors;
    answered >= Counters::get(&c.sent)
        && Counters::get(&c.sent) >= engine.plan.scheduled()
        && Counters::get(&c.delivered) >= engine.plan.expected_deliveries()
        && Counters::get(&c.history_pages) + Counters::get(&c.history_failed)
            >= engine.plan.history_scheduled()
}

async fn print_progress(engine: &Engine, phase: &str, t0: u64) {
    let every = engine.common.progress_secs;
    if every == 0 {
        return std::future::pending().await;
    }
    let c = &engine.counters;
    let mut last = (0, 0, 0);
    loop {
        tokio::time::sleep(Duration::from_secs(every)).await;
        let now = (
            Counters::get(&c.sent),
            Counters::get(&c.acked),
            Counters::get(&c.delivered),
        );
        let per = |a: u64, b: u64| (a - b) as f64 / every as f64;
        eprintln!(
            "[{phase}] {:>6.1}s  conns {}  sent/s {:.0}  acked/s {:.0}  delivered/s {:.0}  dup {}  errors {}",
            now_us().saturating_sub(t0) as f64 / 1e6,
            Counters::get(&c.connections) - Counters::get(&c.dropped_connections),
            per(now.0, last.0),
            per(now.1, last.1),
            per(now.2, last.2),
            Counters::get(&c.duplicates),
            c.error_total(),
        );
        last = now;
    }
}
