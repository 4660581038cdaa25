//! The case runner: one mesh per test, a fresh authenticated connection per case, and a
//! report that runs every case of a section and fails once at the end, naming each case
//! that failed and why.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use chatmesh::Mesh;

use crate::common::{fast_config, start_mesh, Api, FrameType};
use crate::raw::{In, Out, Raw};

/// A mesh to run cases against and a user to run them as.
pub struct Suite {
    pub addr: SocketAddr,
    pub token: String,
    mesh: Mesh,
    _dir: tempfile::TempDir,
}

impl Suite {
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mesh = start_mesh(dir.path(), fast_config()).await?;
        let token = Api::new(&mesh).user("autobahn").await?;
        let addr = mesh
            .url()
            .trim_start_matches("http://")
            .parse()
            .context("gateway address")?;
        Ok(Self {
            addr,
            token,
            mesh,
            _dir: dir,
        })
    }

    /// A fresh session, authenticated (its `welcome` already read).
    pub async fn connect(&self) -> Result<Raw> {
        Raw::connect(self.addr, Some(&self.token)).await
    }

    pub fn report(&self) -> Report {
        Report::default()
    }

    pub async fn finish(self, report: Report) -> Result<()> {
        let outcome = report.outcome();
        self.mesh.stop().await?;
        outcome
    }

    /// Sends `frames` and expects the session to close with `code`; returns what came
    /// before the close.
    pub async fn violation(&self, frames: &[Out], code: u16) -> Result<Vec<In>> {
        let mut c = self.connect().await?;
        c.send(frames).await?;
        c.expect_close(code).await
    }

    /// Sends `frames` chopped into pieces of `chop` bytes and expects close `code`.
    pub async fn violation_chopped(
        &self,
        frames: &[Out],
        chop: usize,
        code: u16,
    ) -> Result<Vec<In>> {
        let mut c = self.connect().await?;
        c.send_chopped(frames, chop).await?;
        c.expect_close(code).await
    }
}

/// The outcome of each case of a test.
#[derive(Default)]
pub struct Report {
    passed: usize,
    failed: Vec<String>,
}

impl Report {
    /// Runs one case and records its outcome (boxed: a section's future would otherwise
    /// hold every case's state and overflow the test thread's stack).
    pub async fn case(&mut self, id: &str, what: &str, run: impl Future<Output = Result<()>>) {
        match Box::pin(run).await {
            Ok(()) => self.passed += 1,
            Err(e) => {
                eprintln!("case {id} ({what}) FAILED: {e:#}");
                self.failed.push(format!("{id} {what}: {e:#}"));
            }
        }
    }

    fn outcome(&self) -> Result<()> {
        eprintln!("{} cases passed, {} failed", self.passed, self.failed.len());
        if !self.failed.is_empty() {
            bail!(
                "{} of {} cases failed:\n{}",
                self.failed.len(),
                self.failed.len() + self.passed,
                self.failed.join("\n")
            );
        }
        Ok(())
    }
}

/// The `ref` of a JSON reply, as a string (`""` for none).
pub fn reply_ref(f: &In) -> String {
    let f = f.frame();
    let r = f
        .as_ref()
        .and_then(|f| f.reply_to())
        .and_then(|r| r.as_str());
    r.unwrap_or_default().to_owned()
}

/// Frames that are JSON `pong` replies, by `ref`.
pub fn pong_refs(frames: &[In]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f.frame().is_some_and(|f| f.frame_type() == FrameType::Pong))
        .map(reply_ref)
        .collect()
}

/// WebSocket pongs among `frames`, by payload.
pub fn ws_pongs(frames: &[In]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .filter_map(|f| match f {
            In::Pong(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}
