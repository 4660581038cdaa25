//! Setup before anything is measured: accounts (register, then login, with bounded
//! concurrency because argon2 is slow on purpose) and rooms, over protocol v1's HTTP API;
//! and the file uploads and downloads of the `files` scenario.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::{stream, StreamExt as _, TryStreamExt as _};
use serde_json::json;

/// HTTP client for the gateway's `/v1` API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// Registers `user` if needed, then logs in; returns the token.
    pub async fn account(&self, user: &str, password: &str) -> anyhow::Result<String> {
        let creds = json!({"username": user, "password": password});
        let r = self
            .http
            .post(format!("{}/v1/auth/register", self.base))
            .json(&creds)
            .send()
            .await?;
        if !(r.status().is_success() || r.status().as_u16() == 409) {
            bail!("register {user}: HTTP {}", r.status());
        }
        let r = self
            .http
            .post(format!("{}/v1/auth/login", self.base))
            .json(&creds)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("login {user}: HTTP {} (password differs?)", r.status());
        }
        let v: serde_json::Value = r.json().await?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .context("login answer without token")
    }

    /// Creates a public room owned by the token's user (409 = exists, fine).
    pub async fn room(&self, token: &str, room: &str) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/v1/rooms", self.base))
            .bearer_auth(token)
            .json(&json!({"room": room, "kind": "public"}))
            .send()
            .await?;
        if !(r.status().is_success() || r.status().as_u16() == 409) {
            bail!("create room {room}: HTTP {}", r.status());
        }
        Ok(())
    }

    /// The DM room of the token's user and `peer`.
    pub async fn dm(&self, token: &str, peer: &str) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{}/v1/dm/{peer}", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("dm with {peer}: HTTP {}", r.status());
        }
        let v: serde_json::Value = r.json().await?;
        v["room"]
            .as_str()
            .map(str::to_owned)
            .context("dm answer without room")
    }

    /// Shares `bytes` in `room` as `name`; the file's id.
    pub async fn upload(
        &self,
        token: &str,
        room: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<String> {
        let url = format!("{}/v1/rooms/{room}/files?name={name}", self.base);
        let r = self
            .http
            .post(url)
            .bearer_auth(token)
            .body(bytes)
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            bail!("upload to {room}: HTTP {}", r.status());
        }
        let v: serde_json::Value = r.json().await?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .context("upload answer without id")
    }

    /// The bytes of file `id` of `room`.
    pub async fn download(&self, token: &str, room: &str, id: &str) -> anyhow::Result<Vec<u8>> {
        let r = self
            .http
            .get(format!("{}/v1/rooms/{room}/files/{id}", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("download from {room}: HTTP {}", r.status());
        }
        Ok(r.bytes().await?.to_vec())
    }

    /// `GET /v1/search?q=&room=&limit=`: the hits' bodies, newest first. `q` and `room` go
    /// into the URL as they are: harness words and room names need no escaping.
    pub async fn search(
        &self,
        token: &str,
        room: &str,
        q: &str,
        limit: u32,
    ) -> anyhow::Result<Vec<String>> {
        let r = self
            .http
            .get(format!(
                "{}/v1/search?q={q}&room={room}&limit={limit}",
                self.base
            ))
            .bearer_auth(token)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("search in {room}: HTTP {}", r.status());
        }
        let v: serde_json::Value = r.json().await?;
        let hits = v["hits"].as_array().context("search answer without hits")?;
        Ok(hits
            .iter()
            .filter_map(|h| h["body"].as_str().map(str::to_owned))
            .collect())
    }

    /// The gateway's Prometheus text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let r = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?;
        Ok(r.text().await?)
    }
}

/// Accounts `<prefix>-0 .. <prefix>-(n-1)`: their names and tokens, and the time it took.
pub async fn accounts(
    api: &Api,
    prefix: &str,
    password: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<(String, String)>, Duration)> {
    let started = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let out: Vec<(String, String)> = stream::iter(names)
        .map(|name| async move {
            let token = api.account(&name, password).await?;
            anyhow::Ok((name, token))
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok((out, started.elapsed()))
}

/// The sum of every series of the Prometheus metric `name` in `text` (0 if none).
pub fn prom_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let bare = key.split('{').next()?;
            (bare == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// The value of an unlabelled Prometheus gauge or counter in `text`.
pub fn prom_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let bare = key.split('{').next()?;
        (bare == name).then(|| value.trim().parse().ok())?
    })
}

/// Public rooms `lt-<run>-<i>` (`<home>~lt-<run>-<i>` with a home region), created by
/// account 0.
pub(crate) async fn rooms(
    api: &Api,
    accounts: &[(String, String)],
    run: &str,
    n: usize,
    nats: bool,
    home: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let token = &accounts.first().context("no accounts")?.1;
    let home = home.map(|h| format!("{h}~")).unwrap_or_default();
    let names: Vec<String> = (0..n).map(|i| format!("{home}lt-{run}-{i}")).collect();
    if nats {
        return Ok(names);
    }
    stream::iter(names.clone())
        .map(|name| async move { api.room(token, &name).await })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::prom_value;

    #[test]
    fn reads_gauges() {
        let text = "# HELP x\nchatmesh_sessions 12\nchatmesh_process_resident_memory_bytes 1.5e6\n";
        assert_eq!(prom_value(text, "chatmesh_sessions"), Some(12.0));
        assert_eq!(
            prom_value(text, "chatmesh_process_resident_memory_bytes"),
            Some(1.5e6)
        );
        assert_eq!(prom_value(text, "nope"), None);
    }
}
