//! The SDK's errors: what kind of failure, with its source kept.

use chatmesh_protocol::{ApiError, ErrorCode};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a protocol error (`forbidden`, `not_found`, …).
    #[error("server refused: {0}")]
    Api(#[from] ApiError),
    /// HTTP failed below the API (connect, TLS, a body that is not JSON).
    #[error("HTTP request failed")]
    Http(#[source] reqwest::Error),
    /// The WebSocket could not be opened or broke.
    #[error("WebSocket failed")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The session broke while this request waited; it was not resent (only sends are).
    #[error("disconnected before the answer came")]
    Disconnected,
    /// No answer within the request timeout.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The client was closed, or the server ended the session for good (close `code`).
    #[error("the session is closed (code {code}: {reason})")]
    Closed { code: u16, reason: String },
    /// A frame from the server that protocol v1 does not allow here.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// A base URL that is not `http://` or `https://`.
    #[error("invalid base URL {0:?}")]
    Url(String),
    /// A download longer than the caller takes: its `Content-Length` (`declared`) said so
    /// before any of it was read, or more than `max` bytes arrived; reading stopped there.
    #[error("the download is over the {max} bytes taken (Content-Length: {declared:?})")]
    TooLarge { max: u64, declared: Option<u64> },
    /// An answer that is not the JSON the call expects.
    #[error("the answer does not parse")]
    Decode(#[source] serde_json::Error),
    /// Writing what the server sent (an export) failed.
    #[error("writing the output failed")]
    Io(#[source] std::io::Error),
}

impl Error {
    /// The protocol error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(e)
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
