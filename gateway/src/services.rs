//! A typed client for the workers' request-reply services. Each call goes to the subject of
//! its key's partition, so the worker that owns the partition answers it.

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use chatmesh_protocol::service::{Op, Reply};
use chatmesh_protocol::subjects::svc_subject;
use chatmesh_protocol::ApiError;

use crate::error::GatewayError;

/// Pause between attempts while no worker answers a partition.
const NO_RESPONDER_RETRY: Duration = Duration::from_millis(100);

/// Calls worker services over NATS.
#[derive(Debug, Clone)]
pub struct Services {
    nats: async_nats::Client,
    partitions: u32,
    timeout: Duration,
}

impl Services {
    pub fn new(nats: async_nats::Client, partitions: u32, timeout: Duration) -> Self {
        Self {
            nats,
            partitions,
            timeout,
        }
    }

    /// How many partitions the mesh has.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Calls `O` for the partition of `key` (a room, or a user for user-keyed operations).
    /// The outer error is the transport's; the inner one is the service's answer.
    pub async fn call<O: Op>(
        &self,
        key: &str,
        req: &O::Request,
    ) -> Result<Result<O::Response, ApiError>, GatewayError> {
        self.request::<O>(key, req, true).await
    }

    /// Like [`Services::call`] but without waiting out a missing responder: for probes that
    /// must answer at once (readiness).
    pub async fn call_once<O: Op>(
        &self,
        key: &str,
        req: &O::Request,
    ) -> Result<Result<O::Response, ApiError>, GatewayError> {
        self.request::<O>(key, req, false).await
    }

    async fn request<O: Op>(
        &self,
        key: &str,
        req: &O::Request,
        retry: bool,
    ) -> Result<Result<O::Response, ApiError>, GatewayError> {
        let subject = svc_subject(self.partitions, key, O::NAME);
        let payload = serde_json::to_vec(req).map_err(|e| GatewayError::BadReply {
            op: O::NAME,
            detail: e.to_string(),
        })?;
        // While a partition moves between workers nobody answers for a moment: retry
        // "no responders" (nothing was processed) until the timeout.
        let give_up = tokio::time::Instant::now() + self.timeout;
        let payload = bytes::Bytes::from(payload);
        let reply = loop {
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .timeout(Some(self.timeout));
            match self.nats.send_request(subject.clone(), request).await {
                Ok(reply) => break reply,
                Err(e)
                    if retry
                        && e.kind() == RequestErrorKind::NoResponders
                        && tokio::time::Instant::now() + NO_RESPONDER_RETRY < give_up =>
                {
                    tokio::time::sleep(NO_RESPONDER_RETRY).await;
                }
                Err(e) => {
                    return Err(match e.kind() {
                        RequestErrorKind::TimedOut | RequestErrorKind::NoResponders => {
                            GatewayError::ServiceUnavailable { op: O::NAME }
                        }
                        _ => GatewayError::nats("service request", e),
                    })
                }
            }
        };
        let reply: Reply<O::Response> =
            serde_json::from_slice(&reply.payload).map_err(|e| GatewayError::BadReply {
                op: O::NAME,
                detail: e.to_string(),
            })?;
        Ok(reply.into_result())
    }

    /// Sends `O` without waiting for (or getting) an answer: for updates whose outcome the
    /// caller does not need, at the cost of one publish.
    pub async fn notify<O: Op>(&self, key: &str, req: &O::Request) {
        let subject = svc_subject(self.partitions, key, O::NAME);
        let Ok(payload) = serde_json::to_vec(req) else {
            return;
        };
        if let Err(e) = self.nats.publish(subject, payload.into()).await {
            tracing::debug!(op = O::NAME, error = %e, "service notification not sent");
        }
    }

    /// Like [`Services::call`], folding transport failures into the protocol error a client
    /// gets (logged here once).
    pub async fn ask<O: Op>(&self, key: &str, req: &O::Request) -> Result<O::Response, ApiError> {
        match self.call::<O>(key, req).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(op = O::NAME, error = %crate::error::Chain(&e), "worker service call failed");
                Err(e.api())
            }
        }
    }
}
