//! Bodies read within a bound: downloads of shared files (`GET /v1/rooms/{room}/files/{id}`,
//! at most what the caller takes) and every JSON answer ([`MAX_ANSWER_BYTES`], an error's
//! [`MAX_ERROR_BYTES`]), so a server (or a presigned URL's storage) that lies or never stops
//! cannot make the SDK hold more. The length a server declares is checked before the body is
//! read, and what arrives is counted as it arrives.

use crate::error::{Error, Result};
use crate::http::Http;

/// The most [`Http::download`] takes: the server's default `files.max_file_bytes`.
pub const MAX_DOWNLOAD_BYTES: usize = 100 * 1024 * 1024;
/// The most a JSON answer may hold: far above the largest page the server sends (history
/// pages stop at 512 KiB).
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// The most an error answer's body may hold (`{"error": {code, message}}`).
pub(crate) const MAX_ERROR_BYTES: usize = 64 * 1024;
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

/// The JSON answer `res` holds, read within [`MAX_ANSWER_BYTES`].
pub(crate) async fn json<T: serde::de::DeserializeOwned>(res: reqwest::Response) -> Result<T> {
    let body = read_within(res, MAX_ANSWER_BYTES).await?;
    serde_json::from_slice(&body).map_err(Error::Decode)
}

/// The body of `res`, if it is at most `max` bytes; dropping `res` early closes the
/// connection, so a refused body is read no further.
pub(crate) async fn read_within(mut res: reqwest::Response, max: usize) -> Result<Vec<u8>> {
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
