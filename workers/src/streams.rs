//! The JetStream stream every chat message goes through, created or brought up to date
//! idempotently at start: starting against a stream that already has this config changes
//! nothing, and a changed setting (retention, replicas) is applied with an update that keeps
//! every field the server chose itself.
//!
//! Each room's subject holds at most `stream_max_msgs_per_room` messages, and what is over
//! the cap is refused, never dropped: the stream only loses a message by age
//! (`stream_max_age_secs`) or when a worker purges what it has stored ([`trim_below`]).

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
    // A room's subject never drops a message to make room: at its cap the stream refuses the
    // next publish of that room (the gateway then asks the room's worker to trim what it has
    // stored: `room_trim`). Dropping the oldest instead lost acked messages the store writer
    // had not read yet whenever it fell further behind in one room than the cap.
    let capped = mesh.stream_max_msgs_per_room > 0;
    cfg.discard = if capped {
        DiscardPolicy::New
    } else {
        DiscardPolicy::Old
    };
    cfg.discard_new_per_subject = capped;
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

/// Purges from the stream the messages of `room` below `seq` (what its worker has stored),
/// always keeping the room's last message: the stream's republish takes a message's `prev`
/// (`Nats-Last-Sequence`) from the last message of its subject, so a room emptied here would
/// start its next message a new chain. Returns the seq purged below and how many went.
pub async fn trim_below(
    stream: &stream::Stream,
    partitions: u32,
    room: &str,
    seq: u64,
) -> Result<(u64, u64), WorkerError> {
    let subject = chatmesh_protocol::subjects::in_subject(partitions, room);
    let last = match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(m) => m.sequence,
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => return Ok((0, 0)),
        Err(e) => return Err(WorkerError::stream("last message of a room", e)),
    };
    let below = seq.min(last);
    if below <= 1 {
        return Ok((below, 0));
    }
    let done = stream
        .purge()
        .filter(subject)
        .sequence(below)
        .await
        .map_err(|e| WorkerError::stream("purge", e))?;
    Ok((below, done.purged))
}
