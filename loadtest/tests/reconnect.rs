//! `--reconnect` against a real embedded mesh through a TCP relay the test can cut: every
//! client connection is severed twice in the middle of a fan-out run, as a gateway crash
//! would. The harness must reconnect, resume with `since`, resend unacked sends with their
//! ids, and still find every acked message delivered to every member exactly once. And with
//! nats-server stopped for a while, sends the gateway refuses with `unavailable` are resent
//! until every one is stored.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards every accepted connection to `to`; `cut()` severs all open ones.
struct Relay {
    addr: std::net::SocketAddr,
    open: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(to: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let open: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = open.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().expect("relay list").push(pipe);
            }
        });
        Self { addr, open, accept }
    }

    /// Drops every relayed connection (both sockets close at once).
    fn cut(&self) -> usize {
        let all: Vec<_> = self.open.lock().expect("relay list").drain(..).collect();
        let n = all.iter().filter(|h| !h.is_finished()).count();
        for h in all {
            h.abort();
        }
        n
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resume_exactly_after_their_connections_are_cut() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh = common::mesh(dir.path()).await;
    let relay = Relay::start(mesh.gateway.addr).await;
    let out = dir.path().join("report");
    let mut child = common::harness(&format!("http://{}", relay.addr), dir.path(), &out)
        .args([
            "--reconnect",
            "--duration",
            "8s",
            "--warmup",
            "1s",
            "--grace",
            "20s",
        ])
        .args(["--progress-secs", "1", "--threshold", "loss==0"])
        .args([
            "--threshold",
            "duplicates==0",
            "--threshold",
            "prev_breaks==0",
        ])
        .args(["fanout", "--rooms", "2", "--members", "5", "--rate", "100"])
        .spawn()
        .expect("loadtest binary runs");
    let stderr = child.stderr.take().expect("stderr");
    let (run_tx, mut run_rx) = tokio::sync::mpsc::channel::<()>(64);
    let log = Arc::new(Mutex::new(String::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("[run]") {
                let _ = run_tx.try_send(());
            }
            log2.lock().expect("log").push_str(&(line + "\n"));
        }
    });
    // Two cuts inside the measured phase: after its 2nd and 5th progress second.
    let mut cuts = Vec::new();
    for after in [2, 3] {
        for _ in 0..after {
            tokio::time::timeout(Duration::from_secs(120), run_rx.recv())
                .await
                .expect("the run makes progress")
                .expect("the harness is running");
        }
        cuts.push(relay.cut());
    }
    let done = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the harness finishes")
        .expect("harness output");
    let log = log.lock().expect("log").clone();
    assert!(
        done.status.success(),
        "harness failed ({}):\n{}\n{log}",
        done.status,
        String::from_utf8_lossy(&done.stdout)
    );
    // All ten WebSockets were open at each cut (and perhaps a metrics scrape).
    assert!(cuts.iter().all(|&n| n >= 10), "cut {cuts:?}");
    let s: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("summary is JSON");
    let c = &s["counts"];
    assert_eq!(c["loss"], 0, "{s:#}");
    assert_eq!(c["duplicates"], 0, "{s:#}");
    assert_eq!(c["prev_breaks"], 0, "{s:#}");
    assert_eq!(c["scheduled"], 800);
    assert_eq!(c["acked"], 800, "{s:#}");
    assert_eq!(c["delivered"], 4000, "{s:#}");
    assert_eq!(s["connections"]["dropped"], 0);
    // Every connection came back after each cut.
    assert!(
        s["latency_ms"]["reconnect"]["count"].as_u64() >= Some(20),
        "{s:#}"
    );
    mesh.stop().await.expect("mesh stops");
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// The bus stops answering for 2 s (nats-server SIGSTOPped) with a gateway that admits only
/// 4 sends in flight: sends past them are refused with `unavailable`, and the client resends
/// them (same ids) until each is stored and delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sends_are_resent_until_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh = common::mesh_with(dir.path(), |c| {
        c.gateway.max_inflight_sends = 4;
        c.gateway.admission_wait_ms = 10;
    })
    .await;
    let nats = mesh.nats.pid().expect("nats-server runs");
    let out = dir.path().join("report");
    let mut child = common::harness(&mesh.url(), dir.path(), &out)
        .args(["--reconnect", "--duration", "6s", "--warmup", "1s"])
        .args(["--grace", "30s", "--progress-secs", "1"])
        .args(["fanout", "--rooms", "2", "--members", "3", "--rate", "50"])
        .spawn()
        .expect("loadtest binary runs");
    let stderr = child.stderr.take().expect("stderr");
    let (run_tx, mut run_rx) = tokio::sync::mpsc::channel::<()>(64);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("[run]") {
                let _ = run_tx.try_send(());
            }
        }
    });
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(120), run_rx.recv())
            .await
            .expect("the run makes progress")
            .expect("the harness is running");
    }
    signal(nats, "STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(nats, "CONT");
    let done = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the harness finishes")
        .expect("harness output");
    assert!(done.status.success(), "harness failed ({})", done.status);
    let s: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary"))
            .expect("summary is JSON");
    let c = &s["counts"];
    assert!(
        s["errors"]["unavailable"].as_u64() > Some(0),
        "no send was refused: the test did not test anything: {s:#}"
    );
    assert!(c["resent"].as_u64() > Some(0), "{s:#}");
    assert_eq!(
        c["acked"], c["scheduled"],
        "refused sends never stored: {s:#}"
    );
    assert_eq!(c["delivered"], c["expected_deliveries"], "{s:#}");
    assert_eq!(c["loss"], 0, "{s:#}");
    assert_eq!(c["duplicates"], 0, "{s:#}");
    assert_eq!(c["prev_breaks"], 0, "{s:#}");
    mesh.stop().await.expect("mesh stops");
}
