//! Reactions (extension, docs/PROTOCOL.md "Reactions"): an emoji (any short key) a member
//! puts on, or takes off, an earlier message of the room. A reaction is a `send` with
//! `react_to` (or `unreact_to`) and the key as its body, a message of the room's order like
//! an edit; the target carries the aggregate ([`Reaction`]s) in history. The key is checked
//! for shape only (emoji are not validated exhaustively), and every count is bounded.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Most bytes of a reaction key.
pub const MAX_KEY_BYTES: usize = 64;
/// Most distinct keys on one message.
pub const MAX_KEYS_PER_MESSAGE: usize = 20;
/// Most reactions (distinct keys) of one user on one message.
pub const MAX_PER_USER: usize = 10;
/// Most users listed per key in the aggregate (`count` counts them all).
pub const MAX_USERS_LISTED: usize = 20;

/// One key's reactions on a message: how many users, and up to [`MAX_USERS_LISTED`] of them
/// (the earliest, as far as they still react).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub key: String,
    pub count: u64,
    pub users: Vec<String>,
}

/// A reaction key: 1–64 bytes of UTF-8, no control characters and no whitespace.
pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request("a reaction needs a key (the body)"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(format!(
            "a reaction key has at most {MAX_KEY_BYTES} bytes"
        )));
    }
    if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::bad_request(
            "a reaction key has no control characters or whitespace",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_and_printable() {
        for good in ["👍", "+1", "🏳️‍🌈", ":party:", &"x".repeat(64)] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "\u{7}", "x\n", &"x".repeat(65), "\u{a0}"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }
}
