//! chatmesh workers: they persist every chat message from JetStream to the store, keep the
//! caches that make history and access checks cheap, and answer the request-reply services
//! gateways call (accounts, rooms, membership, history, cursors).
//!
//! Layers, bottom up: [`store`] (the ordered-KV trait and its backends), [`model`] (the chat
//! data model over the trait, written once), [`cache`] (moka caches wrapping the model),
//! then the two users of all that: the per-partition store writer ([`writer`] for the
//! store side, `consumer` for the JetStream side) and the [`service`]s. [`run`] wires them to NATS; the `chatmesh` binary calls it.

pub mod cache;
pub mod config;
mod consumer;
pub mod error;
pub mod export;
pub mod metrics;
pub mod model;
pub mod ownership;
pub mod retention;
pub mod service;
pub mod store;
pub mod streams;
mod worker;
pub mod writer;

pub use config::{Backend, FsyncPolicy, WorkerConfig};
pub use error::WorkerError;
pub use service::Service;
pub use store::{KvStore, Store, StoreError};
pub use streams::ensure_stream;
pub use worker::{run, Worker};

/// Opens the configured store backend.
pub async fn open_store(cfg: &WorkerConfig) -> Result<Store, StoreError> {
    match cfg.backend {
        Backend::Fjall => {
            let (dir, fsync) = (cfg.data_dir.clone(), cfg.fsync);
            let cache = cfg.store_cache_mb.saturating_mul(1 << 20);
            let store =
                tokio::task::spawn_blocking(move || store::FjallStore::open(&dir, fsync, cache))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))??;
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
