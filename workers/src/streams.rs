//! The JetStream streams every chat message goes through, created or brought up to date
//! idempotently at start: starting against a stream that already has this config changes
//! nothing, and a changed setting (retention, replicas) is applied with an update that keeps
//! every field the server chose itself.
//!
//! One region has one stream, `CHAT`. With `mesh.regions` (docs/REGIONS.md) there is `CHAT`
//! (rooms without a home region) in the primary region and `CHAT_<r>` in each region `r`,
//! each placed in its region's NATS cluster, and in every other region a mirror of each
//! (`<stream>_M_<region>`): reads there are served locally, and stay possible while the
//! stream's home region is cut off.
//!
//! Each room's subject holds at most `stream_max_msgs_per_room` messages, and what is over
//! the cap is refused, never dropped: the stream only loses a message by age
//! (`stream_max_age_secs`) or when a worker purges what it has stored ([`trim_below`]).

use std::time::Duration;

use async_nats::jetstream::stream::{self, DiscardPolicy, Republish, StorageType};
use async_nats::jetstream::stream::{Placement, Source};
use async_nats::jetstream::Context;
use chatmesh_protocol::regions::Topology;
use chatmesh_protocol::subjects::{
    mirror_name, partitions_mismatch, stream_republish, stream_subjects, EVENT_LOG, MEMBER_ALL,
    PARTITIONS_KEY, PRESENCE_BUCKET, PRESENCE_REPUBLISH, USER_ALL,
};
use chatmesh_protocol::MeshConfig;
use tracing::info;

use crate::error::WorkerError;

/// The last seq `stream` holds. A store checkpoint above it was written from another stream
/// (deleted and made again, or an older copy): the worker's start and each store writer's
/// session check it.
pub async fn last_seq(stream: &stream::Stream) -> Result<u64, stream::InfoError> {
    Ok(stream.clone().info().await?.state.last_sequence)
}

/// The message streams a worker serves, by stream index ([`Topology`]): every stream, or
/// with `mesh.regional_workers` those of its region's workers.
#[derive(Debug, Clone)]
pub struct Streams {
    topology: Topology,
    streams: std::sync::Arc<[Option<stream::Stream>]>,
    event_log: bool,
}

impl Streams {
    /// The deployment's streams and partitions.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The stream worker partition `g` reads; `None` if this worker does not serve it.
    pub fn of_partition(&self, g: u32) -> Option<&stream::Stream> {
        let s = usize::try_from(g / self.topology.per_stream()).ok()?;
        self.streams.get(s)?.as_ref()
    }

    /// The stream of `room` and its worker partition; `None` for an unknown home region or
    /// a stream this worker does not serve.
    pub fn of_room(&self, room: &str) -> Option<(u32, &stream::Stream)> {
        let g = self.topology.partition_of(room)?;
        Some((g, self.of_partition(g)?))
    }

    /// Whether the event log is there to confirm events: made or brought up to date by the
    /// primary's workers, taken to be there by a region's own (the primary makes it).
    pub fn event_log(&self) -> bool {
        self.event_log
    }

    /// Each stream served here with its stream index.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &stream::Stream)> {
        (0u32..)
            .zip(self.streams.iter())
            .filter_map(|(s, stream)| Some((s, stream.as_ref()?)))
    }
}

/// The config of message stream `s` (0 = `CHAT`) for this deployment.
pub fn stream_config(mesh: &MeshConfig, s: u32) -> stream::Config {
    let topology = mesh.topology();
    let mut cfg = stream::Config {
        name: topology.stream_name(s),
        storage: StorageType::File,
        ..Default::default()
    };
    if topology.has_regions() {
        cfg.placement = Some(Placement {
            cluster: Some(topology.home_of_stream(s).to_owned()),
            ..Default::default()
        });
    }
    apply(&mut cfg, mesh, s);
    cfg
}

/// The config of the mirror of message stream `s` kept in `region`: a read copy, with the
/// origin's seqs and subjects, answering direct gets for the origin in its region.
pub fn mirror_config(mesh: &MeshConfig, s: u32, region: &str) -> stream::Config {
    let origin = mesh.topology().stream_name(s);
    stream::Config {
        name: mirror_name(&origin, region),
        storage: StorageType::File,
        mirror: Some(Source {
            name: origin,
            ..Default::default()
        }),
        placement: Some(Placement {
            cluster: Some(region.to_owned()),
            ..Default::default()
        }),
        num_replicas: mesh.replicas,
        max_age: Duration::from_secs(mesh.stream_max_age_secs),
        allow_direct: true,
        ..Default::default()
    }
}

/// Sets the fields chatmesh manages; leaves the rest as they are.
fn apply(cfg: &mut stream::Config, mesh: &MeshConfig, s: u32) {
    let topology = mesh.topology();
    let (region, regions) = (topology.stream_region(s), topology.has_regions());
    cfg.subjects = vec![stream_subjects(region, regions)];
    cfg.num_replicas = mesh.replicas;
    cfg.max_age = Duration::from_secs(mesh.stream_max_age_secs);
    cfg.max_messages_per_subject = mesh.stream_max_msgs_per_room;
    cfg.duplicate_window = Duration::from_secs(mesh.duplicate_window_secs);
    cfg.allow_direct = true;
    cfg.metadata
        .insert(PARTITIONS_KEY.to_owned(), mesh.partitions.to_string());
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
        source: stream_subjects(region, regions),
        destination: stream_republish(region, regions),
        headers_only: false,
    });
}

/// Creates every message stream of the deployment and, with regions, their mirrors, or
/// updates them if their managed settings differ from `mesh`.
pub async fn ensure_streams(js: &Context, mesh: &MeshConfig) -> Result<Streams, WorkerError> {
    let all: Vec<u32> = (0..mesh.topology().streams()).collect();
    ensure_served(js, mesh, &all).await
}

/// Like [`ensure_streams`] for the streams `served` (their indexes) only: a region's own
/// workers create and check their region's stream and its mirrors, never the primary's, so
/// they start while the primary is cut off.
pub async fn ensure_served(
    js: &Context,
    mesh: &MeshConfig,
    served: &[u32],
) -> Result<Streams, WorkerError> {
    let topology = mesh.topology();
    let mut streams = Vec::new();
    for s in 0..topology.streams() {
        streams.push(match served.contains(&s) {
            true => Some(ensure_one(js, mesh, s).await?),
            false => None,
        });
    }
    // Mirrors after their origins: a mirror made before its origin cannot take over the
    // origin's `allow_direct` (docs/REGIONS.md, 3).
    // A region's own workers start while another region is cut off: a mirror of their
    // stream that cannot be made there now is made at their next start (reads in that
    // region go to the stream's home meanwhile). The primary's workers need theirs.
    let mirrors_required = served.contains(&0);
    // Without the event log gateways still catch up, by asking about everyone: a bus whose
    // permissions predate it (an `auth.conf` from an older `chatmesh nats-auth`) does not
    // stop the workers.
    let mut event_log = true;
    if mirrors_required {
        // The gateways write the presence bucket but cannot make it (their key cannot change
        // a stream's settings): without it, presence stays empty until it is made.
        if let Err(e) = ensure_presence(js, mesh).await {
            tracing::warn!(
                error = %chatmesh_protocol::error::Chain(&e),
                "the presence bucket could not be made or updated: presence and push's online check stay empty until it is (an auth.conf older than this: run `chatmesh nats-auth` again and reload the servers)"
            );
        }
        if let Err(e) = ensure_event_log(js, mesh).await {
            event_log = false;
            tracing::warn!(
                stream = EVENT_LOG,
                error = %chatmesh_protocol::error::Chain(&e),
                "the event log could not be made or updated: gateways ask about every user of their rooms after a NATS loss until it is (an auth.conf older than it: run `chatmesh nats-auth` again and reload the servers)"
            );
        }
    }
    for s in served.iter().copied() {
        for region in topology.regions() {
            if region == topology.home_of_stream(s) {
                continue;
            }
            match ensure_mirror(js, mesh, s, region).await {
                Ok(()) => {}
                Err(e) if !mirrors_required => {
                    tracing::warn!(region, error = %chatmesh_protocol::error::Chain(&e), "mirror not made; retried at the next start");
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Streams {
        topology,
        streams: streams.into(),
        event_log,
    })
}

/// How long the event log keeps an event: a gateway away from NATS for longer asks about
/// every user of its rooms again instead of reading what it missed.
pub const EVENT_LOG_KEEP: Duration = Duration::from_secs(3600);
/// The most the event log holds; the oldest events go first.
const EVENT_LOG_MAX_BYTES: i64 = 256 * 1024 * 1024;

/// The config of the event log ([`EVENT_LOG`]): the membership and account events as
/// workers publish them, kept [`EVENT_LOG_KEEP`] on file, read by direct get only. With
/// regions it lives in the primary's cluster, beside the accounts.
pub fn event_log_config(mesh: &MeshConfig) -> stream::Config {
    let mut cfg = stream::Config {
        name: EVENT_LOG.to_owned(),
        storage: StorageType::File,
        placement: mesh.regions.first().map(|primary| Placement {
            cluster: Some(primary.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    apply_event_log(&mut cfg, mesh);
    cfg
}

/// Sets the fields of the event log chatmesh manages; leaves the rest as they are.
fn apply_event_log(cfg: &mut stream::Config, mesh: &MeshConfig) {
    cfg.subjects = vec![MEMBER_ALL.to_owned(), USER_ALL.to_owned()];
    cfg.num_replicas = mesh.replicas;
    cfg.max_age = EVENT_LOG_KEEP;
    cfg.max_bytes = EVENT_LOG_MAX_BYTES;
    cfg.discard = DiscardPolicy::Old;
    cfg.allow_direct = true;
}

/// Creates the event log, or brings its managed settings up to date.
pub async fn ensure_event_log(js: &Context, mesh: &MeshConfig) -> Result<(), WorkerError> {
    managed(js, event_log_config(mesh), |cfg| {
        apply_event_log(cfg, mesh);
        Ok(())
    })
    .await
    .map(drop)
}

/// Creates or updates the gateways' presence bucket (`CHAT_PRESENCE`, keys with a TTL,
/// every change republished to the gateways), in the primary region with regions.
pub async fn ensure_presence(js: &Context, mesh: &MeshConfig) -> Result<(), WorkerError> {
    let primary = mesh.regions.first().map(String::as_str);
    natskit::ensure_ttl_bucket(
        js,
        PRESENCE_BUCKET,
        mesh.replicas,
        Some(PRESENCE_REPUBLISH),
        primary,
    )
    .await
    .map_err(|e| WorkerError::stream("creating or updating the presence bucket", e))
}

/// Creates the mirror of stream `s` in `region` if it does not exist (a mirror's settings
/// are its origin's; nothing to update).
async fn ensure_mirror(
    js: &Context,
    mesh: &MeshConfig,
    s: u32,
    region: &str,
) -> Result<(), WorkerError> {
    let cfg = mirror_config(mesh, s, region);
    let name = cfg.name.clone();
    js.get_or_create_stream(cfg)
        .await
        .map_err(|e| WorkerError::stream(format!("get or create mirror {name}"), e))?;
    Ok(())
}

/// [`ensure_served`] for the streams a worker of `mesh.region` serves: every stream, or with
/// `mesh.regional_workers` its own region's only, so that a region's worker starts (and
/// restarts) while the primary is cut off.
pub async fn ensure_own(js: &Context, mesh: &MeshConfig) -> Result<Streams, WorkerError> {
    let topology = mesh.topology();
    let served = topology.served_streams(topology.workers_of(mesh.region.as_deref()));
    ensure_served(js, mesh, &served).await
}

/// [`ensure_streams`], returning stream `CHAT`.
pub async fn ensure_stream(js: &Context, mesh: &MeshConfig) -> Result<stream::Stream, WorkerError> {
    ensure_streams(js, mesh)
        .await?
        .of_partition(0)
        .cloned()
        .ok_or_else(|| WorkerError::stream_msg("stream CHAT was not created".to_owned()))
}

/// Creates message stream `s`, or updates it if its managed settings differ from `mesh`.
async fn ensure_one(
    js: &Context,
    mesh: &MeshConfig,
    s: u32,
) -> Result<stream::Stream, WorkerError> {
    managed(js, stream_config(mesh, s), |cfg| {
        // Checked before anything is updated: a refused process leaves the record as it is.
        let recorded = cfg.metadata.get(PARTITIONS_KEY).map(String::as_str);
        if let Some(why) = partitions_mismatch(&cfg.name, recorded, mesh.partitions) {
            return Err(WorkerError::PartitionsDiffer { why });
        }
        apply(cfg, mesh, s);
        Ok(())
    })
    .await
}

/// Creates stream `cfg` (file storage), or, when it exists, applies `manage` to the config
/// it has and updates it if that changed something: every field the server chose itself is
/// kept. An error of `manage` (the stream is not this deployment's) changes nothing.
async fn managed(
    js: &Context,
    cfg: stream::Config,
    manage: impl Fn(&mut stream::Config) -> Result<(), WorkerError>,
) -> Result<stream::Stream, WorkerError> {
    let name = cfg.name.clone();
    let mut handle = js
        .get_or_create_stream(cfg)
        .await
        .map_err(|e| WorkerError::stream(format!("get or create {name}"), e))?;
    let have = handle
        .info()
        .await
        .map_err(|e| WorkerError::stream(format!("info of {name}"), e))?
        .config
        .clone();
    if have.storage != StorageType::File {
        return Err(WorkerError::stream_msg(format!(
            "stream {name} exists with {:?} storage; chatmesh needs file storage (delete it)",
            have.storage
        )));
    }
    let mut want = have.clone();
    manage(&mut want)?;
    if want != have {
        js.update_stream(&want)
            .await
            .map_err(|e| WorkerError::stream(format!("update {name}"), e))?;
        info!(stream = name, "stream settings updated");
        handle = js
            .get_stream(&name)
            .await
            .map_err(|e| WorkerError::stream(format!("get {name}"), e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> MeshConfig {
        MeshConfig {
            regions: vec!["eu".into(), "us".into()],
            ..Default::default()
        }
    }

    #[test]
    fn one_region_keeps_the_one_stream() {
        let cfg = stream_config(&MeshConfig::default(), 0);
        assert_eq!(cfg.name, "CHAT");
        assert_eq!(cfg.subjects, vec!["chat.in.>".to_owned()]);
        assert_eq!(cfg.placement, None);
        let republish = cfg.republish.unwrap();
        assert_eq!(
            (republish.source.as_str(), republish.destination.as_str()),
            ("chat.in.>", "chat.live.>")
        );
    }

    #[test]
    fn each_region_has_its_stream_placed_at_home_and_mirrors_elsewhere() {
        let mesh = regions();
        let chat = stream_config(&mesh, 0);
        assert_eq!(chat.subjects, vec!["chat.in.*.*".to_owned()]);
        assert_eq!(chat.placement.unwrap().cluster.as_deref(), Some("eu"));
        let us = stream_config(&mesh, 2);
        assert_eq!(us.name, "CHAT_us");
        assert_eq!(us.subjects, vec!["chat.in.us.*.*".to_owned()]);
        assert_eq!(us.placement.unwrap().cluster.as_deref(), Some("us"));
        assert_eq!(
            us.republish.unwrap().destination,
            "chat.live.us.{{wildcard(1)}}.{{wildcard(2)}}"
        );
        let mirror = mirror_config(&mesh, 2, "eu");
        assert_eq!(mirror.name, "CHAT_us_M_eu");
        assert_eq!(mirror.mirror.unwrap().name, "CHAT_us");
        assert!(mirror.subjects.is_empty() && mirror.republish.is_none() && mirror.allow_direct);
        assert_eq!(mirror.placement.unwrap().cluster.as_deref(), Some("eu"));
    }
}
