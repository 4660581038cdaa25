//! `chatmesh up` as a child process, as an operator runs it: started on a free port, its web
//! client URL read from its stdout, and every process it started ended when a test is done
//! (or fails) with it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// The `chatmesh` binary of this build.
pub fn chatmesh() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chatmesh"))
}

/// `chatmesh up` on a free port with its data in `dir/data`, stdout piped.
pub fn up(dir: &std::path::Path) -> Command {
    let mut cmd = chatmesh();
    cmd.args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .stdout(Stdio::piped());
    cmd
}

/// The web client URL `up` prints (within 60 s). Its stdout is read to the end on a thread
/// of its own: `up` keeps printing after the URL.
pub async fn web_client_url(child: &mut Child) -> Result<String> {
    Ok(up_urls(child).await?.web)
}

/// What `up` prints of where it serves.
pub struct UpUrls {
    /// The web client (and HTTP API), without a trailing `/`.
    pub web: String,
    /// Its nats-server's client URL.
    pub nats: String,
}

/// The URLs `up` prints (within 60 s), its stdout read to the end as for
/// [`web_client_url`].
pub async fn up_urls(child: &mut Child) -> Result<UpUrls> {
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut web = None;
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await?
            .context("up exited before printing its URLs")?;
        let line = line.trim();
        if let Some(url) = line.strip_prefix("web client:") {
            web = Some(url.trim().trim_end_matches('/').to_owned());
        } else if let Some(rest) = line.strip_prefix("NATS:") {
            let nats = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            let web = web.context("NATS printed before the web client")?;
            return Ok(UpUrls { web, nats });
        }
    }
}

/// Kills a spawned `chatmesh` and its children (the nats-server) if a test fails before it
/// stopped them itself, so a failed assertion leaves no process behind.
pub struct Reap(pub u32);

impl Drop for Reap {
    fn drop(&mut self) {
        let alive =
            |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
        let mut pids = child_pids(self.0);
        pids.push(self.0);
        for pid in pids.into_iter().filter(|p| alive(*p)) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The children of `pid`.
pub fn child_pids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether `pid` has exited and waits to be reaped.
pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}
