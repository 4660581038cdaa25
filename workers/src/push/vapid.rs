//! The VAPID identity (RFC 8292) of this deployment: an ES256 key pair whose private half is
//! a file created at first start and whose public half browsers subscribe with
//! (`applicationServerKey`), and the `Authorization: vapid t=…, k=…` header of a push.
//!
//! The key file holds the 32-byte private scalar, base64url. It is written like the JWT
//! secret of `chatmesh up`: a temporary file created 0600 (`create_new`), synced, renamed
//! into place, so a crash leaves no key or a whole one. Every worker of a deployment must
//! use the same key, or subscriptions made with another's public key are refused by the
//! push services: with several workers, give them one `push.vapid_key_file`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use web_push_native::jwt_simple::algorithms::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair,
};
use web_push_native::jwt_simple::claims::Claims;

/// Why the VAPID key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum VapidError {
    #[error("reading or writing the VAPID key {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the VAPID key {path} is not a base64url P-256 private key")]
    Invalid { path: PathBuf },
    #[error("signing a VAPID token")]
    Sign(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The deployment's VAPID key pair and contact.
pub struct Vapid {
    key: ES256KeyPair,
    /// Uncompressed public point, base64url.
    public: String,
    subject: String,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Vapid {
    /// Reads the key at `path`, creating it first if there is none.
    pub fn load_or_create(path: &Path, subject: &str) -> Result<Self, VapidError> {
        let io = |source| VapidError::Io {
            path: path.to_owned(),
            source,
        };
        let key = match std::fs::read_to_string(path) {
            // jwt-simple panics on a key of the wrong length: check it first.
            Ok(text) => Base64UrlUnpadded::decode_vec(text.trim())
                .ok()
                .filter(|raw| raw.len() == 32)
                .and_then(|raw| ES256KeyPair::from_bytes(&raw).ok())
                .ok_or_else(|| VapidError::Invalid {
                    path: path.to_owned(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ES256KeyPair::generate();
                write_private(path, &Base64UrlUnpadded::encode_string(&key.to_bytes()))
                    .map_err(io)?;
                tracing::info!(path = %path.display(), "created the VAPID key of this deployment");
                key
            }
            Err(e) => return Err(io(e)),
        };
        Ok(Self::from_key(key, subject))
    }

    fn from_key(key: ES256KeyPair, subject: &str) -> Self {
        let public = Base64UrlUnpadded::encode_string(
            &key.public_key().public_key().to_bytes_uncompressed(),
        );
        Self {
            key,
            public,
            subject: subject.to_owned(),
        }
    }

    /// The public key, base64url (what `GET /v1/push/vapid` serves).
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header value for a push to a resource at `origin`
    /// (`scheme://host[:port]`, the JWT's `aud`), valid for `valid_for`.
    pub fn header(&self, origin: &str, valid_for: Duration) -> Result<String, VapidError> {
        let claims = Claims::create(valid_for.into())
            .with_audience(origin)
            .with_subject(&self.subject);
        let token = self
            .key
            .sign(claims)
            .map_err(|e| VapidError::Sign(e.into()))?;
        Ok(format!("vapid t={token}, k={}", self.public))
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let name = format!(".vapid-key.{:016x}.tmp", rand_suffix());
    let tmp = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// A random temp-file suffix (a crashed start's stale file must not block this one).
fn rand_suffix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use web_push_native::jwt_simple::algorithms::ES256PublicKey;
    use web_push_native::jwt_simple::common::VerificationOptions;

    #[test]
    fn the_key_is_created_once_and_signs_verifiable_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/vapid-key");
        let a = Vapid::load_or_create(&path, "mailto:a@b.c").unwrap();
        let b = Vapid::load_or_create(&path, "mailto:a@b.c").unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let header = a
            .header("https://push.example:8443", Duration::from_secs(3600))
            .unwrap();
        let (t, k) = header
            .strip_prefix("vapid t=")
            .and_then(|r| r.split_once(", k="))
            .unwrap();
        assert_eq!(k, a.public_key());
        let raw = Base64UrlUnpadded::decode_vec(k).unwrap();
        let public = ES256PublicKey::from_bytes(&raw).unwrap();
        let options = VerificationOptions {
            allowed_audiences: Some(["https://push.example:8443".to_owned()].into()),
            ..Default::default()
        };
        let claims = public
            .verify_token::<web_push_native::jwt_simple::claims::NoCustomClaims>(t, Some(options))
            .unwrap();
        assert_eq!(claims.subject.as_deref(), Some("mailto:a@b.c"));
        std::fs::write(&path, "junk").unwrap();
        assert!(matches!(
            Vapid::load_or_create(&path, "mailto:a@b.c"),
            Err(VapidError::Invalid { .. })
        ));
    }
}
