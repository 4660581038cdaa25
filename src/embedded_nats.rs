//! The nats-server child of `chatmesh up`, kept running. A server that exits on its own (a
//! crash, the OOM killer, a stray SIGKILL) is started again on the same store and ports,
//! with a growing pause between failed tries. Its clients reconnect by themselves and the
//! store writers recreate their consumers from the store's checkpoints, so delivery resumes
//! instead of stopping silently behind a gateway that still answers. JetStream keeps what it
//! acked on file; what a crash loses is in no ack.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatmesh_protocol::backoff::Backoff;
use chatmesh_protocol::error::Chain;
use natsd::NatsServer;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the child is checked: a crashed server is noticed within this.
const POLL: Duration = Duration::from_millis(250);
/// The pauses between failed starts.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The embedded nats-server and the task that keeps it running.
#[derive(Debug)]
pub struct EmbeddedNats {
    server: Arc<Mutex<NatsServer>>,
    url: String,
    store_dir: PathBuf,
    /// The running server's pid; 0 while it is down.
    pid: Arc<AtomicU32>,
    stop: CancellationToken,
    supervisor: Option<JoinHandle<()>>,
}

impl EmbeddedNats {
    /// Watches `server` from now on (and reports its CPU on `/metrics`).
    pub fn supervise(server: NatsServer) -> Self {
        let url = server.url();
        let store_dir = server.store_dir().to_path_buf();
        let pid = Arc::new(AtomicU32::new(server.pid().unwrap_or(0)));
        watch_cpu(server.pid());
        let server = Arc::new(Mutex::new(server));
        let stop = CancellationToken::new();
        let supervisor = tokio::spawn(keep_running(
            Arc::clone(&server),
            Arc::clone(&pid),
            stop.clone(),
        ));
        Self {
            server,
            url,
            store_dir,
            pid,
            stop,
            supervisor: Some(supervisor),
        }
    }

    /// `nats://127.0.0.1:<port>`, the same across restarts.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The server's JetStream store (and its config and log).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The running server's pid; `None` while it is down or after [`stop`](Self::stop).
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Acquire)).filter(|p| *p != 0)
    }

    /// A client connection with the admin key (waits while a restart is under way).
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        self.server.lock().await.connect().await
    }

    /// Stops watching, then stops the server (SIGTERM, then SIGKILL after a grace period).
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.await;
        }
        self.server.lock().await.stop().await;
        self.pid.store(0, Ordering::Release);
    }
}

impl Drop for EmbeddedNats {
    /// Dropped without [`stop`](EmbeddedNats::stop) (a failed start, a test): the watch ends and
    /// the server goes with the last handle (SIGKILL, as `NatsServer`'s drop does).
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.abort();
        }
    }
}

/// Its CPU on `/metrics` beside ours: load tests compute CPU per message from it.
fn watch_cpu(pid: Option<u32>) {
    if let Some(pid) = pid {
        chatmesh_gateway::procstat::watch_child("nats-server", pid);
    }
}

async fn keep_running(
    server: Arc<Mutex<NatsServer>>,
    pid: Arc<AtomicU32>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(FIRST_RETRY, MAX_RETRY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let mut s = server.lock().await;
        let Some(status) = s.exited() else { continue };
        pid.store(0, Ordering::Release);
        metrics::counter!("chatmesh_nats_server_restarts_total").increment(1);
        tracing::error!(%status, log = %s.log_path().display(), "nats-server exited; starting it again");
        loop {
            let started = tokio::select! {
                _ = stop.cancelled() => return,
                started = s.restart() => started,
            };
            match started {
                Ok(()) => {
                    pid.store(s.pid().unwrap_or(0), Ordering::Release);
                    watch_cpu(s.pid());
                    tracing::info!(pid = s.pid(), "nats-server running again");
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::error!(error = %Chain(&e), retry_in = ?delay, "nats-server did not start again");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}
