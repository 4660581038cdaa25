//! What the file tests share: uploads and downloads over HTTP, images and a PDF to share,
//! waiting for a thumbnail, and listing what is left in a folder.

use std::io::Cursor;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};

/// A `send` frame carrying the files `files`.
pub fn send_with(room: &str, id: &str, body: &str, files: &[&str]) -> Value {
    json!({"type": "send", "room": room, "id": id, "body": body, "attachments": files})
}

/// A PNG of `w` x `h` pixels.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A small valid PDF.
pub fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

pub struct Files {
    base: String,
    http: reqwest::Client,
}

impl Files {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// `POST /v1/rooms/{room}/files?name=...`: (status, JSON body).
    pub async fn upload(
        &self,
        token: &str,
        room: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(u16, Value)> {
        let url = format!("{}/v1/rooms/{room}/files", self.base);
        let url = reqwest::Url::parse_with_params(&url, &[("name", name)])?;
        let resp = self
            .http
            .post(url)
            .bearer_auth(token)
            .body(bytes)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// An upload that must succeed: its file info.
    pub async fn stored(
        &self,
        token: &str,
        room: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<Value> {
        let (s, v) = self.upload(token, room, name, bytes).await?;
        if s != 201 {
            bail!("upload {name}: {s} {v}");
        }
        Ok(v)
    }

    /// `GET /v1/rooms/{room}/files/{id}{suffix}` with optional headers.
    pub async fn get(
        &self,
        token: &str,
        room: &str,
        id: &str,
        suffix: &str,
        range: Option<&str>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}/v1/rooms/{room}/files/{id}{suffix}", self.base);
        let mut req = self.http.get(url).bearer_auth(token);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        Ok(req.send().await?)
    }

    /// Waits until the file's thumbnail is `ready` (or fails after a while).
    pub async fn thumbnail_ready(&self, token: &str, room: &str, id: &str) -> Result<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let info: Value = self
                .get(token, room, id, "/info", None)
                .await?
                .json()
                .await?;
            match info["thumbnail"].as_str() {
                Some("ready") => break,
                Some("pending") if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => bail!("thumbnail {other:?}: {info}"),
            }
        }
        let resp = self.get(token, room, id, "/thumbnail", None).await?;
        if resp.status() != 200 {
            bail!("thumbnail: {}", resp.status());
        }
        Ok(resp.bytes().await?.to_vec())
    }

    /// Waits until the file's info answers 404 (true), or 20 s pass (false).
    pub async fn gone(&self, token: &str, room: &str, id: &str) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if self.get(token, room, id, "/info", None).await?.status() == 404 {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(false)
    }
}
