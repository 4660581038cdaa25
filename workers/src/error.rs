//! Errors of the worker as a whole: what `run` returns to the binary. Errors of a request
//! never get here (they become replies), nor do store-writer errors (it retries).

use crate::store::StoreError;

/// Why the worker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("nats-server {found} is too old: chatmesh needs 2.11 or newer")]
    ServerTooOld { found: String },
    #[error("JetStream stream setup: {0}")]
    Stream(String),
    #[error(
        "the store has partition {partition} up to stream seq {checkpoint}, but stream CHAT \
         ends at {last}: the stream was deleted or replaced; use the store that belongs to \
         this stream (or a new data_dir)"
    )]
    StreamBehindStore {
        partition: u32,
        checkpoint: u64,
        last: u64,
    },
    #[error("NATS: {0}")]
    Nats(String),
    #[error("worker task failed: {0}")]
    Task(String),
}
