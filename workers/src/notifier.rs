//! `chatmesh notifier`: the push notifier as a process of its own, for deployments whose
//! workers share one store (TiKV): it reads members, targets, settings and delivery marks
//! from that store and sends the pushes, while the workers (with `[push] in_worker = false`)
//! only answer the push operations. Any number may run: they share the durable consumer, so
//! JetStream spreads the messages between them. An embedded fjall store belongs to its
//! worker, whose notifier runs inside it, so this refuses one.

use std::future::Future;
use std::sync::Arc;

use async_nats::Client;
use chatmesh_protocol::MeshConfig;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cache::Caches;
use crate::config::{Backend, WorkerConfig};
use crate::error::WorkerError;
use crate::model::Model;
use crate::push::Push;
use crate::service::Service;
use crate::store::Store;

/// Why `chatmesh notifier` cannot run with this configuration (checked before any
/// connection is made).
pub fn refusal(cfg: &WorkerConfig) -> Option<&'static str> {
    match cfg.backend {
        Backend::Fjall => Some(
            "chatmesh notifier needs a store shared with the workers ([worker] backend = \"tikv\"): \
             an embedded fjall store belongs to its worker, whose notifier runs inside it \
             ([push] enabled = true, in_worker = true, the default)",
        ),
        Backend::Tikv => None,
    }
}

/// Runs the notifier on `store` until `shutdown`.
pub async fn run(
    cfg: WorkerConfig,
    mesh: MeshConfig,
    nats: Client,
    store: Store,
    push: Push,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WorkerError> {
    if let Some(refused) = refusal(&cfg) {
        return Err(WorkerError::Config(vec![refused.to_owned()]));
    }
    run_beside(cfg, mesh, nats, store, push, shutdown).await
}

/// [`run`] without the backend check: `store` may be a handle on a worker's embedded store
/// shared within this process (how the tests run a notifier apart from its worker).
pub async fn run_beside(
    cfg: WorkerConfig,
    mesh: MeshConfig,
    nats: Client,
    store: Store,
    push: Push,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WorkerError> {
    let mut problems = cfg.problems();
    problems.extend(mesh.problems());
    if !problems.is_empty() {
        return Err(WorkerError::Config(problems));
    }
    crate::metrics::describe();
    let model = Model::new(store);
    let caches = Arc::new(Caches::new(cfg.cache_sizes()));
    let service = Service::new(model, caches, &cfg, None)?;
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    crate::push::enable(&service, &push);
    crate::push::spawn_notifier(
        &service,
        push,
        &mesh.topology(),
        nats,
        &mut tasks,
        stop.clone(),
    )
    .map_err(|e| WorkerError::Push(Box::new(e)))?;
    info!("push notifier running");
    // A loop that ends before the shutdown (an error, a panic) stops the process, so that
    // its supervisor starts it again: pushes would otherwise stop while it looks healthy.
    let failed = {
        let failed = crate::worker::first_failure(&mut tasks);
        tokio::select! {
            _ = shutdown => None,
            e = failed => Some(e),
        }
    };
    stop.cancel();
    let mut first = failed;
    if let Some(e) = &first {
        tracing::error!(error = %e, "a push notifier loop stopped: the notifier stops");
    }
    while let Some(done) = tasks.join_next().await {
        let e = match done {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => WorkerError::Task(e),
        };
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), Err)
}
