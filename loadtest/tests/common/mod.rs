//! Support for the harness's integration tests: a real embedded mesh (nats-server child,
//! worker, fjall store, gateway) with load-test limits, the harness binary as a child
//! process with the options every test shares, and its summaries read back.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use chatmesh::{Config, Mesh, MeshOptions};
use serde_json::Value;

/// A mesh in `dir/mesh` with send limits out of the way and cheap password hashing.
pub async fn mesh(dir: &Path) -> Mesh {
    mesh_with(dir, |_| {}).await
}

/// Like [`mesh`], with the config changed by `edit` last.
pub async fn mesh_with(dir: &Path, edit: impl FnOnce(&mut Config)) -> Mesh {
    let mut config = Config::for_tests();
    edit(&mut config);
    Mesh::start(MeshOptions::local(dir.join("mesh"), config))
        .await
        .expect("mesh starts")
}

/// `chatmesh-loadtest --target T --out OUT --token-dir DIR/tokens`, output captured; add
/// the run's own options and the scenario.
pub fn harness(target: &str, dir: &Path, out: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatmesh-loadtest"));
    cmd.args(["--target", target, "--out"])
        .arg(out)
        .arg("--token-dir")
        .arg(dir.join("tokens"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Waits (at most 240 s) for a harness child; fails the test with its output unless it
/// exited 0.
pub async fn finish(child: tokio::process::Child, what: &str) -> Output {
    let done = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in 240 s"))
        .expect("harness output");
    assert!(
        done.status.success(),
        "{what} failed ({}):\n{}\n{}",
        done.status,
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    done
}

/// A summary.json.
pub fn read(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).expect("summary.json is JSON")
}
