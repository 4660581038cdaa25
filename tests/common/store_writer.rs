//! The store writer of one room's partition, driven through its JetStream consumer with the
//! bus's admin key: paused (nats-server 2.11+), it delivers nothing, so the worker's store
//! lags behind the stream as an overloaded worker's would.

use anyhow::{ensure, Result};
use async_nats::jetstream::stream::Stream;
use chatmesh_protocol::bus::Role;
use chatmesh_protocol::subjects::{partition, store_consumer, stream_of};

use super::WAIT;

/// The store-writer consumer of one room's partition.
pub struct StoreWriter {
    stream: Stream,
    consumer: String,
}

impl StoreWriter {
    /// The store writer of `room`'s partition on `mesh`.
    pub async fn of(mesh: &chatmesh::Mesh, room: &str) -> Result<Self> {
        let admin = async_nats::ConnectOptions::with_nkey(mesh.creds.seed(Role::Admin)?)
            .connect(mesh.nats.url())
            .await?;
        let stream = async_nats::jetstream::new(admin)
            .get_stream(stream_of(room))
            .await?;
        let consumer = store_consumer(partition(room, mesh.config.mesh.partitions));
        Ok(Self { stream, consumer })
    }

    /// Stops deliveries to the store writer (for far longer than a test runs).
    pub async fn pause(&self) -> Result<()> {
        let until = async_nats::datetime::add_std_duration(async_nats::datetime::now(), WAIT * 10)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let paused = self.stream.pause_consumer(&self.consumer, until).await?;
        ensure!(paused.paused, "{} not paused", self.consumer);
        Ok(())
    }

    /// Lets deliveries go on.
    pub async fn resume(&self) -> Result<()> {
        self.stream.resume_consumer(&self.consumer).await?;
        Ok(())
    }

    /// Fails unless the consumer is still paused and has delivered nothing at or above
    /// `seq` (a new store-writer session would have made it again, unpaused).
    pub async fn still_lacks(&mut self, seq: u64) -> Result<()> {
        let info = self.stream.consumer_info(&self.consumer).await?;
        ensure!(
            info.paused,
            "the store writer's consumer was made again: {info:?}"
        );
        ensure!(
            info.delivered.stream_sequence < seq,
            "the store writer was given seq {seq}: {info:?}"
        );
        Ok(())
    }
}
