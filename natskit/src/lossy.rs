//! When core NATS may have lost messages for this process. Core NATS is at-most-once: a
//! subscriber misses what is published while its connection is down, and the async-nats
//! client drops messages of a subscription whose buffer is full (a slow consumer), saying so
//! only in an `Event::SlowConsumer`. Whoever keeps state current from core NATS events (the
//! gateways' room access and token generations) asks again when [`losses`] changes.
//!
//! The slow-consumer count is the process's, not one client's (the event names no client):
//! with several clients in one process (`chatmesh up`, tests) a drop in one makes every one
//! of them ask again, which costs a re-check and loses nothing.

use std::sync::atomic::{AtomicU64, Ordering};

static SLOW_CONSUMER_EVENTS: AtomicU64 = AtomicU64::new(0);

/// A NATS client of this process dropped messages of a slow subscription (call it from the
/// client's event callback on `Event::SlowConsumer`).
pub fn note_slow_consumer() {
    SLOW_CONSUMER_EVENTS.fetch_add(1, Ordering::Relaxed);
}

/// Times messages may have been lost on the connection of `stats`: its (re)connects plus
/// this process's slow-consumer events. Only ever grows.
pub fn losses(stats: &async_nats::Statistics) -> u64 {
    stats.connects.load(Ordering::Relaxed) + SLOW_CONSUMER_EVENTS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A subscription that is not read while messages pile up past its buffer makes the
    /// client report a slow consumer; noted from the event callback, it moves `losses`.
    #[tokio::test]
    async fn a_slow_subscription_counts_as_a_loss() -> Result<(), Box<dyn std::error::Error>> {
        let server = natsd::NatsServer::start_temp().await?;
        let client = async_nats::ConnectOptions::new()
            .subscription_capacity(4)
            .event_callback(|event| async move {
                if let async_nats::Event::SlowConsumer(_) = event {
                    note_slow_consumer();
                }
            })
            .connect(server.url())
            .await?;
        let stats = client.statistics();
        let before = losses(&stats);
        let _unread = client.subscribe("events").await?;
        for i in 0..100u32 {
            client.publish("events", i.to_string().into()).await?;
        }
        client.flush().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while losses(&stats) == before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no slow consumer noted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}
