//! How chatmesh services connect to NATS: short pings (the 60 s default notices a dead link
//! only after minutes), endless reconnects, and the client's silent slow-consumer drops made
//! loud in logs and metrics.

use std::time::Duration;

use async_nats::{ConnectOptions, Event};

/// Connects to `urls` as `name`.
pub async fn connect(urls: &[String], name: &str) -> anyhow::Result<async_nats::Client> {
    let addrs = urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = ConnectOptions::new()
        .name(name)
        .ping_interval(Duration::from_secs(15))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(|event| async move {
            match event {
                Event::SlowConsumer(sid) => {
                    metrics::counter!("chatmesh_nats_slow_consumer_total").increment(1);
                    tracing::warn!(sid, "NATS client dropped messages of a slow subscription");
                }
                Event::Disconnected => tracing::warn!("NATS disconnected"),
                Event::Connected => tracing::info!("NATS connected"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        })
        .connect(addrs)
        .await?;
    Ok(client)
}
