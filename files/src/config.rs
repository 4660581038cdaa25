//! `[files]`: where shared files live and how much of them a room and a user may keep.
//!
//! Without `url`, files live in the folder `dir` (`<data dir>/files` under `chatmesh up`).
//! With `url`, in object storage: `s3://bucket/prefix` (S3 and S3-compatible),
//! `az://container/prefix` (Azure Blob), `gs://bucket/prefix` (GCS), `file:///abs/path`, or
//! `memory://` (tests; nothing survives a restart). Credentials come from the environment
//! as `object_store` reads it (`AWS_ACCESS_KEY_ID`, `AZURE_STORAGE_ACCOUNT_NAME`,
//! `GOOGLE_SERVICE_ACCOUNT`, ...) and from `options`, whose keys are `object_store`'s config
//! keys (`aws_endpoint`, `aws_allow_http`, `azure_storage_account_key`, ...).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// `[files]`.
/// The slowest an upload may arrive on the whole (128 kbit/s): gateways cut one that falls
/// further behind than their idle timeout, and `upload_timeout_secs` must leave the largest
/// file time to arrive at this rate.
pub const MIN_UPLOAD_BYTES_PER_SEC: u64 = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// File sharing on or off. Off, the file endpoints answer `unavailable` and `send` with
    /// attachments is refused. Gateways and workers in separate pods or machines need a
    /// store they all reach (`url`); the default folder serves one machine (`chatmesh up`).
    pub enabled: bool,
    /// Object storage URL (s3://, az://, gs://, file://, memory://); unset: the folder `dir`.
    pub url: Option<String>,
    /// The local folder used when `url` is unset.
    pub dir: PathBuf,
    /// Store options on top of the environment (object_store config keys).
    pub options: BTreeMap<String, String>,
    /// Largest file, in bytes.
    pub max_file_bytes: u64,
    /// Bytes of files one room may hold (0: no limit).
    pub room_quota_bytes: u64,
    /// Bytes of files one user may hold in one room (0: no limit).
    pub user_quota_bytes: u64,
    /// Answer downloads with a redirect to a presigned URL (S3, Azure, GCS only).
    pub redirect: bool,
    /// How long a presigned URL is valid.
    pub redirect_secs: u64,
    /// A file no message refers to is deleted this long after its upload.
    pub unattached_grace_secs: u64,
    /// An upload that has not finished this long after it started is deleted. Longer than
    /// the largest file takes at the gateways' minimum upload rate (16 KiB/s: 100 MiB in
    /// 1 h 47 min).
    pub upload_timeout_secs: u64,
    /// Uploads one client address (an IPv6 client by its /64; behind a trusted proxy, the
    /// forwarded client) may stream at once on one gateway, over all its accounts; one more
    /// is refused with 429 (a gateway streams at most 16). Trusted proxies that name no
    /// client are exempt.
    pub uploads_per_address: usize,
    /// Uploads one client address (counted as for `uploads_per_address`) may start per
    /// minute on one gateway, over all its accounts, after a burst of `upload_start_burst`;
    /// one more is refused with 429 and a `Retry-After`. Starting uploads over and over
    /// would otherwise keep the gateway's slots taken by uploads too young to give way.
    pub upload_starts_per_minute: u32,
    /// The burst of `upload_starts_per_minute`.
    pub upload_start_burst: u32,
    /// How often a worker's sweeper looks for files to delete.
    pub sweep_interval_secs: u64,
    /// Images larger than this get no thumbnail (they are read whole to be decoded).
    pub thumbnail_max_input_bytes: u64,
    /// Thumbnails decoded at once by one worker.
    pub thumbnail_concurrency: usize,
    /// Thumbnails waiting to be made by one worker; an image that finds no room stays
    /// `pending` and the sweeper queues it again later.
    pub thumbnail_queue: usize,
    /// Of those, how many one uploader's images may be; uploaders' images are taken in
    /// turn, so one user's burst does not hold back everyone else's thumbnails.
    pub thumbnail_queue_per_user: usize,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: None,
            dir: PathBuf::from("data/files"),
            options: BTreeMap::new(),
            max_file_bytes: 100 * MIB,
            room_quota_bytes: 10 * 1024 * MIB,
            user_quota_bytes: 1024 * MIB,
            redirect: false,
            redirect_secs: 300,
            unattached_grace_secs: 24 * 3600,
            upload_timeout_secs: 7200,
            uploads_per_address: 4,
            upload_starts_per_minute: 60,
            upload_start_burst: 20,
            sweep_interval_secs: 300,
            thumbnail_max_input_bytes: 32 * MIB,
            thumbnail_concurrency: 1,
            thumbnail_queue: 256,
            thumbnail_queue_per_user: 16,
        }
    }
}
