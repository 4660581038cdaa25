//! A nats-server with JetStream run as a child on 127.0.0.1: started from a [`Builder`]
//! (dynamic ports unless fixed), ready once a client connects, restartable on the same store
//! and ports, and killed and reaped on drop. Its config, log and ports file live in the store
//! dir: `nats-server.conf`, `nats-server.log`, `ports/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::access::Tls;
use crate::launch::{self, Launch};
use crate::process::Proc;
use crate::{Error, Result};

/// How long a graceful stop may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Settings for a [`NatsServer`]; every field has a default.
#[derive(Debug, Clone)]
pub struct Builder {
    launch: Launch,
    store_dir: Option<PathBuf>,
    port: Option<u16>,
    monitor_port: Option<u16>,
}

impl Builder {
    /// JetStream storage (plus config, log, ports file). Default: a temp dir the server owns.
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store_dir = Some(dir.into());
        self
    }

    /// Fixed client port (e.g. `chatmesh up --nats-port`). Default: chosen by the server.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Fixed monitoring port (`/varz`, `/jsz`). Default: chosen by the server.
    pub fn monitor_port(mut self, port: u16) -> Self {
        self.monitor_port = Some(port);
        self
    }

    /// Binary to run (checked to be >= 2.11). Default: [`crate::locate`].
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.launch.binary = Some(path.into());
        self
    }

    /// `server_name`. Default: `chatmesh`.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.launch.server_name = name.into();
        self
    }

    /// Threads running Go code at once (`GOMAXPROCS`). Default: Go's, one per core. On a
    /// small machine shared with the services one thread costs less CPU per message: a
    /// message then hops between goroutines without waking another thread.
    pub fn threads(mut self, threads: usize) -> Self {
        self.launch.threads = Some(threads.max(1));
        self
    }

    /// Largest message the server accepts, in bytes. Default: 1 MiB (the server's own).
    pub fn max_payload(mut self, bytes: u32) -> Self {
        self.launch.max_payload = bytes;
        self
    }

    /// How long to wait for the first successful client connect. Default: 10 s.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.launch.ready_timeout = timeout;
        self
    }

    /// Requires clients to authenticate: `authorization` is config text (an
    /// `authorization { … }` block, e.g. nkey users with permissions) and `client_nkey` the
    /// seed of a user in it that this crate's own connections use (the readiness probe and
    /// [`NatsServer::connect`]). Default: an open server.
    pub fn authorization(mut self, authorization: String, client_nkey: String) -> Self {
        self.launch.access.authorization = Some(authorization);
        self.launch.access.client_nkey = Some(client_nkey);
        self
    }

    /// TLS on the client port (clients must use it). Default: plain TCP on loopback.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.launch.access.tls = Some(tls);
        self
    }

    /// Starts the server and waits until a client can connect.
    pub async fn start(self) -> Result<NatsServer> {
        let (store_dir, temp) = match self.store_dir {
            Some(dir) => (dir, None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("natsd-")
                    .tempdir()
                    .map_err(|e| Error::io("creating", "a temp store dir", e))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut launch = self.launch;
        launch.binary = Some(match launch.binary {
            Some(path) => path,
            None => crate::locate()?.path,
        });
        let (proc, ports) = launch.run(&store_dir, self.port, self.monitor_port).await?;
        Ok(NatsServer {
            launch,
            store_dir,
            client_port: ports.client,
            monitor_port: ports.monitor,
            proc: Some(proc),
            _temp: temp,
        })
    }
}

/// A running nats-server child. Dropping it SIGKILLs and reaps the process, then deletes
/// the store dir if it was a temp dir.
#[derive(Debug)]
pub struct NatsServer {
    launch: Launch,
    store_dir: PathBuf,
    client_port: u16,
    monitor_port: u16,
    // Declared before `_temp`: the process dies before its store dir is deleted.
    proc: Option<Proc>,
    _temp: Option<TempDir>,
}

impl NatsServer {
    /// Settings with defaults: dynamic ports, temp store dir, located binary.
    pub fn builder() -> Builder {
        Builder {
            launch: Launch::default(),
            store_dir: None,
            port: None,
            monitor_port: None,
        }
    }

    /// For tests: a server on dynamic ports with a temp store dir deleted on drop.
    pub async fn start_temp() -> Result<NatsServer> {
        Self::builder().start().await
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<port>` of the monitoring endpoints.
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The server's stdout/stderr, appended across restarts.
    pub fn log_path(&self) -> PathBuf {
        launch::log_path(&self.store_dir)
    }

    /// Process id while running; `None` after [`stop`](Self::stop) or [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// A client connection to this server, with the credentials and TLS trust given to the
    /// builder (on an authorized server: the user of [`Builder::authorization`]).
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        self.launch
            .access
            .client_options(Duration::from_secs(5))
            .connect(self.url())
            .await
    }

    /// The exit status of a server that has exited on its own (a crash, the OOM killer, a
    /// signal from outside), once: it is then reaped, [`pid`](Self::pid) is `None` and
    /// [`restart`](Self::restart) starts it again. `None` while it runs (or after a stop).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.proc.as_mut()?.exited()?;
        self.proc = None;
        Some(status)
    }

    /// SIGTERM, wait up to 10 s for a clean exit, then SIGKILL. Idempotent.
    pub async fn stop(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.stop(STOP_GRACE).await;
        }
    }

    /// SIGKILL now (a crash, as tests simulate it) and reap. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Stops (if running) and starts again on the same store dir and the same ports.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await;
        let ports = (Some(self.client_port), Some(self.monitor_port));
        let (proc, _) = self.launch.run(&self.store_dir, ports.0, ports.1).await?;
        self.proc = Some(proc);
        Ok(())
    }
}
