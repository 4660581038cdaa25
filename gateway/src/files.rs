//! What a gateway holds for shared files (`[files]`): the object store, the rules, and the
//! bound on uploads streaming at once. The endpoints are in `http/files.rs`.
//!
//! **Upload slots.** An upload holds one of [`MAX_UPLOADS`] slots while its body streams.
//! One user holds at most [`MAX_UPLOADS_PER_USER`] of them and one client address (over all
//! its accounts) at most `[files] uploads_per_address`, and an upload must arrive at
//! [`MIN_UPLOAD_BYTES_PER_SEC`] or better on the whole (beside the idle timeout between
//! two chunks): a client trickling bytes just under the idle timeout would otherwise keep
//! every slot for hours, and every other upload on the gateway would be refused.
//!
//! **Giving way.** Uploads at the minimum rate are still slow: 16 of them (a few addresses'
//! worth) would hold the gateway's slots for the better part of two hours. So when every
//! slot is taken, a new upload cuts the slowest of those that are behind
//! [`PREEMPT_BELOW_BYTES_PER_SEC`], judged on the time the gateway has spent waiting for
//! their bytes past the first [`PREEMPT_HEAD_START`] of it (not the worker's reservation
//! before the body is read, nor the object store's writes: an honest upload is not judged on
//! the server's own delays). A young upload is judged by its bytes too, so uploads started
//! over and over do not hold the slots by being too young to judge. The one cut is answered
//! 503 and may come back, and the new one takes its slot. Uploads faster than that keep theirs, and the new one is refused as before. One
//! user, and one client address, cuts at most one upload per [`CUT_EVERY`], so nobody can
//! cut others' uploads over and over by starting new ones, and one client address starts at
//! most `[files] upload_starts_per_minute` uploads (after a burst of `upload_start_burst`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_files::{FileStore, FilesConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::counts::{Counted, Counts};
use chatmesh_coherent::Buckets;

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
    /// Every upload holding a slot, by a number of its own: what [`GatewayFiles::give_way`]
    /// chooses from.
    active: Arc<Mutex<Active>>,
    /// When each user (`u:`) and client address (`a:`) last cut an upload.
    cutters: Mutex<HashMap<String, Instant>>,
    /// Uploads started per client address (`upload_starts_per_minute`).
    starts: Buckets<IpAddr>,
}

#[derive(Debug, Default)]
struct Active {
    next: u64,
    uploads: HashMap<u64, Arc<Progress>>,
}

/// One upload in progress as the slots see it. Times are in ms after `base`, kept in
/// atomics: the upload's task writes them, a new upload looking for one to cut reads them.
#[derive(Debug)]
struct Progress {
    /// When the slot was taken.
    base: Instant,
    received: AtomicU64,
    /// Time spent waiting for the client's bytes in waits that ended, ms.
    waited: AtomicU64,
    /// When the wait for the client's bytes going on began, ms after `base` plus one; 0 when
    /// the gateway is not waiting for them (the reservation, the store's writes).
    waiting_since: AtomicU64,
    /// Cancelled when the upload must give its slot to a new one.
    cut: CancellationToken,
}

impl Progress {
    fn at(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.base).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// Time spent waiting for the client's bytes up to `now`, the wait going on included.
    fn waited(&self, now: Instant) -> Duration {
        let done = self.waited.load(Ordering::Relaxed);
        let current = match self.waiting_since.load(Ordering::Relaxed) {
            0 => 0,
            since => self.at(now).saturating_sub(since - 1),
        };
        Duration::from_millis(done.saturating_add(current))
    }

    /// Bytes a second over the time spent waiting for them, at `now`.
    fn rate(&self, now: Instant) -> u64 {
        let ms = self.waited(now).as_millis().max(1);
        let bytes = u128::from(self.received.load(Ordering::Relaxed));
        u64::try_from(bytes * 1_000 / ms).unwrap_or(u64::MAX)
    }

    /// Has it received fewer bytes than [`PREEMPT_BELOW_BYTES_PER_SEC`] would have brought
    /// in the time spent waiting for them past the first [`PREEMPT_HEAD_START`]?
    fn behind(&self, now: Instant) -> bool {
        let judged = self.waited(now).saturating_sub(PREEMPT_HEAD_START);
        let owed = u128::from(PREEMPT_BELOW_BYTES_PER_SEC) * judged.as_millis() / 1_000;
        !judged.is_zero() && u128::from(self.received.load(Ordering::Relaxed)) < owed
    }
}

/// Uploads one gateway streams at once; more are refused with 429 (each holds up to a few
/// multipart parts in memory).
pub const MAX_UPLOADS: usize = 16;
/// Uploads one user streams at once on one gateway; more are refused with 429.
pub const MAX_UPLOADS_PER_USER: usize = 2;
/// The slowest an upload may arrive on the whole (128 kbit/s): an upload of `size` bytes
/// must be received within the idle timeout plus `size` at this rate.
pub use chatmesh_files::MIN_UPLOAD_BYTES_PER_SEC;
/// An upload slower than this on the whole (2 Mbit/s) gives its slot to a new upload when
/// every slot is taken.
pub const PREEMPT_BELOW_BYTES_PER_SEC: u64 = 256 * 1024;
/// The first of the time an upload's bytes are waited for that it is not judged on (the
/// client's wait for `100 Continue`, round trips, TCP's slow start): past it, it may be cut
/// once it has fewer bytes than [`PREEMPT_BELOW_BYTES_PER_SEC`] would have brought since.
pub const PREEMPT_HEAD_START: Duration = Duration::from_secs(2);
/// How long a new upload waits for the slot of the upload it cut (which aborts its
/// multipart upload first).
const PREEMPT_WAIT: Duration = Duration::from_secs(2);
/// One user, or one client address, cuts at most one upload this often.
pub const CUT_EVERY: Duration = Duration::from_secs(30);
/// Cutters remembered at most (older ones are forgotten first), and client addresses
/// whose upload starts are counted.
const MAX_CUTTERS: usize = 100_000;

/// Why no upload slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// Every slot of the gateway is taken.
    Gateway,
    /// The user has [`MAX_UPLOADS_PER_USER`] uploads in progress.
    User,
    /// The client address has `uploads_per_address` uploads in progress.
    Address,
    /// The client address started `upload_starts_per_minute` uploads: the wait for the next.
    Starts(Duration),
}

/// An upload slot, given back on drop.
#[derive(Debug)]
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
    _user: Counted<String>,
    _address: Option<Counted<IpAddr>>,
    id: u64,
    progress: Arc<Progress>,
    active: Arc<Mutex<Active>>,
}

impl UploadSlot {
    /// The upload has received `total` bytes so far.
    pub fn received(&self, total: u64) {
        self.progress.received.store(total, Ordering::Relaxed);
    }

    /// The gateway waits for the client's next bytes from now (until [`UploadSlot::idle`]):
    /// only such time counts when the upload is judged.
    pub fn waiting(&self) {
        let at = self.progress.at(Instant::now());
        self.progress
            .waiting_since
            .store(at.saturating_add(1), Ordering::Relaxed);
    }

    /// The wait for the client's bytes is over (they came, or the receive ended).
    pub fn idle(&self) {
        let p = &self.progress;
        let since = p.waiting_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            let spent = p.at(Instant::now()).saturating_sub(since - 1);
            p.waited.fetch_add(spent, Ordering::Relaxed);
        }
    }

    /// Bytes a second over the time spent waiting for them so far.
    pub fn rate(&self) -> u64 {
        self.progress.rate(Instant::now())
    }

    /// Resolves when the upload must give its slot to a new one.
    pub async fn cut(&self) {
        self.progress.cut.cancelled().await;
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut active = match self.active.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        active.uploads.remove(&self.id);
    }
}

impl GatewayFiles {
    pub fn new(store: FileStore, cfg: FilesConfig) -> Self {
        let starts = Buckets::new(
            Duration::from_secs(60),
            cfg.upload_starts_per_minute,
            cfg.upload_start_burst,
            MAX_CUTTERS as u64,
        );
        Self {
            store,
            cfg,
            starts,
            uploads: Arc::new(Semaphore::new(MAX_UPLOADS)),
            per_user: Counts::default(),
            per_address: Counts::default(),
            active: Arc::default(),
            cutters: Mutex::default(),
        }
    }

    /// A slot for an upload by `user` from client address `ip` (`None`: a trusted proxy
    /// that named no client, not counted), or why not. With every slot taken, the slowest
    /// upload may give way ([`GatewayFiles::give_way`]).
    pub async fn upload_slot(&self, user: &str, ip: Option<IpAddr>) -> Result<UploadSlot, NoSlot> {
        let counted = self
            .per_user
            .take(&user.to_owned(), MAX_UPLOADS_PER_USER)
            .ok_or(NoSlot::User)?;
        let key = ip.map(crate::throttle::client_key);
        let address = match key {
            Some(key) => Some(
                self.per_address
                    .take(&key, self.cfg.uploads_per_address)
                    .ok_or(NoSlot::Address)?,
            ),
            None => None,
        };
        if let Some(key) = key {
            self.starts.check(key, true).await.map_err(NoSlot::Starts)?;
        }
        let permit = match self.permit(user, ip).await {
            Ok(permit) => permit,
            Err(no) => {
                // Not started: it does not count against the address's starts.
                if let Some(key) = key {
                    self.starts.refund(&key).await;
                }
                return Err(no);
            }
        };
        let progress = Arc::new(Progress {
            base: Instant::now(),
            received: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            waiting_since: AtomicU64::new(0),
            cut: CancellationToken::new(),
        });
        let id = {
            let mut active = self.active.lock().map_err(|_| NoSlot::Gateway)?;
            active.next += 1;
            let id = active.next;
            active.uploads.insert(id, progress.clone());
            id
        };
        Ok(UploadSlot {
            _permit: permit,
            _user: counted,
            _address: address,
            id,
            progress,
            active: self.active.clone(),
        })
    }

    /// A free slot, or the slot of an upload cut for this one.
    async fn permit(&self, user: &str, ip: Option<IpAddr>) -> Result<OwnedSemaphorePermit, NoSlot> {
        match self.uploads.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(_) if self.cut_for(user, ip, Instant::now()) => {
                let freed = self.uploads.clone().acquire_owned();
                tokio::time::timeout(PREEMPT_WAIT, freed)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or(NoSlot::Gateway)
            }
            Err(_) => Err(NoSlot::Gateway),
        }
    }

    /// Cuts an upload for a new one of `user` from `ip` ([`GatewayFiles::give_way`]),
    /// unless either cut one within [`CUT_EVERY`]: true if one was cut (their cut).
    fn cut_for(&self, user: &str, ip: Option<IpAddr>, now: Instant) -> bool {
        let Ok(mut cutters) = self.cutters.lock() else {
            return false;
        };
        let mut keys = vec![format!("u:{user}")];
        if let Some(ip) = ip {
            keys.push(format!("a:{}", crate::throttle::client_key(ip)));
        }
        let recent = |at: &Instant| now.saturating_duration_since(*at) < CUT_EVERY;
        if keys.iter().any(|k| cutters.get(k).is_some_and(recent)) || !self.give_way(now) {
            return false;
        }
        if cutters.len() >= MAX_CUTTERS {
            cutters.retain(|_, at| recent(at));
        }
        for k in keys {
            cutters.insert(k, now);
        }
        true
    }

    /// Cuts the upload that has arrived the slowest on the whole among those
    /// [`Progress::behind`]: true if one was cut.
    fn give_way(&self, now: Instant) -> bool {
        let Ok(active) = self.active.lock() else {
            return false;
        };
        let slowest = active
            .uploads
            .values()
            .filter(|p| !p.cut.is_cancelled() && p.behind(now))
            .min_by_key(|p| p.rate(now));
        let Some(p) = slowest else {
            return false;
        };
        p.cut.cancel();
        metrics::counter!("chatmesh_file_uploads_cut_total").increment(1);
        true
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

    fn files() -> GatewayFiles {
        let cfg = FilesConfig {
            url: Some("memory:///".into()),
            ..FilesConfig::default()
        };
        GatewayFiles::new(FileStore::open(&cfg).unwrap(), cfg)
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    /// Every slot of the gateway, one per user (`u0`, `u1`, …) and address (from `ip(first)`).
    async fn every_slot(f: &GatewayFiles, first: u8) -> Vec<UploadSlot> {
        let mut slots = Vec::new();
        for n in 0..MAX_UPLOADS {
            let address = ip(first + u8::try_from(n).unwrap());
            slots.push(f.upload_slot(&format!("u{n}"), address).await.unwrap());
        }
        slots
    }

    /// Drops the slots that were cut (as their uploads end), keeping the others.
    fn drop_cut(slots: &mut Vec<UploadSlot>) -> usize {
        let before = slots.len();
        slots.retain(|s| !s.progress.cut.is_cancelled());
        before - slots.len()
    }

    /// With every slot taken by slow uploads, a new upload cuts the slowest; the same user
    /// (or address) cannot cut another for `CUT_EVERY`, another one can; an upload still in
    /// its head start, or a fast one, is never cut.
    #[tokio::test(start_paused = true)]
    async fn a_new_upload_cuts_the_slowest_once_per_cutter() {
        let f = files();
        let mut slots = Vec::new();
        for n in 0..MAX_UPLOADS {
            let user = format!("u{}", n / MAX_UPLOADS_PER_USER);
            let address = ip(u8::try_from(n / 4).unwrap());
            let slot = f.upload_slot(&user, address).await.unwrap();
            slot.waiting();
            slots.push(slot);
        }
        // All within their head start: nothing is cut.
        assert_eq!(
            f.upload_slot("new", ip(100)).await.unwrap_err(),
            NoSlot::Gateway
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        // Every one slow but the first, which is fast and must never be the one cut.
        slots[0].received(100 * 1024 * 1024);
        for (n, slot) in slots.iter().enumerate().skip(1) {
            slot.received(20 * 1024 * u64::try_from(n).unwrap());
        }
        let waiting = f.upload_slot("new", ip(100));
        tokio::pin!(waiting);
        assert!(
            futures::poll!(&mut waiting).is_pending(),
            "waits for the cut one's slot"
        );
        assert_eq!(drop_cut(&mut slots), 1);
        assert!(!slots
            .iter()
            .any(|s| s.progress.received.load(Ordering::Relaxed) == 20 * 1024));
        slots.push(waiting.await.unwrap());
        // The same user from another address, and another user from the same address: no.
        assert_eq!(
            f.upload_slot("new", ip(101)).await.unwrap_err(),
            NoSlot::Gateway
        );
        assert_eq!(
            f.upload_slot("other", ip(100)).await.unwrap_err(),
            NoSlot::Gateway
        );
        assert_eq!(drop_cut(&mut slots), 0);
        // Another user from another address may; so may the first after CUT_EVERY.
        let waiting = f.upload_slot("other", ip(102));
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        assert_eq!(drop_cut(&mut slots), 1);
        slots.push(waiting.await.unwrap());
        tokio::time::advance(CUT_EVERY).await;
        for slot in &slots {
            slot.received(100 * 1024 * 1024);
        }
        assert_eq!(
            f.upload_slot("new", ip(100)).await.unwrap_err(),
            NoSlot::Gateway,
            "all fast now"
        );
    }

    /// An upload too young to have a rate is judged by its bytes once past its head start:
    /// uploads started over and over cannot keep the slots by being young, and one on track
    /// keeps its slot.
    #[tokio::test(start_paused = true)]
    async fn a_young_upload_behind_gives_way_and_those_on_track_do_not() {
        let f = files();
        let mut slots = every_slot(&f, 0).await;
        for slot in &slots {
            slot.waiting();
        }
        tokio::time::advance(PREEMPT_HEAD_START).await;
        assert_eq!(
            f.upload_slot("new", ip(100)).await.unwrap_err(),
            NoSlot::Gateway,
            "nothing is judged within the head start"
        );
        // Half a second past it, 128 KiB are owed: one upload has less.
        tokio::time::advance(Duration::from_millis(500)).await;
        for (n, slot) in slots.iter().enumerate() {
            slot.received(if n == 7 { 100 * 1024 } else { 128 * 1024 });
        }
        let waiting = f.upload_slot("new", ip(101));
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        assert_eq!(drop_cut(&mut slots), 1);
        assert!(slots
            .iter()
            .all(|s| s.progress.received.load(Ordering::Relaxed) == 128 * 1024));
        slots.push(waiting.await.unwrap());
        // Everyone on track: the next new upload is refused, nothing is cut.
        assert_eq!(
            f.upload_slot("newer", ip(102)).await.unwrap_err(),
            NoSlot::Gateway
        );
        assert_eq!(drop_cut(&mut slots), 0);
    }

    /// One client address starts `upload_starts_per_minute` uploads after its burst; a
    /// start refused for a full gateway does not count; other addresses, and a trusted proxy
    /// that named no client, are not concerned.
    #[tokio::test(start_paused = true)]
    async fn one_address_starts_uploads_at_its_rate() {
        let cfg = FilesConfig {
            url: Some("memory:///".into()),
            upload_starts_per_minute: 6,
            upload_start_burst: 2,
            ..FilesConfig::default()
        };
        let f = GatewayFiles::new(FileStore::open(&cfg).unwrap(), cfg);
        drop(f.upload_slot("ann", ip(1)).await.unwrap());
        drop(f.upload_slot("ann", ip(1)).await.unwrap());
        let Err(NoSlot::Starts(wait)) = f.upload_slot("bob", ip(1)).await else {
            panic!("a third start within the burst");
        };
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        drop(f.upload_slot("bob", ip(2)).await.unwrap());
        drop(f.upload_slot("bob", None).await.unwrap());
        tokio::time::advance(wait).await;
        drop(f.upload_slot("ann", ip(1)).await.unwrap());
        assert!(matches!(
            f.upload_slot("ann", ip(1)).await,
            Err(NoSlot::Starts(_))
        ));
        // A full gateway (nothing behind): refused, and the start is given back.
        tokio::time::advance(Duration::from_secs(20)).await;
        let mut held = every_slot(&f, 10).await;
        for _ in 0..3 {
            assert_eq!(
                f.upload_slot("ann", ip(1)).await.unwrap_err(),
                NoSlot::Gateway
            );
        }
        held.pop();
        drop(f.upload_slot("ann", ip(1)).await.unwrap());
        held.pop();
        drop(f.upload_slot("ann", ip(1)).await.unwrap());
        assert!(matches!(
            f.upload_slot("ann", ip(1)).await,
            Err(NoSlot::Starts(_))
        ));
    }

    /// Only the time spent waiting for the client's bytes is judged: an upload whose body is
    /// not read yet (the worker's reservation) or whose bytes wait on the store is not behind
    /// for that time; once read again, it is judged on what it had plus what comes.
    #[tokio::test(start_paused = true)]
    async fn only_the_wait_for_the_clients_bytes_is_judged() {
        let f = files();
        let mut slots = every_slot(&f, 0).await;
        // Slot 0 is never read; slot 1 is read for 1 s, then waits on the store; the others
        // are read and fast.
        for slot in &slots[1..] {
            slot.waiting();
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        slots[1].received(300 * 1024);
        slots[1].idle();
        for slot in &slots[2..] {
            slot.received(100 * 1024 * 1024);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            f.upload_slot("new", ip(100)).await.unwrap_err(),
            NoSlot::Gateway
        );
        assert_eq!(drop_cut(&mut slots), 0);
        // Read again: 3.5 s of waiting in all, 1.5 s past the head start, owe 384 KiB.
        slots[1].waiting();
        tokio::time::advance(Duration::from_millis(2_500)).await;
        let waiting = f.upload_slot("new", ip(101));
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        assert_eq!(drop_cut(&mut slots), 1);
        assert!(!slots
            .iter()
            .any(|s| s.progress.received.load(Ordering::Relaxed) == 300 * 1024));
        waiting.await.unwrap();
    }
}
