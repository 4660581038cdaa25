//! Fixtures for tests against a real nats-server (started by `natsd` on a dynamic port):
//! mesh settings, publishing like a gateway does, calling services, running workers.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, message::PublishMessage};
use chatmesh_protocol::names::dedupe_id;
use chatmesh_protocol::service::{Op, Reply};
use chatmesh_protocol::subjects::{in_subject, svc_subject};
use chatmesh_protocol::{ApiError, MeshConfig};
use chatmesh_workers::model::{HistoryQuery, Model};
use chatmesh_workers::{run, Extras, Store, WorkerConfig, WorkerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const PARTITIONS: u32 = 4;

pub fn mesh(url: String) -> MeshConfig {
    super::logs();
    MeshConfig {
        nats_urls: vec![url],
        partitions: PARTITIONS,
        ..MeshConfig::default()
    }
}

pub fn js(nats: &async_nats::Client) -> jetstream::Context {
    jetstream::new(nats.clone())
}

/// Publishes a chat message like a gateway (subject by partition, `Nats-Msg-Id`) and
/// returns its stream seq and whether JetStream saw it as a duplicate.
pub async fn publish(js: &jetstream::Context, room: &str, user: &str, id: &str) -> (u64, bool) {
    let payload = serde_json::to_vec(&super::payload(id, user, &format!("body of {id}"))).unwrap();
    let msg = PublishMessage::build()
        .payload(payload.into())
        .message_id(dedupe_id(user, room, id));
    let ack = js
        .send_publish(in_subject(PARTITIONS, room), msg)
        .await
        .unwrap()
        .await
        .unwrap();
    (ack.sequence, ack.duplicate)
}

/// Calls service `O` over NATS, keyed by `key` (the room, or the user for user-keyed ops).
pub async fn call<O: Op>(
    nats: &async_nats::Client,
    key: &str,
    req: &O::Request,
) -> Result<O::Response, ApiError> {
    let subject = svc_subject(PARTITIONS, key, O::NAME);
    let body = serde_json::to_vec(req).unwrap();
    let reply = nats.request(subject, body.into()).await.unwrap();
    serde_json::from_slice::<Reply<O::Response>>(&reply.payload)
        .unwrap()
        .into_result()
}

/// [`call`] as a gateway makes it: with the moment its caller stops waiting (ms since the
/// Unix epoch, `natskit::deadline`).
pub async fn call_by<O: Op>(
    nats: &async_nats::Client,
    key: &str,
    req: &O::Request,
    deadline: u64,
) -> Result<O::Response, ApiError> {
    let subject = svc_subject(PARTITIONS, key, O::NAME);
    let body = serde_json::to_vec(req).unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(natskit::deadline::HEADER, deadline.to_string().as_str());
    let reply = nats
        .request_with_headers(subject, headers, body.into())
        .await
        .unwrap();
    serde_json::from_slice::<Reply<O::Response>>(&reply.payload)
        .unwrap()
        .into_result()
}

/// A worker running through [`run`] on its own task.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), WorkerError>>,
}

impl Running {
    pub fn spawn(
        cfg: WorkerConfig,
        mesh: MeshConfig,
        nats: async_nats::Client,
        store: Store,
    ) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(run(cfg, mesh, nats, store, Extras::default(), shutdown));
        Self { stop, task }
    }

    /// Graceful shutdown; returns what `run` returned.
    pub async fn stop(self) -> Result<(), WorkerError> {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }

    /// As if the process died: the worker's tasks are dropped wherever they are.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Every stored message of each room: seq list equal to `want`, prev chain intact.
pub async fn stored_exactly(
    model: &Model,
    want: &BTreeMap<String, Vec<u64>>,
) -> Result<(), String> {
    for (room, seqs) in want {
        let q = HistoryQuery {
            before: None,
            after: Some(0),
            limit: 100_000,
        };
        let (msgs, more) = model.history(room, q).await.map_err(|e| e.to_string())?;
        let got: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
        if more || &got != seqs {
            return Err(format!(
                "{room}: stored {} of {} messages",
                got.len(),
                seqs.len()
            ));
        }
        let mut prev = 0;
        let mut ids = std::collections::HashSet::new();
        for m in &msgs {
            if m.prev != prev {
                return Err(format!(
                    "{room}: seq {} has prev {}, expected {prev}",
                    m.seq, m.prev
                ));
            }
            if !m.id.starts_with(&format!("{room}-")) || !ids.insert(m.id.clone()) {
                return Err(format!(
                    "{room}: seq {} has a foreign or repeated id {}",
                    m.seq, m.id
                ));
            }
            prev = m.seq;
        }
    }
    Ok(())
}

/// How many messages the store holds for these rooms.
pub async fn stored_count(model: &Model, rooms: impl Iterator<Item = &String>) -> u64 {
    let mut n = 0;
    for room in rooms {
        n += model.stats(room).await.map(|s| s.count).unwrap_or(0);
    }
    n
}
