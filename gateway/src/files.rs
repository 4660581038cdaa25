//! What a gateway holds for shared files (`[files]`): the object store, the rules, and the
//! bound on uploads streaming at once. The endpoints are in `http/files.rs`.

use std::sync::Arc;

use chatmesh_files::{FileStore, FilesConfig};
use tokio::sync::Semaphore;

/// What the gateway needs for files: the store, the rules, and the uploads in progress.
#[derive(Debug)]
pub struct GatewayFiles {
    pub store: FileStore,
    pub cfg: FilesConfig,
    pub(crate) uploads: Arc<Semaphore>,
}

/// Uploads one gateway streams at once; more are refused with 429 (each holds up to a few
/// multipart parts in memory).
pub const MAX_UPLOADS: usize = 16;

impl GatewayFiles {
    pub fn new(store: FileStore, cfg: FilesConfig) -> Self {
        Self {
            store,
            cfg,
            uploads: Arc::new(Semaphore::new(MAX_UPLOADS)),
        }
    }
}
