//! Errors of the gateway library. Clients never see these: each maps to a protocol error
//! code through [`GatewayError::api`], and the detail is logged once where it happens.

use chatmesh_protocol::{ApiError, ErrorCode};

/// What can go wrong inside the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("nats: {0}")]
    Nats(String),
    #[error("worker service {op} timed out or has no responder")]
    ServiceUnavailable { op: &'static str },
    #[error("bad reply from worker service {op}: {detail}")]
    BadReply { op: &'static str, detail: String },
    #[error("jetstream: {0}")]
    JetStream(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl GatewayError {
    /// The protocol error a client gets for this.
    pub fn api(&self) -> ApiError {
        match self {
            GatewayError::ServiceUnavailable { .. }
            | GatewayError::Nats(_)
            | GatewayError::JetStream(_) => {
                ApiError::new(ErrorCode::Unavailable, "service temporarily unavailable")
            }
            GatewayError::BadReply { .. } | GatewayError::Io(_) => ApiError::internal(),
        }
    }
}
