//! The JetStream stream every chat message goes through, created or brought up to date
//! idempotently at start: starting against a stream that already has this config changes
//! nothing, and a changed setting (retention, replicas) is applied with an update that keeps
//! every field the server chose itself.

use std::time::Duration;

use async_nats::jetstream::stream::{self, DiscardPolicy, Republish, StorageType};
use async_nats::jetstream::Context;
use chatmesh_protocol::subjects::{IN_ALL, LIVE_ALL, STREAM};
use chatmesh_protocol::MeshConfig;
use tracing::info;

use crate::error::WorkerError;

/// The config of stream `CHAT` for this deployment.
pub fn stream_config(mesh: &MeshConfig) -> stream::Config {
    let mut cfg = stream::Config {
        name: STREAM.to_owned(),
        storage: StorageType::File,
        ..Default::default()
    };
    apply(&mut cfg, mesh);
    cfg
}

/// Sets the fields chatmesh manages; leaves the rest as they are.
fn apply(cfg: &mut stream::Config, mesh: &MeshConfig) {
    cfg.subjects = vec![IN_ALL.to_owned()];
    cfg.num_replicas = mesh.replicas;
    cfg.max_age = Duration::from_secs(mesh.stream_max_age_secs);
    cfg.max_messages_per_subject = mesh.stream_max_msgs_per_room;
    cfg.duplicate_window = Duration::from_secs(mesh.duplicate_window_secs);
    cfg.allow_direct = true;
    cfg.discard = DiscardPolicy::Old;
    cfg.republish = Some(Republish {
        source: IN_ALL.to_owned(),
        destination: LIVE_ALL.to_owned(),
        headers_only: false,
    });
}

/// Creates stream `CHAT`, or updates it if its managed settings differ from `mesh`.
pub async fn ensure_stream(js: &Context, mesh: &MeshConfig) -> Result<stream::Stream, WorkerError> {
    let mut handle = js
        .get_or_create_stream(stream_config(mesh))
        .await
        .map_err(|e| WorkerError::stream("get or create", e))?;
    let have = handle
        .info()
        .await
        .map_err(|e| WorkerError::stream("info", e))?
        .config
        .clone();
    if have.storage != StorageType::File {
        return Err(WorkerError::stream_msg(format!(
            "stream {STREAM} exists with {:?} storage; chatmesh needs file storage (delete it)",
            have.storage
        )));
    }
    let mut want = have.clone();
    apply(&mut want, mesh);
    if want != have {
        js.update_stream(&want)
            .await
            .map_err(|e| WorkerError::stream("update", e))?;
        info!(stream = STREAM, "stream settings updated");
        handle = js
            .get_stream(STREAM)
            .await
            .map_err(|e| WorkerError::stream("get", e))?;
    }
    Ok(handle)
}
