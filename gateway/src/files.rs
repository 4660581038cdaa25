//! What a gateway holds for shared files (`[files]`): the object store, the rules, and the
//! bound on uploads streaming at once. The endpoints are in `http/files.rs`.
//!
//! **Upload slots.** An upload holds one of [`MAX_UPLOADS`] slots while its body streams.
//! One user holds at most [`MAX_UPLOADS_PER_USER`] of them and one client address (over all
//! its accounts) at most `[files] uploads_per_address`, and an upload must arrive at
//! [`MIN_UPLOAD_BYTES_PER_SEC`] or better on the whole (beside the idle timeout between
//! two chunks): a client trickling bytes just under the idle timeout would otherwise keep
//! every slot for hours, and every other upload on the gateway would be refused.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chatmesh_files::{FileStore, FilesConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::counts::{Counted, Counts};

/// What the gateway needs for files: the store, the rules, and the uploads in progress.
#[derive(Debug)]
pub struct GatewayFiles {
    pub store: FileStore,
    pub cfg: FilesConfig,
    uploads: Arc<Semaphore>,
    /// Uploads in progress per user.
    per_user: Counts<String>,
    /// Uploads in progress per client address ([`crate::throttle::client_key`]).
    per_address: Counts<IpAddr>,
}

/// Uploads one gateway streams at once; more are refused with 429 (each holds up to a few
/// multipart parts in memory).
pub const MAX_UPLOADS: usize = 16;
/// Uploads one user streams at once on one gateway; more are refused with 429.
pub const MAX_UPLOADS_PER_USER: usize = 2;
/// The slowest an upload may arrive on the whole (128 kbit/s): an upload of `size` bytes
/// must be received within the idle timeout plus `size` at this rate.
pub const MIN_UPLOAD_BYTES_PER_SEC: u64 = 16 * 1024;

/// Why no upload slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// Every slot of the gateway is taken.
    Gateway,
    /// The user has [`MAX_UPLOADS_PER_USER`] uploads in progress.
    User,
    /// The client address has `uploads_per_address` uploads in progress.
    Address,
}

/// An upload slot, given back on drop.
#[derive(Debug)]
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
    _user: Counted<String>,
    _address: Option<Counted<IpAddr>>,
}

impl GatewayFiles {
    pub fn new(store: FileStore, cfg: FilesConfig) -> Self {
        Self {
            store,
            cfg,
            uploads: Arc::new(Semaphore::new(MAX_UPLOADS)),
            per_user: Counts::default(),
            per_address: Counts::default(),
        }
    }

    /// A slot for an upload by `user` from client address `ip` (`None`: a trusted proxy
    /// that named no client, not counted), or why not.
    pub fn upload_slot(&self, user: &str, ip: Option<IpAddr>) -> Result<UploadSlot, NoSlot> {
        let counted = self
            .per_user
            .take(&user.to_owned(), MAX_UPLOADS_PER_USER)
            .ok_or(NoSlot::User)?;
        let address = match ip {
            Some(ip) => Some(
                self.per_address
                    .take(
                        &crate::throttle::client_key(ip),
                        self.cfg.uploads_per_address,
                    )
                    .ok_or(NoSlot::Address)?,
            ),
            None => None,
        };
        let permit = self
            .uploads
            .clone()
            .try_acquire_owned()
            .map_err(|_| NoSlot::Gateway)?;
        Ok(UploadSlot {
            _permit: permit,
            _user: counted,
            _address: address,
        })
    }
}

/// How long the first `size` bytes of an upload may take: the idle timeout plus `size` at
/// [`MIN_UPLOAD_BYTES_PER_SEC`] (checked all along an upload, so it can never fall further
/// behind that rate than the idle timeout).
pub fn upload_deadline(size: u64, idle: Duration) -> Duration {
    idle + Duration::from_millis(size.saturating_mul(1_000) / MIN_UPLOAD_BYTES_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_grows_with_the_size_at_the_minimum_rate() {
        let idle = Duration::from_millis(500);
        assert_eq!(upload_deadline(0, idle), idle);
        assert_eq!(
            upload_deadline(16 * 1024 * 60, idle),
            idle + Duration::from_secs(60)
        );
        assert!(upload_deadline(u64::MAX, idle) > Duration::from_secs(1 << 40));
    }
}
