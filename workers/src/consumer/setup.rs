//! (Re)creating a partition's durable pull consumer so that it delivers, in stream order, from
//! the first message the store does not have yet. Deleting and creating is the only way: the
//! server refuses to change a consumer's start position with an update.
//!
//! The consumer keeps its state in memory (`memory_storage`): the store's checkpoint is the
//! state that counts, and every session recreates the consumer from it anyway, so a
//! nats-server restart that forgets the consumer only ends the session. With file storage
//! nats-server rewrote each consumer's state file (a temp file, a write and a rename) up to
//! ten times a second, 160 a second for 16 partitions: 1.24x of its CPU per message at
//! 1,000 sends/s (docs/PERFORMANCE.md, eighth sitting).

use std::time::Duration;

use async_nats::jetstream::consumer::pull::{self, Config};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{ConsumerErrorKind, Stream};
use async_nats::jetstream::ErrorCode;
use chatmesh_protocol::subjects::store_consumer;

use super::SessionError;

/// Settings of a store-writer consumer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsumerSettings {
    pub ack_wait: Duration,
    pub max_ack_pending: i64,
    /// Longest time a stored message waits for its ack (`worker.ack_interval_ms`).
    pub ack_interval: Duration,
}

/// Deletes `store-p{p}` (on worker partition `p`'s stream, reading `filter`) if it exists and
/// creates it again starting at `start_seq`.
pub(crate) async fn recreate(
    stream: &Stream,
    p: u32,
    filter: &str,
    start_seq: u64,
    s: ConsumerSettings,
) -> Result<PullConsumer, SessionError> {
    let name = store_consumer(p);
    if let Err(e) = stream.delete_consumer(&name).await {
        let missing = matches!(e.kind(), ConsumerErrorKind::JetStream(j)
            if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND);
        if !missing {
            return Err(SessionError::consumer(format!("deleting {name}"), e));
        }
    }
    let config = Config {
        durable_name: Some(name.clone()),
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: start_seq.max(1),
        },
        ack_policy: AckPolicy::All,
        ack_wait: s.ack_wait,
        filter_subject: filter.to_owned(),
        max_ack_pending: s.max_ack_pending,
        memory_storage: true,
        ..Default::default()
    };
    stream
        .create_consumer::<pull::Config>(config)
        .await
        .map_err(|e| SessionError::consumer(format!("creating {name}"), e))
}
