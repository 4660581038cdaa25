//! A device's state on disk: one JSON file (`state.json`) in the directory the caller gives,
//! holding the keys, the per-room cursors and the whole openmls key-value store. It is
//! rewritten after every operation that changes state, atomically: a temporary file is
//! written and synced, then renamed over the old one, so a crash leaves the old or the new
//! state, never a torn one.
//!
//! openmls's `MemoryStorage` keeps its map in a public field, so the provider here is that
//! store plus the pure-Rust crypto, and persistence is a snapshot of the map.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use openmls_rust_crypto::{MemoryStorage, RustCrypto};
use openmls_traits::OpenMlsProvider;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::wire::{decode, encode, Incoming};

const FILE: &str = "state.json";
const TMP: &str = "state.json.tmp";
const VERSION: u32 = 1;

/// The openmls provider of one device.
#[derive(Default)]
pub(crate) struct Provider {
    crypto: RustCrypto,
    storage: MemoryStorage,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &MemoryStorage {
        &self.storage
    }
    fn crypto(&self) -> &RustCrypto {
        &self.crypto
    }
    fn rand(&self) -> &RustCrypto {
        &self.crypto
    }
}

impl Provider {
    fn snapshot(&self) -> Vec<(String, String)> {
        let map = self.storage.values.read().expect("storage lock poisoned");
        let mut out: Vec<_> = map.iter().map(|(k, v)| (encode(k), encode(v))).collect();
        out.sort();
        out
    }

    fn restore(pairs: &[(String, String)]) -> Result<Self, Error> {
        let mut map = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            map.insert(decode(k, "state key")?, decode(v, "state value")?);
        }
        let provider = Provider::default();
        *provider
            .storage
            .values
            .write()
            .expect("storage lock poisoned") = map;
        Ok(provider)
    }
}

/// What the SDK knows of one room.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RoomState {
    /// The last seq processed (0: none).
    pub last_seq: u64,
    /// This device has a group for the room.
    pub member: bool,
    /// Commits seen while not in the group, oldest first (`kept.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Incoming>,
}

/// Everything but the openmls store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub user: String,
    pub device: String,
    /// Identity key seed, base64.
    pub identity_seed: String,
    /// This device's MLS signature public key, base64 (the key pair is in the openmls store).
    pub signature_key: String,
    /// Hash refs (hex) of the KeyPackages this device made and were not used yet, each
    /// with whether it is the last-resort one (kept when used).
    pub key_packages: BTreeMap<String, bool>,
    /// Hash refs of KeyPackages a welcome used: a welcome for one of them again is a replay.
    #[serde(default)]
    pub used_key_packages: BTreeSet<String>,
    pub rooms: BTreeMap<String, RoomState>,
    /// Identity keys of other users as first seen (base64): a change is an error.
    pub known_identities: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    meta: Meta,
    storage: Vec<(String, String)>,
}

/// Writes `meta` and the provider's store to `dir` atomically.
pub(crate) fn save(dir: &Path, meta: &Meta, provider: &Provider) -> Result<(), Error> {
    let file = File {
        version: VERSION,
        meta: meta.clone(),
        storage: provider.snapshot(),
    };
    let bytes = serde_json::to_vec(&file).map_err(|source| Error::State {
        path: dir.join(FILE),
        source,
    })?;
    let tmp = dir.join(TMP);
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| Error::Io { path, source }
    };
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    let dest = dir.join(FILE);
    fs::rename(&tmp, &dest).map_err(io(&dest))?;
    // the rename itself is durable only once the directory is synced
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir.to_path_buf()))?;
    Ok(())
}

/// Whether `dir` holds a state.
pub(crate) fn exists(dir: &Path) -> bool {
    dir.join(FILE).exists()
}

/// Reads what [`save`] wrote.
pub(crate) fn load(dir: &Path) -> Result<(Meta, Provider), Error> {
    let path = dir.join(FILE);
    let bytes = fs::read(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let file: File = serde_json::from_slice(&bytes).map_err(|source| Error::State {
        path: path.clone(),
        source,
    })?;
    if file.version != VERSION {
        return Err(Error::State {
            path,
            source: serde::de::Error::custom(format!("unknown version {}", file.version)),
        });
    }
    Ok((file.meta, Provider::restore(&file.storage)?))
}
