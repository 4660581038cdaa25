//! Downloads of shared files (`GET /v1/rooms/{room}/files/{id}`), read within a bound: a
//! server (or a presigned URL's storage) that lies or never stops cannot make the SDK hold
//! more than the caller takes. The length a server declares is checked before the body is
//! read, and what arrives is counted as it arrives.

use crate::error::{Error, Result};
use crate::http::Http;

/// The most [`Http::download`] takes: the server's default `files.max_file_bytes`.
pub const MAX_DOWNLOAD_BYTES: usize = 100 * 1024 * 1024;
/// The most a download reserves before its bytes arrive.
const MAX_RESERVED: usize = 1024 * 1024;

impl Http {
    /// `GET /v1/rooms/{room}/files/{id}`: the file's bytes, at most [`MAX_DOWNLOAD_BYTES`].
    pub async fn download(&self, room: &str, id: &str) -> Result<Vec<u8>> {
        self.download_max(room, id, MAX_DOWNLOAD_BYTES).await
    }

    /// `GET /v1/rooms/{room}/files/{id}`: the file's bytes, at most `max` of them. A longer
    /// file is [`Error::TooLarge`]: refused on its `Content-Length` before any of it is read,
    /// or, without one, as soon as more than `max` bytes arrived (nothing more is read).
    pub async fn download_max(&self, room: &str, id: &str, max: usize) -> Result<Vec<u8>> {
        let path = format!("/v1/rooms/{room}/files/{id}");
        let res = self.send(reqwest::Method::GET, &path, None).await?;
        read_within(res, max).await
    }
}

/// The body of `res`, if it is at most `max` bytes; dropping `res` early closes the
/// connection, so a refused body is read no further.
async fn read_within(mut res: reqwest::Response, max: usize) -> Result<Vec<u8>> {
    let declared = res.content_length();
    let too_large = || Error::TooLarge {
        max: max as u64,
        declared,
    };
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    // A declared length is a claim, not bytes: what it reserves up front is capped.
    let reserve = declared.map_or(0, |len| len as usize).min(MAX_RESERVED);
    let mut body = Vec::with_capacity(reserve);
    while let Some(chunk) = res.chunk().await? {
        if chunk.len() > max - body.len() {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
