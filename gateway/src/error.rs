//! Errors of the gateway library. Clients never see these: each maps to a protocol error
//! code through [`GatewayError::api`], and the detail is logged once where it happens.

pub use chatmesh_protocol::error::Chain;
use chatmesh_protocol::{ApiError, ErrorCode};

/// The source of a bus error: async-nats's error types differ per call.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong inside the gateway. Each variant keeps the error that caused it.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A core NATS call failed (subscribe, request).
    #[error("NATS: {what}")]
    Nats {
        what: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("worker service {op} timed out or has no responder")]
    ServiceUnavailable { op: &'static str },
    #[error("bad reply from worker service {op}: {detail}")]
    BadReply { op: &'static str, detail: String },
    /// A JetStream call failed (stream, KV bucket, direct get).
    #[error("JetStream: {what}")]
    JetStream {
        what: &'static str,
        #[source]
        source: BoxError,
    },
    /// The token keys (`jwt_secret`, `jwks_file`) could not be used (the source is the
    /// auth error; boxed so this module does not depend on `auth`).
    #[error("token keys")]
    Tokens(#[source] BoxError),
    /// The message stream belongs to a deployment with another `mesh.partitions`.
    #[error("{why}")]
    PartitionsDiffer { why: String },
    #[error("io")]
    Io(#[from] std::io::Error),
}

/// The kinds of [`GatewayError`], for callers that branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// NATS or JetStream did not do what was asked: retry later.
    Bus,
    /// No worker answered in time.
    ServiceUnavailable,
    /// A worker's answer made no sense.
    BadReply,
    /// Configuration (token keys, the partition count).
    Config,
    Io,
}

impl GatewayError {
    /// A core NATS failure while doing `what`.
    pub fn nats(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Nats {
            what,
            source: source.into(),
        }
    }

    /// A JetStream failure while doing `what`.
    pub fn jetstream(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::JetStream {
            what,
            source: source.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Nats { .. } | Self::JetStream { .. } => ErrorKind::Bus,
            Self::ServiceUnavailable { .. } => ErrorKind::ServiceUnavailable,
            Self::BadReply { .. } => ErrorKind::BadReply,
            Self::Tokens(_) | Self::PartitionsDiffer { .. } => ErrorKind::Config,
            Self::Io(_) => ErrorKind::Io,
        }
    }

    /// The protocol error a client gets for this.
    pub fn api(&self) -> ApiError {
        match self.kind() {
            ErrorKind::Bus | ErrorKind::ServiceUnavailable => {
                ApiError::new(ErrorCode::Unavailable, "service temporarily unavailable")
            }
            ErrorKind::BadReply | ErrorKind::Config | ErrorKind::Io => ApiError::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_kept_and_shown_in_the_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = GatewayError::nats("subscribing", io);
        assert_eq!(e.kind(), ErrorKind::Bus);
        assert_eq!(e.to_string(), "NATS: subscribing");
        assert_eq!(Chain(&e).to_string(), "NATS: subscribing: reset by peer");
        assert_eq!(e.api().code, ErrorCode::Unavailable);
    }
}
