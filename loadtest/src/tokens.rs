//! A token cache next to the reports, so repeated runs against the same target skip argon2
//! (register + login cost tens of ms each). Tokens older than 12 h are not reused; a target
//! restarted with a new secret is handled by `--fresh-tokens`-style deletion of the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setup::{self, Api};

const MAX_AGE_S: u64 = 12 * 3600;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cache {
    target: String,
    saved_unix_s: u64,
    tokens: BTreeMap<String, String>,
}

fn path(out: &Path, prefix: &str) -> PathBuf {
    out.join(format!("tokens-{prefix}.json"))
}

fn now_s() -> u64 {
    crate::clock::now_us() / 1_000_000
}

/// Accounts `<prefix>-0..n`, from the cache where possible; returns the setup time.
pub async fn accounts(
    api: &Api,
    out: &Path,
    target: &str,
    prefix: &str,
    password: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<(String, String)>, Duration)> {
    let file = path(out, prefix);
    let mut cache: Cache = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|c: &Cache| {
            c.target == target && now_s().saturating_sub(c.saved_unix_s) < MAX_AGE_S
        })
        .unwrap_or_default();
    if (0..n).all(|i| cache.tokens.contains_key(&format!("{prefix}-{i}"))) {
        let all = (0..n)
            .map(|i| {
                let name = format!("{prefix}-{i}");
                let token = cache.tokens[&name].clone();
                (name, token)
            })
            .collect();
        return Ok((all, Duration::ZERO));
    }
    let (all, took) = setup::accounts(api, prefix, password, n, concurrency).await?;
    cache.target = target.to_owned();
    cache.saved_unix_s = now_s();
    cache.tokens = all.iter().cloned().collect();
    std::fs::create_dir_all(out)?;
    // Write then rename: generators sharing a token directory never read half a file.
    let tmp = file.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&cache)?)?;
    std::fs::rename(&tmp, &file)?;
    Ok((all, took))
}
