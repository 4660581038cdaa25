//! Credentials of the NATS bus: one nkey per role ([`Role`]), generated once into a
//! directory (the dir 0700, each seed 0600 from the moment it exists), and the
//! `authorization` block that makes nats-server admit only those keys, each with its role's
//! permissions. `chatmesh up` does this in `<data>/creds/` at first start; `chatmesh
//! nats-auth --dir DIR` does it for a deployment (ops/mesh, Kubernetes).
//!
//! Only public keys go into the server config, so it holds no secret.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chatmesh_protocol::bus::{Permissions, Role};

/// File name of the rendered `authorization` block inside the credentials dir.
pub const AUTH_CONF: &str = "auth.conf";

/// Why credentials could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} does not hold a valid nkey seed: {source}", path.display())]
    BadSeed {
        path: PathBuf,
        #[source]
        source: nkeys::error::Error,
    },
    #[error("generating an nkey: {0}")]
    Generate(#[source] nkeys::error::Error),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BusError + 'a {
    move |source| BusError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The bus credentials in one directory.
#[derive(Debug, Clone)]
pub struct BusCredentials {
    dir: PathBuf,
    /// (role, public key), in [`Role::ALL`] order.
    public: Vec<(Role, String)>,
    /// `mesh.regions`: the streams the roles' permissions name.
    regions: Vec<String>,
}

impl BusCredentials {
    /// Reads the seeds in `dir`, generating any that are missing (existing ones are kept, so
    /// a restart keeps its keys), and writes `auth.conf` beside them, with the permissions
    /// of a deployment with `regions` (`mesh.regions`; empty for one region).
    pub fn ensure(dir: &Path, regions: &[String]) -> Result<Self, BusError> {
        create_private_dir(dir)?;
        let mut public = Vec::new();
        for role in Role::ALL {
            let path = seed_path(dir, role);
            let seed = match fs::read_to_string(&path) {
                Ok(seed) => seed.trim().to_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let pair = nkeys::KeyPair::new_user();
                    let seed = pair.seed().map_err(BusError::Generate)?;
                    write_private(&path, seed.as_bytes())?;
                    seed
                }
                Err(e) => return Err(io("reading", &path)(e)),
            };
            let pair = nkeys::KeyPair::from_seed(&seed).map_err(|source| BusError::BadSeed {
                path: path.clone(),
                source,
            })?;
            public.push((role, pair.public_key()));
        }
        let creds = Self {
            dir: dir.to_path_buf(),
            public,
            regions: regions.to_vec(),
        };
        let conf = dir.join(AUTH_CONF);
        write_replace(&conf, creds.authorization().as_bytes())?;
        Ok(creds)
    }

    /// The seed file of `role`.
    pub fn seed_file(&self, role: Role) -> PathBuf {
        seed_path(&self.dir, role)
    }

    /// The seed of `role`.
    pub fn seed(&self, role: Role) -> Result<String, BusError> {
        let path = self.seed_file(role);
        fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(io("reading", &path))
    }

    /// The `authorization { users = [...] }` block for nats-server.
    pub fn authorization(&self) -> String {
        let mut out = String::from(
            "# written by chatmesh (bus credentials); one nkey per role, public keys only\n\
             authorization {\n  users = [\n",
        );
        for (role, key) in &self.public {
            out.push_str(&format!("    # {}\n    {{ nkey: {key:?}", role.name()));
            if let Some(p) = role.permissions_in(&self.regions) {
                out.push_str(&format!(", permissions: {}", render(&p)));
            }
            out.push_str(" }\n");
        }
        out.push_str("  ]\n}\n");
        out
    }
}

fn seed_path(dir: &Path, role: Role) -> PathBuf {
    dir.join(format!("{}.nk", role.name()))
}

fn render(p: &Permissions) -> String {
    let list = |subjects: &[String]| {
        let quoted: Vec<String> = subjects.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", quoted.join(", "))
    };
    let mut out = format!(
        "{{ publish: {{ allow: {} }}, subscribe: {{ allow: {} }}",
        list(&p.publish),
        list(&p.subscribe)
    );
    if p.allow_responses {
        out.push_str(", allow_responses: { max: 1, expires: \"1m\" }");
    }
    out.push_str(" }");
    out
}

/// Creates `dir` (and parents) and makes it accessible to its owner only.
fn create_private_dir(dir: &Path) -> Result<(), BusError> {
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io("restricting", dir))?;
    }
    Ok(())
}

/// Writes a new secret file that is 0600 from its creation: into a fresh temp name in the
/// same dir (never an existing file), then renamed into place.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BusError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&tmp).map_err(io("creating", &tmp))?;
    file.write_all(bytes).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("renaming into", path))
}

/// Replaces a non-secret file (write to a temp name, rename).
fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), BusError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, bytes).map_err(io("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("renaming into", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds are made once with mode 0600 in a 0700 dir, kept across calls, and the rendered
    /// block names every role's public key (never a seed).
    #[test]
    fn credentials_are_private_stable_and_public_only_in_the_config() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let creds_dir = dir.path().join("creds");
        let a = BusCredentials::ensure(&creds_dir, &[]).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&creds_dir), 0o700);
        for role in Role::ALL {
            assert_eq!(mode(&a.seed_file(role)), 0o600, "{role:?}");
            assert!(a.seed(role).unwrap().starts_with("SU"));
        }
        let b = BusCredentials::ensure(&creds_dir, &[]).unwrap();
        assert_eq!(a.public, b.public, "a second start keeps the keys");
        let conf = fs::read_to_string(creds_dir.join(AUTH_CONF)).unwrap();
        for role in Role::ALL {
            assert!(!conf.contains(&a.seed(role).unwrap()));
        }
        assert_eq!(conf.matches("nkey:").count(), Role::ALL.len());
        assert!(conf.contains("allow_responses"));
    }
}
