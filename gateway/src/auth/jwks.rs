//! The external issuer's keys: the JWK set in `gateway.jwks_file`, read at start and again
//! while the gateway runs, so that an operator rotates keys by rewriting the file (a key
//! removed after a leak stops verifying, a new `kid` starts) without restarting gateways.
//!
//! The first verification at least [`CHECK_INTERVAL`] after the last check reads the file
//! itself before it looks up its key, so once that interval has passed since the file was
//! rewritten no token of a removed key verifies, even on a gateway that was idle (a check
//! handed to another thread would let the first token after a quiet spell through on the old
//! keys, and it could open a long-lived session). The read is small and bounded
//! ([`MAX_JWKS_BYTES`]; a JWKS is a few KiB: microseconds to read and hash); verifications
//! on other threads during it use the keys in force and do not wait for it. The content's
//! SHA-256 is compared with the last content seen, so an atomic rename, an in-place rewrite
//! of the same length within one modification-time tick and a mere `touch` are all told
//! apart. New content that is not a usable JWK set (an empty or half-written file, a refused
//! key) keeps the keys in force: it is logged once as an error and counted in
//! `chatmesh_jwks_reload_failures_total`; a new set taken is counted in
//! `chatmesh_jwks_reloads_total`.
//!
//! Only keys meant for verifying signatures are kept: a JWK whose `use` is present and not
//! `sig`, whose `key_ops` is present and lacks `verify`, or whose `alg` is an encryption
//! algorithm is left out. A kept key needs an `alg` this gateway verifies, which must fit the
//! key; without one the key's type must name it (EC P-256: ES256, P-384: ES384, OKP Ed25519:
//! EdDSA), since an RSA or `oct` key would be ambiguous. Otherwise the whole set is refused.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, TryLockError};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};

/// How often, at most, the JWKS file is checked for new content.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The largest JWKS file read (a JWK set of a dozen RSA keys with certificates is ~30 KiB).
pub const MAX_JWKS_BYTES: u64 = 256 << 10;

/// Why a JWKS file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the JWKS file")]
    Read(#[source] std::io::Error),
    #[error("the JWKS file is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("the JWKS file is empty")]
    Empty,
    #[error("the JWKS file is not a JWK set")]
    Parse(#[source] serde_json::Error),
    #[error("JWK {key:?} is not a JWK")]
    NotAJwk {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("JWK {key:?} has no alg, and its key type does not name one: add its alg (RS256, PS256, HS256…) to the file")]
    NoAlg { key: String },
    #[error("JWK {key:?}: alg {alg:?} is not a signature algorithm this gateway verifies")]
    UnknownAlg { key: String, alg: String },
    #[error("JWK {key:?}: alg {alg:?} does not fit its key type or curve")]
    WrongKeyType { key: String, alg: Algorithm },
    #[error("JWK {key:?} is not a usable key")]
    Key {
        key: String,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("JWK {key:?} appears more than once among the signature keys")]
    DuplicateKid { key: String },
}

/// One JWK set's verification keys, by `kid`.
pub struct Keys(HashMap<String, (DecodingKey, Algorithm)>);

impl Keys {
    /// The key named `kid` and the one algorithm it verifies.
    pub fn get(&self, kid: &str) -> Option<&(DecodingKey, Algorithm)> {
        self.0.get(kid)
    }

    /// Reads and checks the JWK set in `bytes` (see the module docs for what is refused).
    pub fn parse(bytes: &[u8]) -> Result<Self, JwksError> {
        if bytes.trim_ascii().is_empty() {
            return Err(JwksError::Empty);
        }
        #[derive(serde::Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let set: RawSet = serde_json::from_slice(bytes).map_err(JwksError::Parse)?;
        let mut keys = HashMap::new();
        for (i, raw) in set.keys.into_iter().enumerate() {
            let kid = raw.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let key = kid.clone().unwrap_or_else(|| format!("#{i} (no kid)"));
            // serde maps an alg it does not know to UNKNOWN_ALGORITHM: keep the name to show.
            let alg = raw.get("alg").and_then(|a| a.as_str()).map(str::to_owned);
            let jwk: Jwk = serde_json::from_value(raw).map_err(|source| JwksError::NotAJwk {
                key: key.clone(),
                source,
            })?;
            if !for_signatures(&jwk) {
                tracing::debug!(key, "JWK not meant for verifying signatures: left out");
                continue;
            }
            let Some(kid) = kid else {
                tracing::warn!(
                    key,
                    "JWK without kid: tokens name their key by kid, left out"
                );
                continue;
            };
            let alg = algorithm(&jwk, alg.as_deref(), &key)?;
            let decoding = DecodingKey::from_jwk(&jwk).map_err(|source| JwksError::Key {
                key: key.clone(),
                source,
            })?;
            if keys.insert(kid, (decoding, alg)).is_some() {
                return Err(JwksError::DuplicateKid { key });
            }
        }
        Ok(Self(keys))
    }

    fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<_> = self.0.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// Whether a JWK is meant for verifying signatures: its `use`, `key_ops` and `alg`, when
/// present, must say so.
fn for_signatures(jwk: &Jwk) -> bool {
    let common = &jwk.common;
    let use_ok = common
        .public_key_use
        .as_ref()
        .is_none_or(|u| *u == PublicKeyUse::Signature);
    let ops_ok = common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    let encryption = matches!(
        common.key_algorithm,
        Some(KeyAlgorithm::RSA1_5 | KeyAlgorithm::RSA_OAEP | KeyAlgorithm::RSA_OAEP_256)
    );
    use_ok && ops_ok && !encryption
}

/// The algorithm a signature key verifies: its `alg` (named `named` in the file), or the one
/// its curve implies; never a guess.
fn algorithm(jwk: &Jwk, named: Option<&str>, key: &str) -> Result<Algorithm, JwksError> {
    let params = &jwk.algorithm;
    let alg = match named {
        Some(name) => name.parse().map_err(|_| JwksError::UnknownAlg {
            key: key.to_owned(),
            alg: name.to_owned(),
        })?,
        None => match params {
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P384 => {
                Algorithm::ES384
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            _ => {
                return Err(JwksError::NoAlg {
                    key: key.to_owned(),
                })
            }
        },
    };
    let fits = match (alg, params) {
        (
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512,
            AlgorithmParameters::OctetKey(_),
        ) => true,
        (
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
            AlgorithmParameters::RSA(_),
        ) => true,
        (Algorithm::ES256, AlgorithmParameters::EllipticCurve(ec)) => {
            ec.curve == EllipticCurve::P256
        }
        (Algorithm::ES384, AlgorithmParameters::EllipticCurve(ec)) => {
            ec.curve == EllipticCurve::P384
        }
        (Algorithm::EdDSA, AlgorithmParameters::OctetKeyPair(okp)) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if !fits {
        return Err(JwksError::WrongKeyType {
            key: key.to_owned(),
            alg,
        });
    }
    Ok(alg)
}

/// Reads the file, at most [`MAX_JWKS_BYTES`].
fn read(path: &Path) -> Result<Vec<u8>, JwksError> {
    let file = std::fs::File::open(path).map_err(JwksError::Read)?;
    let mut bytes = Vec::new();
    file.take(MAX_JWKS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(JwksError::Read)?;
    if bytes.len() as u64 > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    Ok(bytes)
}

/// The JWKS file and the keys in force.
pub struct Jwks {
    path: PathBuf,
    keys: RwLock<Arc<Keys>>,
    /// When the next check is due, milliseconds after `started`.
    next_check_ms: AtomicU64,
    started: Instant,
    /// The SHA-256 of the content last read (taken or refused); `None` after a failed read.
    /// Held by the check under way.
    seen: Mutex<Option<[u8; 32]>>,
    failures: AtomicU64,
}

impl Jwks {
    /// Reads the JWK set at `path`; at start a set that cannot be used is an error.
    pub fn load(path: &Path) -> Result<Self, JwksError> {
        let bytes = read(path)?;
        let keys = Keys::parse(&bytes)?;
        if keys.0.is_empty() {
            tracing::warn!(path = %path.display(), "the JWKS file has no signature keys: every token is refused");
        }
        Ok(Self {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
            next_check_ms: AtomicU64::new(CHECK_INTERVAL.as_millis() as u64),
            started: Instant::now(),
            seen: Mutex::new(Some(Sha256::digest(&bytes).into())),
            failures: AtomicU64::new(0),
        })
    }

    /// The keys in force, after checking the file first when a check is due.
    pub fn keys(&self) -> Arc<Keys> {
        if self.check_due() {
            self.check();
        }
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether this caller is the one to check the file now (one per [`CHECK_INTERVAL`]).
    fn check_due(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let due = self.next_check_ms.load(Ordering::Relaxed);
        now >= due
            && self
                .next_check_ms
                .compare_exchange(
                    due,
                    now + CHECK_INTERVAL.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Reads the file and takes its keys if its content is new and usable.
    fn check(&self) {
        let mut seen = match self.seen.try_lock() {
            Ok(seen) => seen,
            Err(TryLockError::WouldBlock) => return, // the last check is still reading
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        let path = self.path.display();
        let bytes = match read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Logged once until the file can be read again, not every interval.
                if seen.take().is_some() {
                    self.failed();
                    tracing::error!(%path, error = %crate::error::Chain(&e), "cannot read the JWKS file: the keys in force stay");
                }
                return;
            }
        };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if *seen == Some(digest) {
            return;
        }
        *seen = Some(digest);
        match Keys::parse(&bytes) {
            Ok(keys) => {
                tracing::info!(%path, kids = ?keys.kids(), "the JWKS file changed: its keys are in force");
                if keys.0.is_empty() {
                    tracing::warn!(%path, "the JWKS file has no signature keys: every token is refused");
                }
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
                metrics::counter!("chatmesh_jwks_reloads_total").increment(1);
            }
            Err(e) => {
                self.failed();
                tracing::error!(%path, error = %crate::error::Chain(&e), "the JWKS file changed but cannot be used: the keys in force stay");
            }
        }
    }

    fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("chatmesh_jwks_reload_failures_total").increment(1);
    }

    /// Checks of the file that found it unreadable or unusable.
    #[cfg(test)]
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}
