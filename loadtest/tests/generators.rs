//! Several generator processes share one run against a real embedded mesh (nats-server
//! child, worker, fjall store, gateway), coordinating over the mesh's own NATS: they pass
//! one start barrier, and generator 0 writes a merged report whose counts, connections and
//! histograms cover them all, with no loss and no duplicate.

mod common;

use std::path::{Path, PathBuf};

use chatmesh::Mesh;
use common::read;
use serde_json::Value;

const GENERATORS: usize = 3;

/// Runs `n` generators of one run (`run_id`) with `args` (options, then the scenario) and
/// waits for all; the report directory.
async fn run_generators(mesh: &Mesh, dir: &Path, run_id: &str, n: usize, args: &[&str]) -> PathBuf {
    let target = format!("http://{}", mesh.gateway.addr);
    let out = dir.join("report");
    let mut children = Vec::new();
    for g in 0..n {
        let child = common::harness(&target, dir, &out)
            .args(["--run-id", run_id, "--coordinator"])
            .arg(mesh.nats.url())
            .arg("--coordinator-nkey")
            .arg(mesh.creds.seed_file(chatmesh_protocol::bus::Role::Loadtest))
            .args([
                "--generators",
                &n.to_string(),
                "--generator",
                &g.to_string(),
            ])
            .args(["--duration", "3s", "--warmup", "1s", "--grace", "15s"])
            .args(["--progress-secs", "0"])
            .args(args)
            .spawn()
            .expect("loadtest binary runs");
        children.push(child);
    }
    for (g, child) in children.into_iter().enumerate() {
        common::finish(child, &format!("generator {g}")).await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_generators_make_one_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh = common::mesh(dir.path()).await;
    let thresholds = ["--threshold", "loss==0", "--threshold", "duplicates==0"];
    // 6 rooms of 5: generator g drives rooms g and g + 3.
    let fanout = ["fanout", "--rooms", "6", "--members", "5", "--rate", "60"];
    let args: Vec<&str> = thresholds
        .into_iter()
        .chain(["--threshold", "errors==0"])
        .chain(fanout)
        .collect();
    let out = run_generators(&mesh, dir.path(), "gentest", GENERATORS, &args).await;

    let merged = read(&out.join("summary.json"));
    assert_eq!(merged["generators"], GENERATORS as u64);
    assert_eq!(merged["connections"]["held"], 30, "{merged:#}");
    assert_eq!(merged["connections"]["planned"], 30);
    let counts = &merged["counts"];
    assert_eq!(counts["loss"], 0, "{merged:#}");
    assert_eq!(counts["duplicates"], 0);
    assert_eq!(counts["errors"], 0);
    // 60/s for 3 s over 6 publishers, each message to the 5 members of its room.
    assert_eq!(counts["scheduled"], 180);
    assert_eq!(counts["acked"], 180, "{merged:#}");
    assert_eq!(counts["delivered"], 900, "{merged:#}");
    assert_eq!(counts["expected_deliveries"], 900);
    // Latencies come from the merged histograms: every timed delivery of all three.
    let own: Vec<Value> = (0..GENERATORS)
        .map(|g| read(&out.join(format!("generator-{g}")).join("summary.json")))
        .collect();
    let timed: u64 = own
        .iter()
        .map(|s| s["latency_ms"]["deliver"]["count"].as_u64().unwrap_or(0))
        .sum();
    assert!(timed > 0);
    assert_eq!(merged["latency_ms"]["deliver"]["count"], timed);
    assert_eq!(merged["generator_parts"].as_array().map(Vec::len), Some(3));
    for (g, s) in own.iter().enumerate() {
        assert_eq!(s["connections"]["held"], 10, "generator {g}: {s:#}");
        assert_eq!(s["counts"]["delivered"], 300, "generator {g}");
        // One barrier: the same start for all.
        assert_eq!(s["started_unix_s"], own[0]["started_unix_s"]);
    }
    mesh.stop().await.expect("mesh stops");
}

/// `history` with two generators: each fills only the rooms it drives (two fillers of one
/// room would interleave their messages), and every page both read passes its checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_generators_share_a_history_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mesh = common::mesh(dir.path()).await;
    let target = format!("http://{}", mesh.gateway.addr);
    let args = [
        "--threshold",
        "errors==0",
        "--threshold",
        "history_failed==0",
        "history",
        "--rooms",
        "4",
        "--readers",
        "4",
        "--messages-per-room",
        "120",
        "--page",
        "50",
        "--rate",
        "40",
    ];
    let out = run_generators(&mesh, dir.path(), "genhist", 2, &args).await;
    let merged = read(&out.join("summary.json"));
    let c = &merged["counts"];
    assert_eq!(merged["generators"], 2);
    assert_eq!(c["errors"], 0, "{merged:#}");
    assert_eq!(c["history_failed"], 0, "{merged:#}");
    assert!(c["history_pages"].as_u64() > Some(0), "{merged:#}");
    for g in 0..2 {
        let own = read(&out.join(format!("generator-{g}")).join("summary.json"));
        assert!(
            own["counts"]["history_pages"].as_u64() > Some(0),
            "generator {g} read nothing: {own:#}"
        );
    }
    // Each room holds exactly one fill: 120 messages, not two fillers' worth.
    let api = reqwest::Client::new();
    let login = api
        .post(format!("{target}/v1/auth/login"))
        .json(&serde_json::json!({"username": "lt-0", "password": "loadtest-password"}))
        .send()
        .await
        .expect("login");
    let token: Value = login.json().await.expect("login answer");
    let token = token["token"].as_str().expect("token").to_owned();
    for r in 0..4 {
        let room = format!("lt-genhist-{r}");
        let (mut count, mut before) = (0, None::<u64>);
        loop {
            let mut url = format!("{target}/v1/rooms/{room}/messages?limit=100");
            if let Some(b) = before {
                url += &format!("&before={b}");
            }
            let page: Value = api
                .get(url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("history")
                .json()
                .await
                .expect("history answer");
            let msgs = page["messages"].as_array().expect("messages");
            count += msgs.len();
            before = msgs.first().and_then(|m| m["seq"].as_u64());
            if page["more"] != true || msgs.is_empty() {
                break;
            }
        }
        assert_eq!(count, 120, "{room} holds {count} messages, one fill is 120");
    }
    mesh.stop().await.expect("mesh stops");
}
