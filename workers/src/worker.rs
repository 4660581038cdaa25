//! Starting and stopping a worker: ensure the stream, check the store belongs to it, start a
//! store writer and a service listener per owned partition, and on shutdown stop them (each
//! finishes what it is doing), then flush the store.
//!
//! Which partitions run here is decided by [`crate::ownership`]: every partition (an
//! embedded store) or a rendezvous share among live workers (a shared store), each held
//! under a lease. With `mesh.regional_workers` a worker of such a region runs only the
//! partitions of its region's stream, on its region's store and ownership buckets, and asks
//! the primary's workers for accounts (docs/REGIONS.md section 12).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::Client;
use chatmesh_protocol::MeshConfig;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cache::Caches;
use crate::config::WorkerConfig;
use crate::consumer::{self, ConsumerSettings, Writer};
use crate::error::WorkerError;
use crate::events::Events;
use crate::model::Model;
use crate::ownership::SpawnPartition;
use crate::progress::Progress;
use crate::service::{serve_partition, Service, StreamTail};
use crate::store::{KvStore, Store};
use crate::streams::ensure_served;

const JS_TIMEOUT: Duration = Duration::from_secs(10);

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    shutdown: CancellationToken,
    tasks: JoinSet<Result<(), WorkerError>>,
    writers_ready: Vec<Arc<AtomicBool>>,
    /// Partitions this worker runs now.
    owned: Arc<[AtomicBool]>,
    /// This worker's id in the registry and on its leases.
    id: String,
    nats: Client,
    store: Store,
    service: Service,
    /// Told by a store writer that finds the stream replaced under the store.
    halt: Arc<crate::consumer::Halt>,
}

impl Worker {
    /// Sets everything up and starts the partition tasks; returns once they run.
    pub async fn start(
        cfg: WorkerConfig,
        mesh: MeshConfig,
        nats: Client,
        store: Store,
    ) -> Result<Worker, WorkerError> {
        Self::start_with_files(cfg, mesh, nats, store, None).await
    }

    /// [`Worker::start`], with file sharing (`files`: thumbnails, the sweeper, the file
    /// operations; without it they answer `unavailable`).
    pub async fn start_with_files(
        cfg: WorkerConfig,
        mesh: MeshConfig,
        nats: Client,
        store: Store,
        files: Option<crate::service::Files>,
    ) -> Result<Worker, WorkerError> {
        let extras = Extras {
            files,
            ..Extras::default()
        };
        Self::start_with(cfg, mesh, nats, store, extras).await
    }

    /// [`Worker::start`], with what is optional: file sharing and the push notifier
    /// (without them their operations answer `unavailable`).
    pub async fn start_with(
        cfg: WorkerConfig,
        mesh: MeshConfig,
        nats: Client,
        store: Store,
        extras: Extras,
    ) -> Result<Worker, WorkerError> {
        let Extras { files, push, admin } = extras;
        let mut problems = cfg.problems();
        problems.extend(mesh.problems());
        problems.extend(admin.problems());
        if !problems.is_empty() {
            return Err(WorkerError::Config(problems));
        }
        check_server(&nats)?;
        crate::metrics::describe();
        let js = jetstream::ContextBuilder::new()
            .timeout(JS_TIMEOUT)
            .build(nats.clone());
        // With `mesh.regional_workers`, a worker of such a region serves that region's stream
        // only; the primary's serve the rest (docs/REGIONS.md section 12).
        let topology = mesh.topology();
        let workers_region = topology
            .workers_of(mesh.region.as_deref())
            .map(str::to_owned);
        if let Some(r) = mesh.region.as_deref() {
            if !topology.has_own_workers(r) {
                return Err(WorkerError::Config(vec![format!(
                    "mesh.region {r:?} runs no workers of its own: list it in mesh.regional_workers, or run this worker in the primary region"
                )]));
            }
        }
        let served = topology.served_streams(workers_region.as_deref());
        let streams = ensure_served(&js, &mesh, &served).await?;
        let model = Model::new(store.clone()).with_group_commit(
            Duration::from_millis(cfg.batch_linger_ms),
            cfg.batch_max_messages.saturating_mul(4),
        );
        for (s, stream) in streams.iter() {
            let last = crate::streams::last_seq(stream)
                .await
                .map_err(|e| WorkerError::stream("reading the stream info", e))?;
            let first = s * topology.per_stream();
            for partition in first..first + topology.per_stream() {
                let checkpoint = model.checkpoint(partition).await?;
                if checkpoint > last {
                    return Err(WorkerError::StreamBehindStore {
                        partition,
                        checkpoint,
                        last,
                    });
                }
            }
        }
        let partitions = topology.count();
        let caches = Arc::new(Caches::new(cfg.cache_sizes()));
        let progress = Arc::new(Progress::new(partitions));
        let halt = Arc::new(crate::consumer::Halt::default());
        let events = Events::new(nats.clone(), streams.event_log());
        let service = Service::new(model.clone(), caches.clone(), &cfg, Some(events))?;
        let search = cfg
            .search
            .enabled
            .then(|| crate::search::Indexes::new(&cfg.search_dir(), partitions, &cfg.search));
        if let Some(search) = &search {
            service.enable_search(search.clone());
        }
        if workers_region.is_some() {
            let peers = crate::peers::Peers::new(nats.clone(), mesh.partitions);
            service.accounts_in_primary(crate::service::Primary(peers));
        }
        let owned: Arc<[AtomicBool]> = (0..partitions).map(|_| AtomicBool::new(false)).collect();
        let owns: crate::files::Owns = {
            let (owned, topology) = (owned.clone(), topology.clone());
            Arc::new(move |room: &str| {
                topology
                    .partition_of(room)
                    .and_then(|p| owned.get(p as usize))
                    .is_some_and(|o| o.load(Ordering::Acquire))
            })
        };
        let audit_days = admin.audit_retention_days;
        service.enable_admin(admin);
        service.warn_unregistered_admins().await;
        if cfg.history_wait_ms >= mesh.duplicate_window_secs.saturating_mul(1_000) {
            warn!(
                history_wait_ms = cfg.history_wait_ms,
                duplicate_window_secs = mesh.duplicate_window_secs,
                "worker.history_wait_ms is not shorter than mesh.duplicate_window_secs: two \
                 commits for one epoch of an e2ee room, the first waiting in a lagging store \
                 longer than the window, can both be acked (docs/E2EE.md); keep the wait well \
                 under the window"
            );
        }
        service.follow_stream(StreamTail {
            streams: streams.clone(),
            progress: progress.clone(),
            partitions: mesh.partitions,
            wait: Duration::from_millis(cfg.history_wait_ms),
            waiters: StreamTail::waiters(cfg.service_concurrency),
        });
        let retention = crate::retention::Retention::new(
            model.clone(),
            Some(caches.clone()),
            cfg.retention.clone(),
        )
        .with_search(search.clone())
        .only_owned(owns.clone())
        .with_audit(audit_days);
        let imported = model.clone();
        let writer = Writer {
            model,
            caches,
            progress,
            streams,
            consumer: ConsumerSettings {
                ack_wait: Duration::from_secs(cfg.ack_wait_secs),
                max_ack_pending: i64::try_from(cfg.batch_max_messages * 4).unwrap_or(i64::MAX),
                ack_interval: Duration::from_millis(cfg.ack_interval_ms),
            },
            batch_max: cfg.batch_max_messages,
            search: search.clone(),
            trim: crate::consumer::TrimEvery::of(&mesh),
            halt: halt.clone(),
        };
        let shutdown = CancellationToken::new();
        let limit = Arc::new(Semaphore::new(cfg.service_concurrency));
        let mut tasks = JoinSet::new();
        let mut writers_ready = Vec::new();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            crate::retention::run(retention, stop).await;
            Ok(())
        });
        if let Some(search) = search {
            let stop = shutdown.clone();
            let reindex = (search.clone(), owns.clone(), stop.clone());
            tasks.spawn(async move {
                search.run(stop).await;
                Ok(())
            });
            let (search, owns, stop) = reindex;
            tasks.spawn(async move {
                crate::search::reindex::run(imported, search, owns, stop).await;
                Ok(())
            });
        }
        for _ in 0..partitions {
            writers_ready.push(Arc::new(AtomicBool::new(false)));
        }
        let spawn: SpawnPartition = {
            let (ready, owned, nats) = (writers_ready.clone(), owned.clone(), nats.clone());
            let topology = topology.clone();
            let service = service.clone();
            Box::new(move |p, stop| {
                let mut set = JoinSet::new();
                let flag = ready[p as usize].clone();
                let w = writer.clone();
                let stop2 = stop.clone();
                set.spawn(async move {
                    consumer::run_partition(w, p, flag, stop2).await;
                    Ok(())
                });
                set.spawn(serve_partition(
                    service.clone(),
                    nats.clone(),
                    topology.partition_services(p),
                    limit.clone(),
                    stop.clone(),
                ));
                owned[p as usize].store(true, Ordering::Release);
                let owned = owned.clone();
                set.spawn(async move {
                    stop.cancelled().await;
                    owned[p as usize].store(false, Ordering::Release);
                    Ok(())
                });
                set
            })
        };
        if let Some(files) = files {
            crate::files::start(&service, files, owns, &mut tasks, shutdown.clone());
        }
        if let (Some(_), Some(r)) = (&push, &workers_region) {
            // Push targets and settings are the users': the primary's notifier pushes for
            // every region's rooms.
            info!(region = %r, "push notifications are sent by the primary region's workers");
        }
        if let (Some(push), None) = (push, &workers_region) {
            crate::push::start(
                &service,
                push,
                &topology,
                nats.clone(),
                &mut tasks,
                shutdown.clone(),
            )
            .map_err(|e| WorkerError::Push(Box::new(e)))?;
        }
        let me = crate::ownership::new_worker_id();
        info!(worker = %me, mode = ?cfg.ownership.mode, "partition ownership");
        tasks.spawn(crate::ownership::run(
            cfg.ownership.clone(),
            js.clone(),
            nats.clone(),
            crate::ownership::Scope {
                partitions: topology.served_partitions(workers_region.as_deref()),
                buckets: chatmesh_protocol::subjects::OwnershipBuckets::of(
                    workers_region.as_deref(),
                ),
                cluster: workers_region.clone(),
                replicas: mesh.replicas,
            },
            me.clone(),
            spawn,
            shutdown.clone(),
        ));
        // Wait (bounded) until the first partitions run, so callers can use us at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !owned.iter().any(|o| o.load(Ordering::Acquire))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Subscriptions must be registered at the server before we call ourselves started.
        nats.flush()
            .await
            .map_err(|e| WorkerError::nats("flush", e))?;
        info!(partitions, regions = ?mesh.regions, workers_of = ?workers_region, "worker started");
        Ok(Worker {
            shutdown,
            tasks,
            writers_ready,
            owned,
            id: me,
            nats,
            store,
            halt,
            service,
        })
    }

    /// Connected to NATS, running at least one partition, and the store writer of every
    /// partition it runs has its consumer.
    pub fn ready(&self) -> bool {
        let mut running = self
            .owned
            .iter()
            .zip(&self.writers_ready)
            .filter(|(o, _)| o.load(Ordering::Acquire))
            .peekable();
        self.nats.connection_state() == async_nats::connection::State::Connected
            && running.peek().is_some()
            && running.all(|(_, r)| r.load(Ordering::Acquire))
    }

    /// The partitions this worker runs now.
    pub fn partitions(&self) -> Vec<u32> {
        (0u32..)
            .zip(self.owned.iter())
            .filter(|(_, o)| o.load(Ordering::Acquire))
            .map(|(p, _)| p)
            .collect()
    }

    /// This worker's id (registry key, lease holder; rendezvous hashing ranks it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The services, for in-process callers.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Resolves when a partition task fails (they run until shutdown otherwise), the store
    /// can no longer write (nothing more would be stored, and a new process or a standby
    /// recovers from the journal), or a store writer found the stream replaced under the
    /// store (a start on it is refused too).
    pub async fn failed(&mut self) -> WorkerError {
        let store = self.store.clone();
        let halt = self.halt.clone();
        let tasks = first_failure(&mut self.tasks);
        tokio::select! {
            e = tasks => e,
            e = store.failed() => {
                tracing::error!(error = %e, "the store failed: the worker stops");
                WorkerError::Store(e)
            }
            e = halt.stopped() => e,
        }
    }

    /// Stops every task (each finishes its current batch or request) and flushes the store.
    pub async fn stop(mut self) -> Result<(), WorkerError> {
        self.shutdown.cancel();
        let mut first_error = None;
        while let Some(res) = self.tasks.join_next().await {
            let err = match res {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(e) => WorkerError::Task(e),
            };
            first_error.get_or_insert(err);
        }
        self.store.flush().await?;
        info!("worker stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// What a worker may run besides its partitions.
#[derive(Debug, Default)]
pub struct Extras {
    /// File sharing: thumbnails, the sweeper, the file operations.
    pub files: Option<crate::service::Files>,
    /// The push notifier and the push operations.
    pub push: Option<crate::push::Push>,
    /// `[admin]`: the server admins (the admin operations check them) and the audit log's
    /// retention. The default has no admin.
    pub admin: chatmesh_protocol::admin::AdminConfig,
}

/// Runs a worker (with `extras`) until `shutdown` resolves (or a partition task fails),
/// then stops it.
pub async fn run(
    cfg: WorkerConfig,
    mesh: MeshConfig,
    nats: Client,
    store: Store,
    extras: Extras,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let mut worker = Worker::start_with(cfg, mesh, nats, store, extras).await?;
    let failure = tokio::select! {
        _ = shutdown => None,
        e = worker.failed() => Some(e),
    };
    let stopped = worker.stop().await;
    match failure {
        Some(e) => Err(e),
        None => stopped,
    }
}

/// Refuses servers older than 2.11 (they silently ignore settings chatmesh relies on).
fn check_server(nats: &Client) -> Result<(), WorkerError> {
    let found = nats.server_info().version;
    if found.is_empty() {
        // Not connected yet (a client built with `retry_on_initial_connect`): nothing to check.
        warn!("nats-server version unknown at start; not checked");
        return Ok(());
    }
    let mut parts = found.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (2, 11) {
        return Err(WorkerError::ServerTooOld { found });
    }
    Ok(())
}

/// Resolves with the first of `tasks` to fail (an error, or a panic as
/// [`WorkerError::Task`]); tasks that end well are let go, and with none left it waits for
/// ever. The tasks it watches run until shutdown, so an end like that is a part of the
/// process that stopped working.
pub(crate) async fn first_failure(
    tasks: &mut tokio::task::JoinSet<Result<(), WorkerError>>,
) -> WorkerError {
    loop {
        match tasks.join_next().await {
            Some(Ok(Ok(()))) => continue,
            Some(Ok(Err(e))) => return e,
            Some(Err(e)) => return WorkerError::Task(e),
            None => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that panics or fails is reported; one that ends well is let go.
    #[tokio::test]
    async fn the_first_failing_task_is_reported() {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async { Ok(()) });
        tasks.spawn(async { panic!("a loop that broke") });
        let e = first_failure(&mut tasks).await;
        assert!(matches!(e, WorkerError::Task(_)), "{e}");
        tasks.spawn(async { Err(WorkerError::nats_msg("gone")) });
        let e = first_failure(&mut tasks).await;
        assert!(matches!(e, WorkerError::Nats { .. }), "{e}");
    }
}
