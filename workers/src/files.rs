//! The worker's side of shared files: thumbnails made off the request path, and the
//! sweeper that deletes files nothing needs any more.
//!
//! Thumbnails: `file_commit` of an image queues a job in the uploader's turn
//! (`chatmesh_files::queue`: bounded by `[files] thumbnail_queue` and, per uploader,
//! `thumbnail_queue_per_user`); at most `thumbnail_concurrency` are decoded at once, each on
//! a blocking thread under the decode limits of `chatmesh_files::thumb`. A job that finds no
//! room in the queue, or that a restart lost, is queued again by the sweeper: a thumbnail
//! stays `pending` until it is `ready` or `failed`, never forever.
//!
//! The sweeper walks every file record of the rooms this worker owns, a page at a time,
//! every `sweep_interval_secs`, and deletes (bytes, thumbnail, record, references, quota):
//! - an upload not finished within `upload_timeout_secs` (its gateway died mid-upload);
//! - a file of a room that no longer exists;
//! - a file whose last carrying message a delete took (detached: at once, no grace);
//! - a file no stored message carries, `unattached_grace_secs` after its upload and its
//!   last attach (the message it was attached to may not be stored yet);
//! - a file whose last carrying message retention has deleted (its grace after its last
//!   attach passed).
//!
//! A file is decided on again under the room's file lock, and marked detached there before
//! its objects go: attaches (which stamp the record under that lock), commits and thumbnail
//! makers then see it as gone.

use std::sync::Arc;
use std::time::Duration;

use chatmesh_files::queue::FairQueue;
use chatmesh_files::FilesError;
use chatmesh_protocol::files::Thumbnail;
use chatmesh_protocol::message::now_ms;
use metrics::counter;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::model::{keys, records, FileRecord, Model};
use crate::service::{Files, FilesHandle, Service};
use crate::store::WriteBatch;

/// File records read per sweeper page.
const SWEEP_PAGE: usize = 256;
/// A thumbnail still pending this long after its upload is queued again.
const THUMBNAIL_RETRY_MS: u64 = 30_000;

/// Whether this worker owns a room now.
pub type Owns = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Enables the file operations of `svc` and starts the thumbnail maker and the sweeper.
pub(crate) fn start(
    svc: &Service,
    files: Files,
    owns: Owns,
    tasks: &mut JoinSet<Result<(), crate::error::WorkerError>>,
    shutdown: CancellationToken,
) {
    let jobs = Arc::new(FairQueue::new(
        files.cfg.thumbnail_queue,
        files.cfg.thumbnail_queue_per_user,
    ));
    let concurrency = files.cfg.thumbnail_concurrency;
    let interval = Duration::from_secs(files.cfg.sweep_interval_secs);
    svc.enable_files(FilesHandle {
        files,
        jobs: jobs.clone(),
    });
    let (s1, stop1) = (svc.clone(), shutdown.clone());
    tasks.spawn(async move {
        thumbnails(s1, jobs, concurrency, stop1).await;
        Ok(())
    });
    let s2 = svc.clone();
    tasks.spawn(async move {
        sweeper(s2, owns, interval, shutdown).await;
        Ok(())
    });
}

async fn thumbnails(
    svc: Service,
    jobs: Arc<FairQueue>,
    concurrency: usize,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut running = JoinSet::new();
    loop {
        // A decode slot first, then the job whose turn it is by then: a job is taken only
        // when it can start, so a later uploader's image is not stuck behind one taken early.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let job = tokio::select! {
            _ = shutdown.cancelled() => break,
            job = jobs.pop() => job,
        };
        let svc = svc.clone();
        running.spawn(async move {
            let _permit = permit;
            svc.make_thumbnail(&job.room, &job.id).await;
        });
        while running.try_join_next().is_some() {}
    }
    // Jobs in progress finish (or the process ends); queued ones are the sweeper's again.
    while running.join_next().await.is_some() {}
}

async fn sweeper(svc: Service, owns: Owns, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match svc.sweep_files(&*owns, now_ms()).await {
            Ok(0) => {}
            Ok(n) => info!(deleted = n, "file sweeper deleted files"),
            Err(e) => warn!(error = %chatmesh_protocol::error::Chain(&e), "file sweep failed"),
        }
    }
}

/// Whether a thumbnail failed for a reason other than its image: a store read that failed,
/// or a decode thread cancelled (the runtime shutting down). A decode thread that panicked
/// is the image's doing (a decoder bug it found) and would panic again: that one is final.
fn transient(e: &FilesError) -> bool {
    match e {
        FilesError::Store { .. } => true,
        FilesError::Join(join) => join.is_cancelled(),
        _ => false,
    }
}

/// Why the sweeper deletes a file (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    UploadAbandoned,
    RoomGone,
    Detached,
    Unattached,
    Trimmed,
}

impl Why {
    fn label(self) -> &'static str {
        match self {
            Why::UploadAbandoned => "upload_abandoned",
            Why::RoomGone => "room_gone",
            Why::Detached => "message_deleted",
            Why::Unattached => "unattached",
            Why::Trimmed => "trimmed",
        }
    }
}

impl Service {
    /// Makes the thumbnail of file `id` of `room` if it is still pending.
    pub(crate) async fn make_thumbnail(&self, room: &str, id: &str) {
        let Ok(handle) = self.files() else { return };
        let Ok(Some(record)) = self.model().file(room, id).await else {
            return;
        };
        if !record.complete || record.thumbnail != Thumbnail::Pending {
            return;
        }
        if self.model().file_detached(room, id).await.unwrap_or(true) {
            return;
        }
        let store = &handle.files.store;
        let made = match store
            .read_all(
                &store.object(room, id),
                handle.files.cfg.thumbnail_max_input_bytes,
            )
            .await
        {
            Ok(bytes) => chatmesh_files::thumb::thumbnail(bytes).await,
            Err(e) => Err(e),
        };
        let outcome = match made {
            Ok((png, w, h)) => match store
                .put(&store.thumbnail(room, id), png, "image/png")
                .await
            {
                Ok(()) => Some((w, h)),
                Err(e) => {
                    // Storage trouble is not the image's fault: the sweeper tries again.
                    warn!(room, id, error = %chatmesh_protocol::error::Chain(&e), "could not store a thumbnail");
                    return;
                }
            },
            Err(FilesError::NotFound) => return,
            Err(e) if transient(&e) => {
                // Nor is a read that failed or a decode thread cancelled by a shutdown: the
                // thumbnail stays pending and the sweeper queues it again.
                warn!(room, id, error = %chatmesh_protocol::error::Chain(&e), "could not make a thumbnail; will retry");
                return;
            }
            Err(e) => {
                debug!(room, id, error = %chatmesh_protocol::error::Chain(&e), "no thumbnail");
                None
            }
        };
        counter!("chatmesh_file_thumbnails_total", "outcome" => if outcome.is_some() { "ready" } else { "failed" }).increment(1);
        let _guard = self.lock_files(room).await;
        // Deleted meanwhile, or being deleted (the sweeper marks a file detached before it
        // deletes its objects, and may have deleted the thumbnail before it was stored
        // here): so is what was just made.
        let record = match self.model().file(room, id).await {
            Ok(Some(record)) => match self.model().file_detached(room, id).await {
                Ok(false) => Some(record),
                _ => None,
            },
            _ => None,
        };
        let Some(mut record) = record else {
            let _ = store.delete(&store.thumbnail(room, id)).await;
            return;
        };
        match outcome {
            Some((w, h)) => {
                record.thumbnail = Thumbnail::Ready;
                record.width.get_or_insert(w);
                record.height.get_or_insert(h);
            }
            None => record.thumbnail = Thumbnail::Failed,
        }
        let mut batch = WriteBatch::new();
        Model::put_file(&mut batch, room, id, &record);
        if let Err(e) = self.model().write(batch).await {
            warn!(room, id, error = %chatmesh_protocol::error::Chain(&e), "could not record a thumbnail");
        }
    }

    /// One pass over every file of the rooms `owns` says are ours; returns how many were
    /// deleted.
    pub async fn sweep_files(
        &self,
        owns: &(dyn Fn(&str) -> bool + Send + Sync),
        now: u64,
    ) -> Result<u64, crate::store::StoreError> {
        if self.files().is_err() {
            return Ok(0);
        }
        let mut from = keys::files_all().start;
        let mut deleted = 0;
        loop {
            let page = self.model().files_from(from.clone(), SWEEP_PAGE).await?;
            for (key, value) in &page {
                let Some((room, id)) = keys::room_and_file(key) else {
                    continue;
                };
                if !owns(room) {
                    continue;
                }
                match self.sweep_file(room, id, key, value, now).await {
                    Ok(true) => deleted += 1,
                    Ok(false) => {}
                    // A record that cannot be read (written by another version, damaged)
                    // holds up its own file, not every file after it.
                    Err(e @ crate::store::StoreError::Corrupt { .. }) => {
                        metrics::counter!(crate::metrics::FILES_SWEEP_SKIPPED).increment(1);
                        warn!(room, id, error = %chatmesh_protocol::error::Chain(&e), "the file sweeper skipped a file it cannot read");
                    }
                    Err(e) => return Err(e),
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == SWEEP_PAGE => {
                    from = last.clone();
                    from.push(0);
                }
                _ => return Ok(deleted),
            }
        }
    }

    /// The sweeper's look at file `id` of `room` (its record `key`, `value`) at `now`: deletes
    /// it if nothing needs it (true), or queues its thumbnail again if that is overdue.
    async fn sweep_file(
        &self,
        room: &str,
        id: &str,
        key: &[u8],
        value: &[u8],
        now: u64,
    ) -> Result<bool, crate::store::StoreError> {
        let record: FileRecord = records::decode(key, value)?;
        let age = now.saturating_sub(record.ts);
        match self.why_delete(room, id, &record, now).await? {
            Some(_) => return Ok(self.delete_file(room, id, now).await),
            None if record.thumbnail == Thumbnail::Pending
                && age > THUMBNAIL_RETRY_MS
                && !self.model().file_detached(room, id).await? =>
            {
                self.queue_thumbnail(room, id, &record.by);
            }
            None => {}
        }
        Ok(false)
    }

    /// Why file `id` of `room` (its record `record`) is to be deleted at `now`, if it is.
    async fn why_delete(
        &self,
        room: &str,
        id: &str,
        record: &FileRecord,
        now: u64,
    ) -> Result<Option<Why>, crate::store::StoreError> {
        let Ok(handle) = self.files() else {
            return Ok(None);
        };
        let cfg = &handle.files.cfg;
        let grace = cfg.unattached_grace_secs * 1000;
        // A message attached it a moment ago may not be stored yet: the grace counts from the
        // last attach too.
        let attached_lately = now.saturating_sub(record.attached) <= grace;
        let age = now.saturating_sub(record.ts);
        Ok(if !record.complete {
            (age > cfg.upload_timeout_secs * 1000).then_some(Why::UploadAbandoned)
        } else if self.model().room(room).await?.is_none() {
            Some(Why::RoomGone)
        } else if self.model().file_detached(room, id).await?
            && self.model().last_file_ref(room, id).await?.is_none()
        {
            // A message stored after the detach may carry it still (its attach was
            // checked before the delete was stored): kept while one does, unreadable
            // all the same (an e2ee room's record may need a commit's file).
            Some(Why::Detached)
        } else {
            match self.model().last_file_ref(room, id).await? {
                None => (age > grace && !attached_lately).then_some(Why::Unattached),
                Some(last) => match self.model().oldest_seq(room).await? {
                    Some(oldest) if last >= oldest => None,
                    _ => (!attached_lately).then_some(Why::Trimmed),
                },
            }
        })
    }

    /// Deletes a file the sweeper chose: decided again under the room's file lock (an
    /// attach or a commit since the page was read wins) and marked detached there, so that
    /// from then on no attach, download or commit finds it and a thumbnail stored meanwhile
    /// is deleted by its maker; then its objects, then its record (a failure leaves the
    /// marked record for the next pass).
    async fn delete_file(&self, room: &str, id: &str, now: u64) -> bool {
        let Ok(handle) = self.files() else {
            return false;
        };
        let why = {
            let _guard = self.lock_files(room).await;
            let Ok(Some(record)) = self.model().file(room, id).await else {
                return false;
            };
            let why = match self.why_delete(room, id, &record, now).await {
                Ok(Some(why)) => why,
                Ok(None) => return false,
                Err(e) => {
                    warn!(room, id, error = %chatmesh_protocol::error::Chain(&e), "could not decide on a file");
                    return false;
                }
            };
            let mut batch = WriteBatch::new();
            Model::put_file_detached(&mut batch, room, id);
            if let Err(e) = self.model().write(batch).await {
                warn!(room, id, error = %chatmesh_protocol::error::Chain(&e), "could not mark a file for deletion");
                return false;
            }
            why
        };
        let store = &handle.files.store;
        for path in [store.object(room, id), store.thumbnail(room, id)] {
            if let Err(e) = store.delete(&path).await {
                warn!(room, id, error = %chatmesh_protocol::error::Chain(&e), "could not delete a file's bytes");
                return false;
            }
        }
        let _guard = self.lock_files(room).await;
        let Ok(Some(record)) = self.model().file(room, id).await else {
            return false;
        };
        if self.forget_file(room, id, &record).await.is_err() {
            return false;
        }
        counter!("chatmesh_files_swept_total", "why" => why.label()).increment(1);
        debug!(room, id, why = why.label(), "file deleted");
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use chatmesh_files::FilesConfig;
    use chatmesh_protocol::files::{FileBeginRequest, FileCommitRequest};
    use chatmesh_protocol::service::{CreateRoomRequest, RoomKind};

    use super::*;
    use crate::cache::Caches;
    use crate::model::StoredMessage;
    use crate::WorkerConfig;

    const HOUR_MS: u64 = 3_600_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        files_dir: std::path::PathBuf,
        svc: Service,
        jobs: Arc<FairQueue>,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WorkerConfig {
            data_dir: dir.path().join("store"),
            ..WorkerConfig::default()
        };
        let model = Model::new(crate::open_store(&cfg).await.unwrap());
        let svc =
            Service::new(model, Arc::new(Caches::new(cfg.cache_sizes())), &cfg, None).unwrap();
        let files_dir = dir.path().join("files");
        let fcfg = FilesConfig {
            dir: files_dir.clone(),
            upload_timeout_secs: 3600,
            unattached_grace_secs: 24 * 3600,
            ..FilesConfig::default()
        };
        let jobs = Arc::new(FairQueue::new(
            fcfg.thumbnail_queue,
            fcfg.thumbnail_queue_per_user,
        ));
        svc.enable_files(FilesHandle {
            files: Files::open(&fcfg).unwrap(),
            jobs: jobs.clone(),
        });
        let room = CreateRoomRequest {
            room: "r".into(),
            kind: RoomKind::Private,
            actor: "ann".into(),
        };
        svc.room_create(room).await.unwrap();
        Fixture {
            _dir: dir,
            files_dir,
            svc,
            jobs,
        }
    }

    /// A file of room `r` with its bytes stored; complete unless `pending`.
    async fn file(svc: &Service, id: &str, pending: bool) {
        let begin = FileBeginRequest {
            room: "r".into(),
            id: id.into(),
            actor: "ann".into(),
            name: format!("{id}.txt"),
            size: 5,
        };
        svc.file_begin(begin).await.unwrap();
        let store = &svc.files().unwrap().files.store;
        store
            .put(
                &store.object("r", id),
                Bytes::from_static(b"bytes"),
                "text/plain",
            )
            .await
            .unwrap();
        if !pending {
            let commit = FileCommitRequest {
                room: "r".into(),
                id: id.into(),
                content_type: "text/plain; charset=utf-8".into(),
                width: None,
                height: None,
            };
            svc.file_commit(commit).await.unwrap();
        }
    }

    /// A committed 256 x 256 PNG of `by` in `room` (its thumbnail queued).
    async fn image(svc: &Service, room: &str, id: &str, by: &str) {
        let img = image::RgbImage::from_fn(256, 256, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let begin = FileBeginRequest {
            room: room.into(),
            id: id.into(),
            actor: by.into(),
            name: format!("{id}.png"),
            size: png.len() as u64,
        };
        svc.file_begin(begin).await.unwrap();
        let store = &svc.files().unwrap().files.store;
        store
            .put(&store.object(room, id), Bytes::from(png), "image/png")
            .await
            .unwrap();
        let commit = FileCommitRequest {
            room: room.into(),
            id: id.into(),
            content_type: "image/png".into(),
            width: Some(256),
            height: Some(256),
        };
        svc.file_commit(commit).await.unwrap();
    }

    /// One user's burst of images does not hold back another user's thumbnail: with the
    /// default limits and one decode at a time, bob's image, queued after 40 of ann's, is
    /// made after at most one of hers (the FIFO queue made it wait for all 40). Ann's images
    /// past her share stay `pending` for the sweeper.
    #[tokio::test]
    async fn one_users_images_do_not_hold_back_anothers_thumbnail() {
        let f = fixture().await;
        let svc = &f.svc;
        let room = CreateRoomRequest {
            room: "s".into(),
            kind: RoomKind::Private,
            actor: "bob".into(),
        };
        svc.room_create(room).await.unwrap();
        for n in 0..40 {
            image(svc, "r", &id(n), "ann").await;
        }
        image(svc, "s", &id(100), "bob").await;
        let per_user = FilesConfig::default().thumbnail_queue_per_user;
        assert_eq!(f.jobs.len(), per_user + 1, "ann's share and bob's image");

        let stop = CancellationToken::new();
        let maker = tokio::spawn(thumbnails(svc.clone(), f.jobs.clone(), 1, stop.clone()));
        let state = |room: &'static str, n: u8| async move {
            svc.model()
                .file(room, &id(n))
                .await
                .unwrap()
                .unwrap()
                .thumbnail
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if state("s", 100).await != Thumbnail::Pending {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "bob's thumbnail never came"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(state("s", 100).await, Thumbnail::Ready);
        let mut ann_made = 0;
        for n in 0..40 {
            ann_made += usize::from(state("r", n).await != Thumbnail::Pending);
        }
        assert!(
            ann_made <= 2,
            "{ann_made} of ann's thumbnails were made before bob's"
        );

        // The rest of ann's share is made; what did not fit waits for the sweeper.
        while !f.jobs.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "ann's share never drained"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        maker.await.unwrap();
        let mut left = 0;
        for n in 0..40 {
            left += usize::from(state("r", n).await == Thumbnail::Pending);
        }
        assert_eq!(left, 40 - per_user);
    }

    /// A thumbnail whose image the store cannot read for a reason other than "not found"
    /// (here the object is a symlink loop, which the folder store reports as a read error)
    /// stays `pending` for the sweeper to queue again: storage trouble is not the image's
    /// fault, and `failed` would be for good.
    #[tokio::test]
    async fn a_store_read_error_leaves_the_thumbnail_pending() {
        let f = fixture().await;
        let svc = &f.svc;
        image(svc, "r", &id(1), "ann").await;
        let object = f.files_dir.join("rooms").join("r").join(id(1));
        assert!(object.is_file(), "{} is not the object", object.display());
        std::fs::remove_file(&object).unwrap();
        std::os::unix::fs::symlink(&object, &object).unwrap();

        svc.make_thumbnail("r", &id(1)).await;
        let record = svc.model().file("r", &id(1)).await.unwrap().unwrap();
        assert_eq!(record.thumbnail, Thumbnail::Pending);
    }

    fn id(n: u8) -> String {
        format!("f{:032x}", n)
    }

    /// A detached file goes at the next pass, but not while a message stored after the
    /// detach carries it (one whose attach was checked in the instant before the delete was
    /// stored: an e2ee room's commit may be read from it when the room's group record
    /// catches up); it stays unreadable, and goes once nothing carries it.
    #[tokio::test]
    async fn a_detached_file_a_later_message_carries_is_kept_until_nothing_does() {
        let f = fixture().await;
        let svc = &f.svc;
        let all = |_: &str| true;
        file(svc, &id(1), false).await; // detached, nothing carries it
        file(svc, &id(2), false).await; // detached, a later message carries it
        let t = now_ms();
        let message = StoredMessage {
            id: "m".into(),
            from: "ann".into(),
            ts: t,
            ..Default::default()
        };
        let mut batch = WriteBatch::new();
        Model::put_message(&mut batch, "r", 7, &message);
        Model::put_file_detached(&mut batch, "r", &id(1));
        Model::put_file_detached(&mut batch, "r", &id(2));
        Model::put_file_ref(&mut batch, "r", &id(2), 7);
        svc.model().write(batch).await.unwrap();
        assert_eq!(svc.sweep_files(&all, t).await.unwrap(), 1);
        assert!(!exists(svc, 1).await && exists(svc, 2).await);
        assert!(svc.model().live_file("r", &id(2)).await.unwrap().is_none());
        let mut batch = WriteBatch::new();
        Model::delete_file_ref(&mut batch, "r", &id(2), 7);
        svc.model().write(batch).await.unwrap();
        assert_eq!(svc.sweep_files(&all, t).await.unwrap(), 1);
        assert!(!exists(svc, 2).await);
    }

    /// A file whose record cannot be read is skipped: the files after it are swept all the
    /// same (before, every pass failed at it, and nothing after it was ever deleted).
    #[tokio::test]
    async fn a_file_the_sweeper_cannot_read_holds_up_no_other_file() {
        let f = fixture().await;
        let svc = &f.svc;
        let all = |_: &str| true;
        file(svc, &id(1), false).await;
        file(svc, &id(2), false).await;
        let mut batch = WriteBatch::new();
        batch.put(keys::file("r", &id(1)), b"junk".to_vec());
        svc.model().write(batch).await.unwrap();
        let later = now_ms() + 25 * HOUR_MS;
        assert_eq!(svc.sweep_files(&all, later).await.unwrap(), 1);
        assert!(!exists(svc, 2).await, "the file after it was swept");
    }

    async fn exists(svc: &Service, n: u8) -> bool {
        svc.model().file("r", &id(n)).await.unwrap().is_some()
    }

    /// Each rule of the sweeper, at chosen clock times: abandoned uploads, unattached files,
    /// files whose last carrying message retention trimmed, and rooms that are gone; kept:
    /// young uploads, young unattached files, files a stored message carries.
    #[tokio::test]
    async fn the_sweeper_deletes_exactly_what_nothing_needs() {
        let f = fixture().await;
        let svc = &f.svc;
        let all = |_: &str| true;
        file(svc, &id(1), true).await; // an upload that never finished
        file(svc, &id(2), false).await; // never attached
        file(svc, &id(3), false).await; // attached to a message that is kept
        file(svc, &id(4), false).await; // attached to a message retention deleted
        let t = now_ms();
        let mut batch = WriteBatch::new();
        let message = StoredMessage {
            prev: 0,
            n: 1,
            id: "m".into(),
            from: "ann".into(),
            ts: t,
            body: String::new(),
            attachments: Vec::new(),
            mentions: Default::default(),
            ..Default::default()
        };
        Model::put_message(&mut batch, "r", 10, &message);
        Model::put_file_ref(&mut batch, "r", &id(3), 10);
        Model::put_file_ref(&mut batch, "r", &id(4), 5);
        svc.model().write(batch).await.unwrap();
        // Four files of 5 bytes, each counted as the least a file costs.
        let four = 4 * crate::service::files::MIN_FILE_CHARGE;
        assert_eq!(
            svc.model().file_bytes("r", "ann").await.unwrap(),
            (four, four)
        );

        // Young: only the file whose message was trimmed goes.
        assert_eq!(svc.sweep_files(&all, t).await.unwrap(), 1);
        assert!(!exists(svc, 4).await);
        // A rooms-not-ours pass touches nothing.
        assert_eq!(
            svc.sweep_files(&|_: &str| false, t + 48 * HOUR_MS)
                .await
                .unwrap(),
            0
        );
        // After the upload timeout: the abandoned upload.
        assert_eq!(svc.sweep_files(&all, t + 2 * HOUR_MS).await.unwrap(), 1);
        assert!(!exists(svc, 1).await);
        // After the grace: the file nothing carries; the carried one stays.
        assert_eq!(svc.sweep_files(&all, t + 25 * HOUR_MS).await.unwrap(), 1);
        assert!(!exists(svc, 2).await && exists(svc, 3).await);
        assert_eq!(svc.sweep_files(&all, t + 1000 * HOUR_MS).await.unwrap(), 0);
        // The room is gone: so is its last file.
        let mut batch = WriteBatch::new();
        batch.delete(keys::room("r"));
        svc.model().write(batch).await.unwrap();
        assert_eq!(svc.sweep_files(&all, t).await.unwrap(), 1);
        assert!(!exists(svc, 3).await);

        // Every byte is given back, every object deleted, every reference gone.
        assert_eq!(svc.model().file_bytes("r", "ann").await.unwrap(), (0, 0));
        let left = std::fs::read_dir(&f.files_dir).unwrap().count();
        assert_eq!(left, 0, "objects left in {}", f.files_dir.display());
        assert_eq!(svc.model().last_file_ref("r", &id(3)).await.unwrap(), None);
    }
}
