//! nats-server versions: parsing `nats-server --version` and refusing servers older than
//! 2.11, whose silent gaps (no subject transforms, TTLs, priority groups) chatmesh relies on.

use std::fmt;
use std::path::Path;
use std::process::Command;

use crate::{Error, Result};

/// Oldest server chatmesh accepts.
pub const MIN_VERSION: Version = Version {
    major: 2,
    minor: 11,
    patch: 0,
};

/// A `major.minor.patch` server version (pre-release suffixes are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// Parses the output of `nats-server --version`, e.g. `nats-server: v2.15.1`.
    pub fn parse(output: &str) -> Option<Version> {
        let text = output.trim();
        let text = text.strip_prefix("nats-server:").unwrap_or(text).trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let core = text.split(['-', '+', ' ', '\n']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let version = Version {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next()??,
        };
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Checks an already-parsed version of the binary at `path` against [`MIN_VERSION`].
pub(crate) fn require_min(path: &Path, output: &str) -> Result<Version> {
    let found = Version::parse(output).ok_or_else(|| Error::BadVersion {
        path: path.to_path_buf(),
        output: output.trim().to_owned(),
    })?;
    if found < MIN_VERSION {
        return Err(Error::TooOld {
            path: path.to_path_buf(),
            found,
            min: MIN_VERSION,
        });
    }
    Ok(found)
}

/// Runs `<path> --version` and returns the version if it is at least [`MIN_VERSION`].
pub fn check_binary(path: &Path) -> Result<Version> {
    let out = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|source| Error::Exec {
            path: path.to_path_buf(),
            source,
        })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    require_min(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's 2.9 is refused with a reason; the pinned 2.15.1 and newer are accepted.
    #[test]
    fn minimum_is_enforced() {
        let p = Path::new("/x/nats-server");
        let err = require_min(p, "nats-server: v2.9.10\n").unwrap_err();
        assert!(matches!(err, Error::TooOld { .. }));
        assert!(err.to_string().contains("subject transforms"), "{err}");
        assert!(err.to_string().contains("NATS_SERVER"), "{err}");
        let v = require_min(p, "nats-server: v2.15.1\n").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (2, 15, 1));
        assert!(require_min(p, "nats-server: v2.11.0").is_ok());
        assert!(require_min(p, "nats-server: v3.0.0-beta.1").is_ok());
        assert!(require_min(p, "nats-server: v2.10.29").is_err());
    }

    /// Output that is not a version is an error, never a guess.
    #[test]
    fn garbage_is_an_error() {
        let p = Path::new("/x/nats-server");
        for junk in [
            "",
            "hello",
            "nats-server: v2",
            "v2.x.1",
            "2.15.1.7",
            "nats-server: vv2.1.1",
        ] {
            let err = require_min(p, junk).unwrap_err();
            assert!(matches!(err, Error::BadVersion { .. }), "{junk:?}: {err}");
        }
    }
}
