//! The load-test harness as a fault test's traffic: `chatmesh-loadtest --reconnect` (in this
//! process) runs a fan-out at a steady rate through HAProxy beside the test's own checked
//! client, while the test kills a part. Its clients reconnect and resume like real ones, and
//! its summary must show every acked message delivered to every member once, in order.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use clap::Parser as _;
use serde_json::Value;
use tokio::task::JoinHandle;

use chatmesh_loadtest::cli::Cli;

/// Rooms × members of the harness's fan-out, and its total send rate.
const ROOMS: usize = 2;
const MEMBERS: usize = 4;
const RATE: u32 = 20;

/// A harness run in progress.
pub struct Harness {
    task: JoinHandle<Result<bool>>,
    out: tempfile::TempDir,
}

impl Harness {
    /// Starts a `duration` run against `entry`; rooms are `lt-<run_id>-<i>`.
    pub fn start(entry: &str, run_id: &str, duration: Duration) -> Result<Self> {
        let out = tempfile::tempdir()?;
        let (rooms, members, rate) = (ROOMS.to_string(), MEMBERS.to_string(), RATE.to_string());
        let secs = format!("{}s", duration.as_secs());
        let out_dir = out.path().join("report");
        let tokens = out.path().join("tokens");
        let args: Vec<&str> = vec![
            "chatmesh-loadtest",
            "--target",
            entry,
            "--run-id",
            run_id,
            "--user-prefix",
            run_id,
            "--reconnect",
            "--duration",
            &secs,
            "--warmup",
            "1s",
            "--grace",
            "40s",
            "--progress-secs",
            "5",
            "--out",
            out_dir.to_str().context("temp path")?,
            "--token-dir",
            tokens.to_str().context("temp path")?,
            "fanout",
            "--rooms",
            &rooms,
            "--members",
            &members,
            "--rate",
            &rate,
        ];
        let cli = Cli::try_parse_from(args)?;
        // On a runtime of its own, as the binary runs it (and so that the harness's own
        // tasks do not compete with the test's on one scheduler).
        let task = tokio::task::spawn_blocking(move || {
            tokio::runtime::Runtime::new()?.block_on(chatmesh_loadtest::run::run(cli))
        });
        Ok(Self { task, out })
    }

    /// Connections the harness holds once it is up.
    pub fn connections() -> u64 {
        (ROOMS * MEMBERS) as u64
    }

    /// Waits for the run to end; its summary, judged: no loss, no duplicate, no `prev` break,
    /// no connection given up, every scheduled send acked and delivered to every member.
    pub async fn finish(self) -> Result<Value> {
        tokio::time::timeout(Duration::from_secs(180), self.task)
            .await
            .context("the harness did not finish in 180 s")???;
        let path = self.out.path().join("report/summary.json");
        let s: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let c = &s["counts"];
        let lat = &s["latency_ms"];
        println!(
            "load harness: {} sent, {} acked, {} delivered of {} expected, loss {}, duplicates {}, \
             prev breaks {}, {} resent, {} reconnects (max {} ms), ack p99 {} ms, deliver p99 {} ms, \
             errors {}",
            c["sent"], c["acked"], c["delivered"], c["expected_deliveries"], c["loss"],
            c["duplicates"], c["prev_breaks"], c["resent"], lat["reconnect"]["count"],
            lat["reconnect"]["max"], lat["ack"]["p99"], lat["deliver"]["p99"], s["errors"]
        );
        for figure in ["loss", "duplicates", "prev_breaks"] {
            ensure!(c[figure] == 0, "harness {figure} = {}: {s:#}", c[figure]);
        }
        ensure!(
            s["connections"]["dropped"] == 0,
            "harness dropped connections: {s:#}"
        );
        ensure!(
            c["acked"] == c["scheduled"] && c["delivered"] == c["expected_deliveries"],
            "harness: not every send acked and delivered: {s:#}"
        );
        Ok(s)
    }
}

/// Waits until the gateways behind HAProxy hold at least `n` sessions.
pub async fn wait_sessions(net: &str, n: u64, within: Duration) -> Result<()> {
    let url = format!("http://{net}.2:8404/metrics");
    let deadline = std::time::Instant::now() + within;
    loop {
        let text = reqwest::get(&url).await?.text().await?;
        let held: u64 = text
            .lines()
            .filter(|l| {
                l.starts_with("haproxy_server_current_sessions{") && l.contains("server=\"gw")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum();
        if held >= n {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{held} sessions behind HAProxy after {within:?}, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
