//! Errors of the worker as a whole: what `run` returns to the binary. Errors of a request
//! never get here (they become replies), nor do store-writer errors (it retries).

use crate::store::StoreError;

/// The source of a NATS failure: async-nats's error types differ per call.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the worker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The message streams belong to a deployment with another `mesh.partitions`.
    #[error("{why}")]
    PartitionsDiffer { why: String },
    #[error("nats-server {found} is too old: chatmesh needs 2.11 or newer")]
    ServerTooOld { found: String },
    #[error("JetStream stream setup: {what}")]
    Stream {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
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
    #[error("NATS: {what}")]
    Nats {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("starting the push notifier")]
    Push(#[source] BoxError),
    #[error("worker task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl WorkerError {
    /// A NATS call failed while doing `what`.
    pub fn nats(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Nats {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// NATS did something unexpected (no error to keep).
    pub fn nats_msg(what: impl Into<String>) -> Self {
        Self::Nats {
            what: what.into(),
            source: None,
        }
    }

    /// Setting up a stream or bucket failed while doing `what`.
    pub fn stream(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Stream {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// The stream is not what chatmesh needs (no error to keep).
    pub fn stream_msg(what: impl Into<String>) -> Self {
        Self::Stream {
            what: what.into(),
            source: None,
        }
    }
}
