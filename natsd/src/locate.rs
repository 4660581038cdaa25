//! Finding the nats-server binary and the chatmesh workspace root it is installed under.
//!
//! Order: `NATS_SERVER` (any path, or a bare name looked up on `PATH`) wins; then
//! `<root>/.local/nats/nats-server` for each candidate root (`CHATMESH_HOME`, then the first
//! directory holding a `Cargo.toml` with `[workspace]` above the current dir, above the running
//! executable, and above this crate's source at compile time, which is what tests hit); then
//! `nats-server` on `PATH`. Nothing here checks the version: see [`crate::check_binary`].

use std::env;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Where the project-local binary lives below a workspace root.
pub(crate) const LOCAL_DIR: &str = ".local/nats";
const BIN_NAME: &str = "nats-server";

/// Why a binary was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The `NATS_SERVER` environment variable.
    Env,
    /// `<root>/.local/nats/nats-server` under this workspace root.
    Workspace(PathBuf),
    /// `nats-server` found on `PATH`.
    Path,
}

/// A binary that exists (its version is not checked yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub source: Source,
}

/// Finds the binary to run, or says where it looked.
pub fn locate() -> Result<Located> {
    if let Some(value) = env::var_os("NATS_SERVER").filter(|v| !v.is_empty()) {
        let named = PathBuf::from(&value);
        let path = if named.components().count() == 1 {
            on_path(&value).unwrap_or(named)
        } else {
            named
        };
        return match path.is_file() {
            true => Ok(Located {
                path,
                source: Source::Env,
            }),
            false => Err(Error::EnvPathMissing(path)),
        };
    }
    let mut searched = Vec::new();
    for root in workspace_roots() {
        let path = local_binary(&root);
        if path.is_file() {
            return Ok(Located {
                path,
                source: Source::Workspace(root),
            });
        }
        searched.push(path);
    }
    if let Some(path) = on_path(BIN_NAME.as_ref()) {
        return Ok(Located {
            path,
            source: Source::Path,
        });
    }
    searched.push(PathBuf::from("$PATH/nats-server"));
    Err(Error::NotFound { searched })
}

/// The workspace root the installer writes under: the first candidate root.
pub fn workspace_root() -> Result<PathBuf> {
    workspace_roots()
        .into_iter()
        .next()
        .ok_or(Error::NoWorkspaceRoot)
}

/// `<root>/.local/nats/nats-server`.
pub(crate) fn local_binary(root: &Path) -> PathBuf {
    root.join(LOCAL_DIR).join(BIN_NAME)
}

/// Candidate roots, best first, without duplicates.
fn workspace_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(home) = env::var_os("CHATMESH_HOME").filter(|v| !v.is_empty()) {
        roots.push(PathBuf::from(home));
    }
    let starts = [
        env::current_dir().ok(),
        env::current_exe().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for start in starts.into_iter().flatten() {
        if let Some(root) = find_workspace_root(&start) {
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
    }
    roots
}

/// The nearest directory at or above `start` with a `Cargo.toml` declaring `[workspace]`.
pub(crate) fn find_workspace_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        let is_ws = manifest.lines().any(|l| l.trim() == "[workspace]");
        is_ws.then(|| dir.to_path_buf())
    })
}

fn on_path(name: &std::ffi::OsStr) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compile-time start point finds this checkout's root, not the crate folder.
    #[test]
    fn root_is_found_above_the_crate() {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = find_workspace_root(crate_dir).unwrap();
        assert_eq!(Some(root.as_path()), crate_dir.parent());
    }

    /// A directory tree without a workspace manifest has no root.
    #[test]
    fn no_root_outside_a_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(dir.path().join("a/Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        assert_eq!(find_workspace_root(&deep), None);
        std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        assert_eq!(find_workspace_root(&deep).as_deref(), Some(dir.path()));
    }
}
