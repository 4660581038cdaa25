//! The embedded one-machine mesh of `chatmesh up`: a nats-server child with its JetStream
//! store inside the data dir, a worker with a fjall store inside the data dir, and a gateway.
//! The bus is closed even here: the nats-server admits only the keys generated into
//! `<data>/creds/` at first start, and the gateway and the worker connect separately, each
//! with its own role's key and permissions, exactly as separate processes would.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chatmesh_protocol::bus::Role as BusRole;
use natsd::NatsServer;

use crate::bus::BusCredentials;
use crate::config::{Config, Role};
use crate::embedded_nats::EmbeddedNats;
use crate::services::{ensure_stream, GatewayHandle, WorkerHandle};

/// How to start the mesh.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Everything persistent lives here: `nats/`, `store/`, `jwt-secret`, `vapid-key`.
    pub data_dir: PathBuf,
    /// Gateway listen address (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Fixed NATS client port; dynamic when `None`.
    pub nats_port: Option<u16>,
    /// TLS on the NATS client port (services then require it); plain loopback when `None`.
    pub nats_tls: Option<natsd::Tls>,
    /// Threads of the nats-server child (its `GOMAXPROCS`); `None`: Go's default.
    pub nats_threads: Option<usize>,
    pub config: Config,
}

impl MeshOptions {
    /// A mesh for this machine only: the gateway on a free loopback port, NATS on a
    /// dynamic port without TLS, nats-server with Go's default threads.
    pub fn local(data_dir: impl Into<PathBuf>, config: Config) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: "127.0.0.1:0".into(),
            nats_port: None,
            nats_tls: None,
            nats_threads: None,
            config,
        }
    }
}

/// A running embedded mesh.
#[derive(Debug)]
pub struct Mesh {
    /// The nats-server child, started again if it exits on its own.
    pub nats: EmbeddedNats,
    /// The bus keys (`<data>/creds/`): one seed file per role.
    pub creds: BusCredentials,
    /// The gateway's connection (role `gateway`).
    pub gateway_nats: async_nats::Client,
    /// The worker's connection (role `worker`).
    pub worker_nats: async_nats::Client,
    pub gateway: GatewayHandle,
    pub worker: WorkerHandle,
    /// The configuration in force, with the gateway's NATS key in `mesh.nats_nkey_file`.
    pub config: Config,
}

impl Mesh {
    pub async fn start(opts: MeshOptions) -> anyhow::Result<Self> {
        let data = &opts.data_dir;
        anyhow::ensure!(
            opts.config.mesh.regions.is_empty(),
            "mesh.regions needs one NATS cluster per region joined into a supercluster; \
             `chatmesh up` runs one server: use `ops/mesh up --regions 2` (docs/REGIONS.md)"
        );
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let binary = tokio::task::spawn_blocking(natsd::ensure_installed)
            .await?
            .context("nats-server is not available")?;
        let creds = BusCredentials::ensure(&data.join("creds"), &[]).context("bus credentials")?;
        let mut builder = NatsServer::builder()
            .binary(binary)
            .store_dir(data.join("nats"))
            .server_name("chatmesh-embedded")
            .authorization(creds.authorization(), creds.seed(BusRole::Admin)?);
        if let Some(port) = opts.nats_port {
            builder = builder.port(port);
        }
        if let Some(tls) = &opts.nats_tls {
            builder = builder.tls(tls.clone());
        }
        if let Some(threads) = opts.nats_threads {
            builder = builder.threads(threads);
        }
        let nats = builder.start().await.context("starting nats-server")?;
        let nats = EmbeddedNats::supervise(nats);

        let mut config = opts.config.clone();
        config.mesh.nats_urls = vec![nats.url()];
        config.mesh.nats_nkey_file = Some(creds.seed_file(BusRole::Gateway));
        if let Some(tls) = &opts.nats_tls {
            config.mesh.nats_tls_ca = Some(tls.ca.clone());
        }
        config.gateway.listen = opts.listen.clone();
        config.worker.data_dir = data.join("store");
        if config.worker.search.dir.as_os_str().is_empty() {
            config.worker.search.dir = data.join("search");
        }
        if config.files.url.is_none() {
            config.files.dir = data.join("files");
        }
        if config.gateway.jwt_secret.is_empty() && config.gateway.jwks_file.is_none() {
            config.gateway.jwt_secret = jwt_secret(data)?;
        }
        let problems = config.problems(Role::Both);
        anyhow::ensure!(
            problems.is_empty(),
            "bad configuration:\n  {}",
            problems.join("\n  ")
        );

        let mut worker_mesh = config.mesh.clone();
        worker_mesh.nats_nkey_file = Some(creds.seed_file(BusRole::Worker));
        let worker_nats =
            crate::nats::connect(&worker_mesh, BusRole::Worker, "chatmesh-up-worker").await?;
        let gateway_nats =
            crate::nats::connect(&config.mesh, BusRole::Gateway, "chatmesh-up-gateway").await?;
        ensure_stream(&config, &worker_nats).await?;
        let worker = WorkerHandle::start(&config, worker_nats.clone()).await?;
        let gateway = GatewayHandle::start(&config, gateway_nats.clone()).await?;
        wait_ready(&gateway).await?;
        Ok(Self {
            nats,
            creds,
            gateway_nats,
            worker_nats,
            gateway,
            worker,
            config,
        })
    }

    /// The gateway's HTTP base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.gateway.addr)
    }

    /// The WebSocket URL of protocol v1.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.gateway.addr)
    }

    /// Graceful stop: gateway drain (1001), worker flush, NATS drain, nats-server SIGTERM.
    /// Runs until `shutdown` resolves, then stops gracefully. If the worker stops by itself
    /// first (its store can no longer write, the stream was made again under it, a
    /// partition's task failed), the gateway and the nats-server are stopped too and the
    /// worker's error returned, so that the process exits non-zero and its supervisor
    /// starts it again: the gateway would otherwise go on acking sends that nothing stores.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        draining: impl FnOnce(),
    ) -> anyhow::Result<()> {
        let failed = tokio::select! {
            _ = shutdown => None,
            e = self.worker.ended() => Some(e),
        };
        let Some(failed) = failed else {
            draining();
            return self.stop().await;
        };
        tracing::error!(error = %format!("{failed:#}"), "the worker stopped: stopping the mesh");
        self.gateway.stop().await;
        let _ = self.gateway_nats.drain().await;
        let _ = self.worker_nats.drain().await;
        self.nats.stop().await;
        Err(failed)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.gateway.stop().await;
        let _ = self.gateway_nats.drain().await;
        let worker = self.worker.stop().await;
        let _ = self.worker_nats.drain().await;
        self.nats.stop().await;
        worker
    }
}

/// Waits until the gateway reports ready (worker services subscribed, stream reachable).
async fn wait_ready(gateway: &GatewayHandle) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match gateway.state.readiness().await {
            Ok(()) => return Ok(()),
            Err(why) if tokio::time::Instant::now() > deadline => {
                anyhow::bail!("the mesh did not become ready within 30 s: {why}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// The HS256 secret of this data dir, created on first start: written to a temporary file
/// opened 0600 (`create_new`, so never readable by others, not even for an instant, and
/// never a file someone else placed there), synced, then renamed into place, so a crash
/// leaves either no secret or a whole one.
fn jwt_secret(data: &Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    let path = data.join("jwt-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_owned();
        if secret.len() >= 32 {
            return Ok(secret);
        }
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    // A random name: a stale temp file of a crashed start (same pid in a container) must
    // not block this one.
    let tmp = data.join(format!(".jwt-secret.{:016x}.tmp", rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(secret.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(secret)
}
