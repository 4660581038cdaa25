//! chatmesh workers: they persist every chat message from JetStream to the store, keep the
//! caches that make history and access checks cheap, and answer the request-reply services
//! gateways call (accounts, rooms, membership, history, cursors, files, push targets), make
//! thumbnails and sweep unused files ([`files`]), and push offline members ([`push`]).
//!
//! Layers, bottom up: [`store`] (the ordered-KV trait and its backends), [`model`] (the chat
//! data model over the trait, written once), [`cache`] (moka caches wrapping the model),
//! then the two users of all that: the per-partition store writer ([`writer`] for the
//! store side, `consumer` for the JetStream side) and the [`service`]s. [`run`] wires them to NATS; the `chatmesh` binary calls it.

pub mod cache;
pub mod config;
mod consumer;
pub mod edits;
pub mod error;
pub mod events;
pub mod export;
pub mod files;
pub mod groups;
pub mod metrics;
pub mod model;
pub mod notifier;
pub mod ownership;
pub mod peers;
pub mod progress;
pub mod push;
pub mod reactions;
pub mod retention;
pub mod search;
pub mod service;
pub mod store;
pub mod streams;
mod worker;
pub mod writer;

pub use config::{Backend, FsyncPolicy, WorkerConfig};
pub use error::WorkerError;
pub use service::Files;
pub use service::Service;
pub use store::{KvStore, Store, StoreError};
pub use streams::ensure_stream;
pub use worker::{run, Extras, Worker};

/// How often a standby tries to take the embedded store's lock.
pub const STANDBY_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// Opens the configured store, waiting as a hot standby while another live process holds it
/// (with `cfg.standby`; without it a locked store is an error, as in [`open_store`]). The
/// lock is tried every [`STANDBY_RETRY`]; the OS releases it when its holder dies, so a
/// standby takes over a killed worker's store at once. Gauge `chatmesh_worker_standby` is 1
/// while waiting, 0 once the store is open. `None` when `stop` resolves first.
pub async fn open_store_or_wait(
    cfg: &WorkerConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Option<Store>, StoreError> {
    crate::metrics::describe();
    let gauge = ::metrics::gauge!(crate::metrics::STANDBY);
    tokio::pin!(stop);
    let mut waiting_since: Option<std::time::Instant> = None;
    loop {
        let next = tokio::time::Instant::now() + STANDBY_RETRY;
        // Not raced against `stop`: an attempt takes at most ~200 ms (fjall's own retries),
        // and a store opened by an abandoned attempt would be closed unflushed.
        let probe = (
            cfg.data_dir.clone(),
            cfg.standby && cfg.backend == Backend::Fjall,
        );
        let held = probe.1
            && tokio::task::spawn_blocking(move || store::FjallStore::held_elsewhere(&probe.0))
                .await
                .unwrap_or(false);
        let opened = if held {
            Err(StoreError::Locked {
                path: cfg.data_dir.display().to_string(),
            })
        } else {
            open_store(cfg).await
        };
        match opened {
            Ok(store) => {
                gauge.set(0.0);
                if let Some(since) = waiting_since {
                    tracing::warn!(
                        waited_ms = since.elapsed().as_millis() as u64,
                        "store lock released: the standby opened the store and takes over"
                    );
                }
                return Ok(Some(store));
            }
            Err(StoreError::Locked { path }) if cfg.standby => {
                if waiting_since.is_none() {
                    tracing::info!(
                        %path,
                        "store locked by another live worker: waiting as a standby, trying \
                         the lock every {} ms",
                        STANDBY_RETRY.as_millis()
                    );
                    waiting_since = Some(std::time::Instant::now());
                    gauge.set(1.0);
                }
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            biased;
            _ = &mut stop => {
                tracing::info!("standby stopped before taking over the store");
                return Ok(None);
            }
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// Opens the configured store backend.
pub async fn open_store(cfg: &WorkerConfig) -> Result<Store, StoreError> {
    match cfg.backend {
        Backend::Fjall => {
            let (dir, fsync) = (cfg.data_dir.clone(), cfg.fsync);
            let memory = store::FjallMemory {
                cache_bytes: cfg.store_cache_mb.saturating_mul(1 << 20),
                memtable_bytes: cfg.store_memtable_mb.saturating_mul(1 << 20),
            };
            let store =
                tokio::task::spawn_blocking(move || store::FjallStore::open(&dir, fsync, memory))
                    .await
                    .map_err(StoreError::Task)??;
            Ok(Store::Fjall(store))
        }
        #[cfg(feature = "tikv")]
        Backend::Tikv => Ok(Store::Tikv(store::TikvStore::connect(&cfg.tikv).await?)),
        #[cfg(not(feature = "tikv"))]
        Backend::Tikv => Err(StoreError::Open {
            path: cfg.tikv.pd_endpoints.join(","),
            detail: "this build has no TiKV backend: build with `--features tikv`".into(),
        }),
    }
}
