//! Shared files (extension of v1, docs/PROTOCOL.md "Files"): file ids and names, what a
//! message carries about its files ([`Attachment`]), what `GET .../info` answers
//! ([`FileInfo`]), and the requests gateways make to the worker that owns a file's room.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Files one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;
/// Longest file name, in bytes of UTF-8.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// A file as a message carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// Where a file's thumbnail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Thumbnail {
    /// An image whose thumbnail is not made yet.
    Pending,
    Ready,
    /// Not an image.
    None,
    /// An image that could not be decoded within the limits (or the queue was full).
    Failed,
}

/// A file of a room, as `POST .../files` and `GET .../info` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub id: String,
    pub room: String,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    pub thumbnail: Thumbnail,
    /// The uploader.
    pub by: String,
    /// Upload time, milliseconds since the Unix epoch.
    pub ts: u64,
}

impl FileInfo {
    /// What a message carries about this file.
    pub fn attachment(&self) -> Attachment {
        Attachment {
            id: self.id.clone(),
            name: self.name.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            width: self.width,
            height: self.height,
        }
    }
}

/// A new file id: `f` and 32 lowercase hex digits (128 random bits).
pub fn new_file_id() -> String {
    format!("f{:032x}", rand::random::<u128>())
}

/// Checks a file id's shape; anything else is `not_found` (no file can have it).
pub fn validate_file_id(id: &str) -> Result<(), ApiError> {
    let ok = id.len() == 33
        && id.starts_with('f')
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::not_found("no such file"))
    }
}

/// Checks a file name: 1–255 bytes of UTF-8, no control or bidirectional-override
/// characters, no path separators, not `.` or `..`.
pub fn validate_file_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::bad_request(format!("file name {why}")));
    if name.is_empty() || name.len() > MAX_FILE_NAME_BYTES {
        return bad("must have 1 to 255 bytes");
    }
    if name == "." || name == ".." {
        return bad("cannot be . or ..");
    }
    if name.contains(['/', '\\']) {
        return bad("cannot contain / or \\");
    }
    if name.trim() != name {
        return bad("cannot start or end with whitespace");
    }
    if name.chars().any(crate::text::refused) {
        return bad("cannot contain control, bidirectional or invisible formatting characters");
    }
    Ok(())
}

/// `file_begin`: reserve `size` bytes for a new file of `room` by `actor` (quotas), before
/// its bytes are stored. The worker keeps the reservation as a pending file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBeginRequest {
    pub room: String,
    pub id: String,
    pub actor: String,
    pub name: String,
    pub size: u64,
}

/// `file_commit`: the bytes of a pending file are stored; what they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCommitRequest {
    pub room: String,
    pub id: String,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// `file_get` (one file of a room) and `file_abort` (a pending file whose upload failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRequest {
    pub room: String,
    pub id: String,
}

/// `file_attach`: the attachments for the files `ids` of `room` (every one must exist and be
/// complete, or the answer is `not_found` naming it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    pub room: String,
    pub ids: Vec<String>,
}

/// The answer to [`AttachRequest`], in the order of its ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachments {
    pub attachments: Vec<Attachment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = new_file_id();
        assert!(validate_file_id(&id).is_ok(), "{id}");
        for bad in [
            "",
            "f",
            "F0000000000000000000000000000000a",
            "g00000000000000000000000000000000",
            "f0000000000000000000000000000000A",
            "f../../../../etc/passwd0000000000",
        ] {
            assert!(validate_file_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        for ok in ["report.pdf", "Q3 numbers (final).xlsx", "фото.jpg", "a"] {
            assert!(validate_file_name(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a\nb",
            "a\u{0}b",
            "evil\u{202E}fdp.exe",
            " lead",
            &long,
        ] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
