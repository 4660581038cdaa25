//! Three generator processes share one fan-out run against a real embedded mesh (nats-server
//! child, worker, fjall store, gateway), coordinating over the mesh's own NATS: they pass
//! one start barrier, and generator 0 writes a merged report whose counts, connections and
//! histograms cover all three, with no loss and no duplicate.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chatmesh::{Config, Mesh, MeshOptions};
use serde_json::Value;

const GENERATORS: usize = 3;

fn read(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).expect("summary.json is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_generators_make_one_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.gateway.limits.sends_per_second = 100_000;
    config.gateway.limits.send_burst = 100_000;
    config.gateway.frames_per_second = 100_000;
    config.worker.argon2_memory_kib = 64;
    config.worker.argon2_iterations = 1;
    let mesh = Mesh::start(MeshOptions {
        data_dir: dir.path().join("mesh"),
        listen: "127.0.0.1:0".into(),
        nats_port: None,
        config,
    })
    .await
    .expect("mesh starts");
    let target = format!("http://{}", mesh.gateway.addr);
    let out = dir.path().join("report");
    let mut children = Vec::new();
    for g in 0..GENERATORS {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatmesh-loadtest"))
            .args(["--target", &target, "--run-id", "gentest", "--coordinator"])
            .arg(mesh.nats.url())
            .args(["--generators", &GENERATORS.to_string()])
            .args(["--generator", &g.to_string()])
            .arg("--out")
            .arg(&out)
            .arg("--token-dir")
            .arg(dir.path().join("tokens"))
            .args(["--duration", "3s", "--warmup", "1s", "--grace", "15s"])
            .args(["--progress-secs", "0", "--threshold", "loss==0"])
            .args(["--threshold", "duplicates==0", "--threshold", "errors==0"])
            // 6 rooms of 5: generator g drives rooms g and g + 3.
            .args(["fanout", "--rooms", "6", "--members", "5", "--rate", "60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("loadtest binary runs");
        children.push(child);
    }
    for (g, child) in children.into_iter().enumerate() {
        let done = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("generator {g} did not finish in 240 s"))
            .expect("generator output");
        assert!(
            done.status.success(),
            "generator {g} failed ({}):\n{}\n{}",
            done.status,
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        );
    }

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
    let mut config = Config::default();
    config.gateway.limits.sends_per_second = 100_000;
    config.gateway.limits.send_burst = 100_000;
    config.gateway.frames_per_second = 100_000;
    config.worker.argon2_memory_kib = 64;
    config.worker.argon2_iterations = 1;
    let mesh = Mesh::start(MeshOptions {
        data_dir: dir.path().join("mesh"),
        listen: "127.0.0.1:0".into(),
        nats_port: None,
        config,
    })
    .await
    .expect("mesh starts");
    let target = format!("http://{}", mesh.gateway.addr);
    let out = dir.path().join("report");
    let mut children = Vec::new();
    for g in 0..2 {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatmesh-loadtest"))
            .args(["--target", &target, "--run-id", "genhist", "--coordinator"])
            .arg(mesh.nats.url())
            .args(["--generators", "2", "--generator", &g.to_string()])
            .arg("--out")
            .arg(&out)
            .arg("--token-dir")
            .arg(dir.path().join("tokens"))
            .args(["--duration", "3s", "--warmup", "1s", "--grace", "15s"])
            .args(["--progress-secs", "0", "--threshold", "errors==0"])
            .args(["--threshold", "history_failed==0"])
            .args(["history", "--rooms", "4", "--readers", "4"])
            .args(["--messages-per-room", "120", "--page", "50", "--rate", "40"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("loadtest binary runs");
        children.push(child);
    }
    for (g, child) in children.into_iter().enumerate() {
        let done = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("generator {g} did not finish in 240 s"))
            .expect("generator output");
        assert!(
            done.status.success(),
            "generator {g} failed ({}):\n{}\n{}",
            done.status,
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        );
    }
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
