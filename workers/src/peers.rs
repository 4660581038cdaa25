//! Asks of other workers over NATS (docs/REGIONS.md section 12): with
//! `mesh.regional_workers` a worker's store holds only part of the data, so a region's own
//! workers ask the primary's for accounts, and the primary's push notifier asks a region's
//! workers for the kind and members of the rooms stored there. Each ask is one request on
//! the key's service subject, bounded by [`ASK_TIMEOUT`].

use std::time::Duration;

use async_nats::Client;
use chatmesh_protocol::service::{Op, Reply};
use chatmesh_protocol::subjects::svc_subject;
use chatmesh_protocol::ApiError;
use tracing::warn;

/// How long one ask may take.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Other workers, reached through NATS.
#[derive(Debug, Clone)]
pub struct Peers {
    nats: Client,
    partitions: u32,
}

impl Peers {
    /// Peers on `nats`, with `partitions` per stream (`mesh.partitions`).
    pub fn new(nats: Client, partitions: u32) -> Self {
        Self { nats, partitions }
    }

    /// Calls `O` on the workers that own `key` (a user: the primary's; a room: its home's).
    /// A transport failure is `unavailable`; the service's own answer is passed on.
    pub async fn ask<O: Op>(&self, key: &str, req: &O::Request) -> Result<O::Response, ApiError> {
        let subject = svc_subject(self.partitions, key, O::NAME);
        let payload = serde_json::to_vec(req).map_err(|_| ApiError::internal())?;
        let request = async_nats::Request::new()
            .payload(payload.into())
            .headers(natskit::deadline::headers(ASK_TIMEOUT))
            .timeout(Some(ASK_TIMEOUT));
        let reply = self
            .nats
            .send_request(subject, request)
            .await
            .map_err(|e| {
                warn!(op = O::NAME, key, error = %e, "other workers did not answer");
                ApiError::unavailable(format!(
                    "{}: the workers that keep {key:?} do not answer",
                    O::NAME
                ))
            })?;
        let reply: Reply<O::Response> = serde_json::from_slice(&reply.payload).map_err(|e| {
            warn!(op = O::NAME, error = %e, "undecodable answer from other workers");
            ApiError::internal()
        })?;
        reply.into_result()
    }

    /// [`Peers::ask`], with `not_found` as `None`.
    pub async fn ask_found<O: Op>(
        &self,
        key: &str,
        req: &O::Request,
    ) -> Result<Option<O::Response>, ApiError> {
        match self.ask::<O>(key, req).await {
            Ok(answer) => Ok(Some(answer)),
            Err(e) if e.code == chatmesh_protocol::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
