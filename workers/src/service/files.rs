//! Shared files' service operations: a gateway reserves a new file (`file_begin`: the
//! uploader may post, the size cap and the room's and uploader's quotas hold), stores the
//! bytes in object storage itself, then completes it (`file_commit`: what the bytes are) or
//! gives it up (`file_abort`). `file_get` and `file_attach` read complete files that no
//! delete detached (`Model::live_file`); the gateway checks the reader's access before
//! asking. Any member may attach a room's file, not only its uploader (docs/PROTOCOL.md,
//! "Files"): what a delete detached is refused to everyone.
//!
//! The worker that owns the room is the only writer of its files' records and byte counts:
//! every change runs under the room's file lock, so two uploads never both fit in the last
//! bytes of a quota.

use chatmesh_files::sniff::is_inline_image;
use chatmesh_protocol::files::{
    validate_file_id, validate_file_name, AttachRequest, Attachments, FileBeginRequest,
    FileCommitRequest, FileInfo, FileRequest, Thumbnail,
};
use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::service::Done;
use chatmesh_protocol::{ApiError, ErrorCode};

use chatmesh_files::{FileStore, FilesConfig, FilesError};

use super::{valid, Service};
use crate::model::{FileRecord, Model};
use crate::store::WriteBatch;

/// Object storage and the `[files]` rules, as a worker uses them.
#[derive(Debug, Clone)]
pub struct Files {
    pub store: FileStore,
    pub cfg: FilesConfig,
}

impl Files {
    pub fn open(cfg: &FilesConfig) -> Result<Self, FilesError> {
        Ok(Self {
            store: FileStore::open(cfg)?,
            cfg: cfg.clone(),
        })
    }
}

/// What the service keeps to queue thumbnails.
#[derive(Debug)]
pub(crate) struct FilesHandle {
    pub files: Files,
    pub jobs: std::sync::Arc<chatmesh_files::queue::FairQueue>,
}

/// The least a file counts against the quotas, however small: a block on disk and a
/// record in the store. Without it empty files were free, and a loop of them piled up
/// records (and objects) without end.
pub(crate) const MIN_FILE_CHARGE: u64 = 4 * 1024;

/// What a file of `size` bytes counts against the quotas.
pub(crate) fn charged(size: u64) -> u64 {
    size.max(MIN_FILE_CHARGE)
}

impl Service {
    pub async fn file_begin(&self, req: FileBeginRequest) -> Result<Done, ApiError> {
        let cfg = &self.files()?.files.cfg;
        valid("room", &req.room)?;
        valid("user name", &req.actor)?;
        validate_file_id(&req.id)?;
        validate_file_name(&req.name)?;
        if req.size > cfg.max_file_bytes {
            return Err(too_large(format!(
                "the file has {} bytes; at most {} are accepted",
                req.size, cfg.max_file_bytes
            )));
        }
        self.room_meta(&req.room).await?;
        if self.model().role(&req.room, &req.actor).await?.is_none() {
            return Err(ApiError::forbidden(
                "only members may share files in this room",
            ));
        }
        let _guard = self.lock_files(&req.room).await;
        if self.model().file(&req.room, &req.id).await?.is_some() {
            return Err(ApiError::new(ErrorCode::Conflict, "the file id is taken"));
        }
        let (room_bytes, user_bytes) = self.model().file_bytes(&req.room, &req.actor).await?;
        let charge = charged(req.size);
        let over = |used: u64, quota: u64| quota > 0 && used.saturating_add(charge) > quota;
        if over(room_bytes, cfg.room_quota_bytes) {
            return Err(too_large(format!(
                "the room holds {room_bytes} bytes of files; with {charge} more it would pass its quota of {}",
                cfg.room_quota_bytes
            )));
        }
        if over(user_bytes, cfg.user_quota_bytes) {
            return Err(too_large(format!(
                "you hold {user_bytes} bytes of files in this room; with {charge} more you would pass your quota of {}",
                cfg.user_quota_bytes
            )));
        }
        let record = FileRecord {
            name: req.name,
            size: req.size,
            by: req.actor.clone(),
            ts: now_ms(),
            complete: false,
            content_type: String::new(),
            width: None,
            height: None,
            thumbnail: Thumbnail::None,
            attached: 0,
        };
        let mut batch = WriteBatch::new();
        Model::put_file(&mut batch, &req.room, &req.id, &record);
        Model::put_file_bytes(
            &mut batch,
            &req.room,
            &req.actor,
            (room_bytes + charge, user_bytes + charge),
        );
        self.model().write(batch).await?;
        Ok(Done {})
    }

    pub async fn file_commit(&self, req: FileCommitRequest) -> Result<FileInfo, ApiError> {
        self.files()?;
        valid("room", &req.room)?;
        validate_file_id(&req.id)?;
        let info = {
            let _guard = self.lock_files(&req.room).await;
            let mut record = self
                .model()
                .file(&req.room, &req.id)
                .await?
                .filter(|f| !f.complete)
                .ok_or_else(|| ApiError::not_found("no such upload"))?;
            // The sweeper marks what it deletes before it deletes the bytes.
            if self.model().file_detached(&req.room, &req.id).await? {
                return Err(ApiError::not_found("no such upload"));
            }
            record.complete = true;
            record.thumbnail = if is_inline_image(&req.content_type) {
                Thumbnail::Pending
            } else {
                Thumbnail::None
            };
            record.content_type = req.content_type;
            record.width = req.width;
            record.height = req.height;
            let mut batch = WriteBatch::new();
            Model::put_file(&mut batch, &req.room, &req.id, &record);
            self.model().write(batch).await?;
            record.info(&req.room, &req.id)
        };
        if info.thumbnail == Thumbnail::Pending {
            self.queue_thumbnail(&req.room, &req.id, &info.by);
        }
        Ok(info)
    }

    pub async fn file_abort(&self, req: FileRequest) -> Result<Done, ApiError> {
        self.files()?;
        valid("room", &req.room)?;
        validate_file_id(&req.id)?;
        let _guard = self.lock_files(&req.room).await;
        match self.model().file(&req.room, &req.id).await? {
            Some(record) if !record.complete => {
                self.forget_file(&req.room, &req.id, &record).await?;
                Ok(Done {})
            }
            _ => Err(ApiError::not_found("no such upload")),
        }
    }

    pub async fn file_get(&self, req: FileRequest) -> Result<FileInfo, ApiError> {
        valid("room", &req.room)?;
        validate_file_id(&req.id)?;
        self.model()
            .live_file(&req.room, &req.id)
            .await?
            .map(|f| f.info(&req.room, &req.id))
            .ok_or_else(|| ApiError::not_found("no such file"))
    }

    /// Checks the files a message will carry and stamps each record with the attach, under
    /// the room's file lock: the sweeper decides under the same lock and counts its grace
    /// from the last attach, so the message (stored a moment later by the store writer)
    /// never carries a file the sweeper is deleting. A file the sweeper has begun to delete
    /// is marked detached first, and refused here.
    pub async fn file_attach(&self, req: AttachRequest) -> Result<Attachments, ApiError> {
        valid("room", &req.room)?;
        for id in &req.ids {
            validate_file_id(id)?;
        }
        let _guard = self.lock_files(&req.room).await;
        let now = now_ms();
        let mut batch = WriteBatch::new();
        let mut attachments = Vec::with_capacity(req.ids.len());
        for id in &req.ids {
            let mut file = self
                .model()
                .live_file(&req.room, id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no file {id} in this room")))?;
            attachments.push(file.info(&req.room, id).attachment());
            file.attached = now;
            Model::put_file(&mut batch, &req.room, id, &file);
        }
        self.model().write(batch).await?;
        Ok(Attachments { attachments })
    }

    /// Deletes a file's record and references and gives its bytes back to the quotas. The
    /// caller holds the room's file lock and has deleted (or never stored) the objects.
    pub(crate) async fn forget_file(
        &self,
        room: &str,
        id: &str,
        record: &FileRecord,
    ) -> Result<(), ApiError> {
        let (room_bytes, user_bytes) = self.model().file_bytes(room, &record.by).await?;
        let mut batch = WriteBatch::new();
        self.model().delete_file(&mut batch, room, id).await?;
        Model::put_file_bytes(
            &mut batch,
            room,
            &record.by,
            (
                room_bytes.saturating_sub(charged(record.size)),
                user_bytes.saturating_sub(charged(record.size)),
            ),
        );
        self.model().write(batch).await?;
        Ok(())
    }
}

fn too_large(message: String) -> ApiError {
    ApiError::new(ErrorCode::TooLarge, message)
}
