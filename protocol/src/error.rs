//! The stable error codes of protocol v1. Every failure a client sees maps to one of these;
//! internal detail is logged where it happens and never sent.

use serde::{Deserialize, Serialize};

/// An error code of protocol v1, as sent in `error` frames and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that fits this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable code and a message safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// `rate_limited` saying `what` and when to retry, in a form [`ApiError::retry_after`]
    /// reads back: a worker's refusal reaches the gateway as an `ApiError` only, and the
    /// gateway's `Retry-After` comes from its message.
    pub fn rate_limited_for(what: &str, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self::new(
            ErrorCode::RateLimited,
            format!("{what}{RETRY_IN}{}{RETRY_SECS}", secs.max(1)),
        )
    }

    /// The wait a `rate_limited` error made by [`ApiError::rate_limited_for`] names.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        if self.code != ErrorCode::RateLimited {
            return None;
        }
        let (_, tail) = self.message.rsplit_once(RETRY_IN)?;
        let secs = tail.strip_suffix(RETRY_SECS)?.parse::<u64>().ok()?;
        Some(std::time::Duration::from_secs(secs))
    }
}

/// How [`ApiError::rate_limited_for`] writes the wait.
const RETRY_IN: &str = "; retry in ";
const RETRY_SECS: &str = " s";

/// Displays an error with every source after it (`a: b: c`), for logs.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wait written into a worker's refusal is read back by the gateway; other errors
    /// and messages name none.
    #[test]
    fn a_refusals_wait_round_trips() {
        use std::time::Duration;
        let e = ApiError::rate_limited_for("too many", Duration::from_millis(90_500));
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(91)));
        let json = serde_json::to_string(&e).unwrap();
        let back: ApiError = serde_json::from_str(&json).unwrap();
        assert_eq!(back.retry_after(), Some(Duration::from_secs(91)));
        assert_eq!(
            ApiError::rate_limited_for("x", Duration::ZERO).retry_after(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            ApiError::new(ErrorCode::RateLimited, "busy").retry_after(),
            None
        );
        assert_eq!(ApiError::forbidden("x; retry in 5 s").retry_after(), None);
    }
}
