//! File sharing's storage side: where the bytes of shared files live and what is known
//! about them from the bytes alone.
//!
//! - [`config`]: `[files]`, the store URL, size caps, quotas and the sweeper's timings.
//! - [`store`]: [`FileStore`], object storage through `object_store` (a local folder by
//!   default; S3, Azure Blob or GCS by URL), streamed multipart uploads, range reads,
//!   presigned URLs.
//! - [`sniff`]: the content type from magic bytes, file names, image headers (and the
//!   decompression-bomb limits).
//! - [`thumb`]: thumbnails under decode limits.
//! - [`queue`]: the thumbnail jobs waiting in a worker, taken in turn per uploader.
//!
//! Which files exist, who uploaded them and which messages refer to them is the workers'
//! (their store); who may read them is decided per request by the gateway.

mod check;
pub mod config;
pub mod error;
pub mod queue;
pub mod sniff;
pub mod store;
pub mod thumb;

pub use config::{FilesConfig, MIN_UPLOAD_BYTES_PER_SEC};
pub use error::FilesError;
/// The object storage crate, for the types in this crate's API (paths, streams).
pub use object_store;
pub use store::{FileStore, Upload};
