//! Starting and stopping one gateway or one worker inside this process, the same way for
//! `chatmesh up`, the standalone commands and the tests.

use chatmesh_protocol::backoff::Backoff;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use chatmesh_gateway::AppState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How often the recorder folds recorded histogram samples into its buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use, with its upkeep thread.
///
/// The recorder keeps every histogram sample until it is folded into buckets, which happens
/// on a scrape or an upkeep; `install_recorder` starts no upkeep, so a process nobody scraped
/// grew by every sample (a soak's gateway: ~20 MB/h). The thread runs for the life of the
/// process and holds only the handle.
pub fn metrics() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("seconds".into()), &buckets)
                .ok()?
                .install_recorder()
                .ok()?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name(UPKEEP_THREAD.into())
                .spawn(move || loop {
                    std::thread::sleep(METRICS_UPKEEP);
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// The name of the metrics upkeep thread.
pub const UPKEEP_THREAD: &str = "metrics-upkeep";

/// Creates or updates the message streams this process's workers serve (idempotent: all of
/// them, or a region's own with `mesh.regional_workers`, which so start while the primary is
/// cut off). While a NATS cluster is still electing leaders this times out, so it is retried
/// for a minute.
pub async fn ensure_stream(cfg: &Config, nats: &async_nats::Client) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(nats.clone());
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    loop {
        let pause = backoff.next_delay();
        match chatmesh_workers::streams::ensure_own(&js, &cfg.mesh).await {
            Ok(_) => return Ok(()),
            // Another deployment's stream: waiting does not change that.
            Err(e @ chatmesh_workers::WorkerError::PartitionsDiffer { .. }) => return Err(e.into()),
            Err(e) if tokio::time::Instant::now() + pause < give_up => {
                tracing::warn!(error = %e, "creating the message stream failed; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e).context("creating the message stream"),
        }
    }
}

/// Serves this process's metrics at `listen` (any path), for services without an HTTP
/// server of their own (a standalone worker).
pub fn serve_metrics(listen: &str) -> anyhow::Result<()> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("metrics.listen: {listen:?} is not an address"))?;
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .context("starting the metrics listener")?;
    Ok(())
}

/// A running gateway.
#[derive(Debug)]
pub struct GatewayHandle {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl GatewayHandle {
    /// Binds `cfg.gateway.listen` and serves until [`GatewayHandle::stop`].
    pub async fn start(cfg: &Config, nats: async_nats::Client) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&cfg.gateway.listen)
            .await
            .with_context(|| format!("binding {}", cfg.gateway.listen))?;
        let addr = listener.local_addr()?;
        let files = if cfg.files.enabled {
            let store = chatmesh_files::FileStore::open(&cfg.files).context(
                "opening the file store ([files]; enabled = false turns file sharing off)",
            )?;
            Some(chatmesh_gateway::files::GatewayFiles::new(
                store,
                cfg.files.clone(),
            ))
        } else {
            None
        };
        // With `[metrics] listen`, the metrics are served there only, not on the client port.
        let metrics_listener = match &cfg.metrics.listen {
            Some(listen) => Some(
                TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding metrics.listen {listen}"))?,
            ),
            None => None,
        };
        let on_client_port = metrics().filter(|_| metrics_listener.is_none());
        let state = AppState::new(
            cfg.gateway.clone(),
            cfg.mesh.clone(),
            nats,
            on_client_port,
            files,
        )
        .await
        .context("starting the gateway")?;
        state.set_admin(cfg.admin.clone());
        let stop = CancellationToken::new();
        if let (Some(listener), Some(handle)) = (metrics_listener, metrics()) {
            tracing::info!(addr = %listener.local_addr()?, "serving metrics");
            tokio::spawn(chatmesh_gateway::http::metrics_listener::serve(
                listener,
                handle,
                state.clone(),
                stop.clone(),
            ));
        }
        let task = tokio::spawn(chatmesh_gateway::serve(
            listener,
            state.clone(),
            stop.clone().cancelled_owned(),
        ));
        Ok(Self {
            addr,
            state,
            stop,
            task,
        })
    }

    /// Drains: sessions get 1001, then the server returns.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: CancellationToken,
    task: JoinHandle<Result<(), chatmesh_workers::WorkerError>>,
    store: chatmesh_workers::Store,
}

impl WorkerHandle {
    /// Opens the store and starts consuming and serving.
    pub async fn start(cfg: &Config, nats: async_nats::Client) -> anyhow::Result<Self> {
        let store = chatmesh_workers::open_store(&cfg.worker)
            .await
            .context("opening the store")?;
        Self::with_store(cfg, nats, store)
    }

    /// Starts consuming and serving on a store opened already (e.g. by a standby that
    /// waited for it: [`chatmesh_workers::open_store_or_wait`]).
    pub fn with_store(
        cfg: &Config,
        nats: async_nats::Client,
        store: chatmesh_workers::Store,
    ) -> anyhow::Result<Self> {
        let files = if cfg.files.enabled {
            let files = chatmesh_workers::Files::open(&cfg.files).context(
                "opening the file store ([files]; enabled = false turns file sharing off)",
            )?;
            Some(files)
        } else {
            None
        };
        let push = match cfg.push.enabled {
            true => Some(
                chatmesh_workers::push::Push::open(cfg.push.clone(), &cfg.worker.data_dir)
                    .context("starting the push notifier")?,
            ),
            false => None,
        };
        let extras = chatmesh_workers::Extras {
            files,
            push,
            admin: cfg.admin.clone(),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(chatmesh_workers::run(
            cfg.worker.clone(),
            cfg.mesh.clone(),
            nats,
            store.clone(),
            extras,
            stop.clone().cancelled_owned(),
        ));
        Ok(Self { stop, task, store })
    }

    /// A handle on the worker's store (clones share the database): for what runs beside the
    /// worker in this process, such as a test's separate notifier.
    pub fn store(&self) -> chatmesh_workers::Store {
        self.store.clone()
    }

    /// Finishes the current batch, flushes the store and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await.context("worker task")??;
        Ok(())
    }

    /// Runs until `shutdown` resolves, then stops gracefully; returns an error at once if the
    /// worker stops by itself (a failed partition task), so that the process exits and a
    /// supervisor or a standby takes over instead of a worker that runs nothing.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            _ = shutdown => self.stop().await,
            e = self.ended() => Err(e),
        }
    }

    /// Waits until the worker stops by itself, and says why. Once it returns the worker is
    /// gone: the handle is only to be dropped (not stopped).
    pub async fn ended(&mut self) -> anyhow::Error {
        match (&mut self.task).await {
            Ok(Ok(())) => anyhow::anyhow!("the worker stopped by itself"),
            Ok(Err(e)) => anyhow::Error::new(e).context("the worker failed"),
            Err(e) => anyhow::Error::new(e).context("worker task"),
        }
    }

    /// True once the worker stopped by itself (an error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

#[cfg(test)]
mod tests {
    /// The recorder comes with its upkeep thread (without one, histogram samples pile up in a
    /// process that is never scraped).
    #[test]
    fn the_recorder_has_an_upkeep_thread() {
        assert!(super::metrics().is_some());
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        };
        // A new thread names itself once it runs: give it a moment on a busy machine.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !names().iter().any(|t| t == super::UPKEEP_THREAD)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let threads = names();
        assert!(
            threads.iter().any(|t| t == super::UPKEEP_THREAD),
            "threads: {threads:?}"
        );
    }
}
