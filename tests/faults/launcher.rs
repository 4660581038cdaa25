//! A whole mesh in separate processes, started and stopped through `ops/mesh` (3 nats-server
//! nodes, gateways, worker(s), HAProxy) in a temp data dir on its own 127.x.y.0/24 net, so
//! these tests never touch a developer's mesh. Dropping it runs `ops/mesh down`, which signals
//! only the pids it recorded.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Send limits high enough for resends after a reconnect (the defaults are per human), and
/// account throttles out of the way (every account comes from one IP, through HAProxy).
const ENV: &[(&str, &str)] = &[
    ("CHATMESH__GATEWAY__LOGIN_IP_BURST", "100000"),
    ("CHATMESH__GATEWAY__REGISTER_IP_BURST", "100000"),
    ("CHATMESH__GATEWAY__ROOMS_BURST", "100000"),
    ("CHATMESH__GATEWAY__API_USER_BURST", "1000000"),
    ("CHATMESH__GATEWAY__API_PER_USER_PER_MINUTE", "10000000"),
    ("CHATMESH__GATEWAY__LIMITS__SENDS_PER_SECOND", "10000"),
    ("CHATMESH__GATEWAY__LIMITS__SEND_BURST", "10000"),
    ("CHATMESH__GATEWAY__FRAMES_PER_SECOND", "10000"),
    ("CHATMESH__GATEWAY__RATE_LIMIT_STRIKES", "100000"),
    ("CHATMESH__WORKER__ARGON2_MEMORY_KIB", "1024"),
    ("CHATMESH__WORKER__ARGON2_ITERATIONS", "1"),
    ("RUST_LOG", "info,async_nats=warn"),
];

/// One mesh launched by `ops/mesh up`.
pub struct MeshProc {
    dir: tempfile::TempDir,
    net: String,
    /// Settings of this mesh on top of [`ENV`] (`CHATMESH__…` variables).
    env: Vec<(String, String)>,
    pub gateways: u32,
    pub workers: u32,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl MeshProc {
    /// Starts 3 NATS nodes, `gateways` gateways, `workers` workers and HAProxy on `net`.
    pub async fn up(net: &str, gateways: u32, workers: u32) -> Result<Self> {
        Self::up_with(net, gateways, workers, &[]).await
    }

    /// [`MeshProc::up`] with settings of its own (`CHATMESH__…` variables) for every part.
    pub async fn up_with(
        net: &str,
        gateways: u32,
        workers: u32,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let mesh = Self::new(net, gateways, workers, env)?;
        mesh.start_all().await?;
        Ok(mesh)
    }

    /// A mesh not started yet, in a fresh temp data dir.
    fn new(net: &str, gateways: u32, workers: u32, env: &[(&str, &str)]) -> Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
            net: net.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            gateways,
            workers,
        })
    }

    /// `regions` regions (`ops/mesh up --regions`, docs/REGIONS.md): region k on net
    /// `a.b.(c+k)` with one NATS node and one gateway, the worker in the first region.
    pub async fn up_regions(net: &str, regions: u32, env: &[(&str, &str)]) -> Result<Self> {
        Self::up_regions_with(net, regions, &[], env).await
    }

    /// [`MeshProc::up_regions`] with more `ops/mesh up` flags (`--regional-workers`).
    pub async fn up_regions_with(
        net: &str,
        regions: u32,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let mesh = Self::new(net, 1, 1, env)?;
        let n = regions.to_string();
        let mut args = vec![
            "up",
            "--regions",
            &n,
            "--net",
            &mesh.net,
            "--bin",
            env!("CARGO_BIN_EXE_chatmesh"),
        ];
        args.extend_from_slice(flags);
        mesh.ops(&args).await?;
        Ok(mesh)
    }

    /// The gateway of region `k` (1-based) in a mesh of [`MeshProc::up_regions`].
    pub fn region_entry(&self, k: u32) -> String {
        let (ab, c) = self.net.rsplit_once('.').expect("net is a.b.c");
        let c: u32 = c.parse().expect("net is a.b.c");
        format!("http://{ab}.{}.21:8080", c + k)
    }

    /// Cuts `region` off: every process of it killed (`ops/mesh cut`).
    pub async fn cut(&self, region: &str) -> Result<()> {
        self.ops(&["cut", region]).await.map(|_| ())
    }

    /// Starts a cut region again and waits until it is whole (`ops/mesh heal`).
    pub async fn heal(&self, region: &str) -> Result<()> {
        self.ops(&["heal", region]).await.map(|_| ())
    }

    /// `ops/mesh up` again on the same data dir (after [`MeshProc::down`]).
    pub async fn start_all(&self) -> Result<()> {
        let (g, w) = (self.gateways.to_string(), self.workers.to_string());
        let args = vec![
            "up",
            "--nats",
            "3",
            "--gateways",
            &g,
            "--workers",
            &w,
            "--net",
            &self.net,
            "--bin",
            env!("CARGO_BIN_EXE_chatmesh"),
        ];
        self.ops(&args).await.map(|_| ())
    }

    /// The HTTP base URL of the HAProxy entry point.
    pub fn entry(&self) -> String {
        format!("http://{}.2:8080", self.net)
    }

    /// Runs `ops/mesh <args> --data <dir>`; its stdout.
    pub async fn ops(&self, args: &[&str]) -> Result<String> {
        let mut cmd = tokio::process::Command::new(root().join("ops/mesh"));
        cmd.args(args).arg("--data").arg(self.dir.path());
        for (k, v) in ENV {
            cmd.env(k, v);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
            .await
            .context("ops/mesh took over 180 s")??;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "ops/mesh {args:?} failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    pub async fn kill(&self, part: &str) -> Result<()> {
        self.signal(part, "KILL").await
    }

    /// Sends `signal` (`KILL`, `TERM`) to one part.
    pub async fn signal(&self, part: &str, signal: &str) -> Result<()> {
        self.ops(&["kill", part, "--signal", signal])
            .await
            .map(|_| ())
    }

    pub async fn start(&self, part: &str) -> Result<()> {
        self.ops(&["start", part]).await.map(|_| ())
    }

    pub async fn down(&self) -> Result<()> {
        self.ops(&["down"]).await.map(|_| ())
    }

    /// The part name (`nats-2`) of the NATS node leading stream CHAT.
    pub async fn stream_leader(&self) -> Result<String> {
        Ok(self.ops(&["leader"]).await?.trim().to_owned())
    }

    /// Worker `i`'s gauges from its metrics listener (`ops/mesh` puts it on NET.(30+i):9464):
    /// `chatmesh_worker_standby` (1 while waiting for the store lock) and
    /// `chatmesh_partitions_owned`, each `None` until recorded.
    pub async fn worker_gauges(&self, i: u32) -> Result<(Option<f64>, Option<f64>)> {
        Ok((
            self.worker_metric(i, "chatmesh_worker_standby").await?,
            self.worker_metric(i, "chatmesh_partitions_owned").await?,
        ))
    }

    /// One unlabelled metric of worker `i`, `None` until recorded.
    pub async fn worker_metric(&self, i: u32, name: &str) -> Result<Option<f64>> {
        self.metric_at(&format!("{}.{}", self.net, 30 + i), name)
            .await
    }

    /// One unlabelled metric of the first worker of region `k` (1-based) in a mesh of
    /// [`MeshProc::up_regions`].
    pub async fn region_worker_metric(&self, k: u32, name: &str) -> Result<Option<f64>> {
        let (ab, c) = self.net.rsplit_once('.').expect("net is a.b.c");
        let c: u32 = c.parse().expect("net is a.b.c");
        self.metric_at(&format!("{ab}.{}.31", c + k), name).await
    }

    async fn metric_at(&self, host: &str, name: &str) -> Result<Option<f64>> {
        let url = format!("http://{host}:9464/metrics");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let text = client.get(&url).send().await?.text().await?;
        Ok(text.lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse::<f64>().ok()).flatten()
        }))
    }

    /// What part `name` logged so far (`DIR/logs/<name>.log`).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// The gateway part with the most HAProxy sessions (the one whose death hurts most).
    pub async fn busiest_gateway(&self) -> Result<(String, u64)> {
        let url = format!("http://{}.2:8404/metrics", self.net);
        let text = reqwest::get(&url).await?.text().await?;
        let mut best = ("gateway-1".to_owned(), 0);
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("haproxy_server_current_sessions{") else {
                continue;
            };
            let Some(n) = rest.split("server=\"gw").nth(1) else {
                continue;
            };
            let idx: String = n.chars().take_while(char::is_ascii_digit).collect();
            let count = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64;
            if count > best.1 {
                best = (format!("gateway-{idx}"), count);
            }
        }
        Ok(best)
    }
}

impl Drop for MeshProc {
    fn drop(&mut self) {
        let _ = std::process::Command::new(root().join("ops/mesh"))
            .args(["down", "--data"])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .status();
    }
}
