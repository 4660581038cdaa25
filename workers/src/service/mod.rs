//! The worker's request-reply services (`protocol::service`): accounts and profiles, rooms,
//! membership, member lists, topics and moderation, history and cursors, shared files, push targets and
//! settings, the key-package directory of e2ee rooms and their epochs. [`Service`] holds the rules, decided here once for every gateway, and is
//! callable in-process; `dispatch` serves it over NATS.
//!
//! Every failure a client sees is an [`ApiError`] with a stable code; a store or hashing
//! error is logged where it happens and answered as `internal`.

mod accounts;
mod admin;
mod auth;
mod blocks;
mod budget;
mod dispatch;
mod dms;
mod e2ee;
mod edits;
pub(crate) mod files;
mod fresh;
mod groups;
mod history;
mod invitations;
mod locks;
mod members;
mod moderation;
mod password;
mod profile;
mod push;
mod roominfo;
mod rooms;
mod search;
mod threads;
mod trim;

use std::sync::{Arc, OnceLock};

use chatmesh_protocol::service::{MemberEvent, Role, UserEvent};
use chatmesh_protocol::subjects::{member_subject, user_subject};
use chatmesh_protocol::{validate_name, ApiError};
use tracing::error;

use crate::cache::Caches;
use crate::config::WorkerConfig;
use crate::error::WorkerError;
use crate::events::Events;
use crate::model::{Model, RoomMeta};
use crate::store::StoreError;

pub(crate) use accounts::Primary;
pub(crate) use dispatch::serve_partition;
pub use files::Files;
pub(crate) use files::FilesHandle;
pub use fresh::StreamTail;
use locks::KeyLocks;
use password::{PasswordError, Passwords};
pub use push::PushRules;
pub(crate) use push::{origin, subscription_keys};

/// Lock kinds of [`KeyLocks`].
const LOCK_USER: u8 = b'u';
/// Accounts (and known devices) whose wrong passwords one worker keeps count of (the least
/// used are forgotten).
const LOGIN_ACCOUNTS_COUNTED: u64 = 100_000;
/// Wrong passwords one known device may send per hour (and at once) over every gateway
/// together: each gateway's own lockout of the device would let N gateways take N times
/// its free failures.
pub const DEVICE_FAILURES_PER_HOUR: u32 = 10;
const LOCK_ROOM: u8 = b'r';
const LOCK_CURSOR: u8 = b'c';
const LOCK_FILES: u8 = b'f';

/// The service operations of one worker. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    model: Model,
    caches: Arc<Caches>,
    locks: KeyLocks,
    passwords: Passwords,
    /// Wrong passwords per account from every gateway ([`WorkerConfig::login_account_burst`]).
    login_failures: chatmesh_coherent::Buckets<Arc<str>>,
    /// Wrong passwords per known device (account and device id) from every gateway.
    device_failures: chatmesh_coherent::Buckets<Arc<str>>,
    events: Option<Events>,
    /// Set when serving over NATS: history then waits for the store to catch up.
    tail: OnceLock<StreamTail>,
    /// Set when `[files]` is enabled (`crate::files::start`).
    files: OnceLock<FilesHandle>,
    /// Set when push notifications are enabled (`crate::push::start`).
    push: OnceLock<PushRules>,
    /// Set on a region's own workers: accounts are asked of the primary's (`accounts`).
    accounts: OnceLock<Primary>,
    /// Set when search is enabled (`[worker.search]`).
    search: OnceLock<crate::search::Indexes>,
    has_targets: push::HasTargets,
    anyone: push::Anyone,
    rooms_list_max: usize,
    rooms_list_public_max: usize,
    rooms_list_public_per_owner: usize,
    max_rooms_per_user: u64,
    max_bans_per_room: u64,
    history_page_max_bytes: usize,
    /// `[admin]` and the audit log's key source.
    admin: admin::AdminState,
    /// What `room_trim` purged last, per room.
    trimmed: trim::Trimmed,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        error!(error = %chatmesh_protocol::error::Chain(&e), "service request failed in the store");
        ApiError::internal()
    }
}

impl From<PasswordError> for ApiError {
    fn from(e: PasswordError) -> Self {
        if matches!(e, PasswordError::Expired) {
            // Its caller no longer waits; said for whoever reads the reply all the same.
            return ApiError::unavailable("the password check waited too long; retry");
        }
        error!(error = %chatmesh_protocol::error::Chain(&e), "service request failed hashing a password");
        ApiError::internal()
    }
}

impl Service {
    /// A service over `model` and `caches`. Membership events are published on `events`
    /// (none in tests that run without NATS).
    pub fn new(
        model: Model,
        caches: Arc<Caches>,
        cfg: &WorkerConfig,
        events: Option<Events>,
    ) -> Result<Self, WorkerError> {
        let passwords = Passwords::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.password_threads,
            cfg.password_queue,
        )
        .map_err(|e| WorkerError::Config(vec![format!("worker.argon2_*: {e}")]))?;
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                caches,
                // A quarter of the service slots for one key's waiting requests.
                locks: KeyLocks::new(cfg.service_concurrency / 4),
                passwords,
                login_failures: chatmesh_coherent::Buckets::new(
                    std::time::Duration::from_secs(60),
                    cfg.login_account_failures_per_minute,
                    cfg.login_account_burst,
                    LOGIN_ACCOUNTS_COUNTED,
                ),
                device_failures: chatmesh_coherent::Buckets::new(
                    std::time::Duration::from_secs(3600),
                    DEVICE_FAILURES_PER_HOUR,
                    DEVICE_FAILURES_PER_HOUR,
                    LOGIN_ACCOUNTS_COUNTED,
                ),
                events,
                tail: OnceLock::new(),
                trimmed: trim::Trimmed::default(),
                files: OnceLock::new(),
                push: OnceLock::new(),
                search: OnceLock::new(),
                accounts: OnceLock::new(),
                has_targets: push::has_targets_cache(),
                anyone: push::Anyone::default(),
                rooms_list_max: cfg.rooms_list_max,
                rooms_list_public_max: cfg.rooms_list_public_max,
                rooms_list_public_per_owner: cfg.rooms_list_public_per_owner,
                max_rooms_per_user: cfg.max_rooms_per_user,
                max_bans_per_room: cfg.max_bans_per_room,
                history_page_max_bytes: cfg.history_page_max_bytes,
                admin: admin::AdminState::default(),
            }),
        })
    }

    /// Makes history consistent with the stream (see `fresh.rs`): a page includes every
    /// message acked before it was asked for. Without it (in-process tests), history is
    /// what the store holds. Set once; later calls are ignored.
    pub fn follow_stream(&self, tail: StreamTail) {
        let _ = self.inner.tail.set(tail);
    }

    /// Enables the `search` operation (once; later calls are ignored).
    pub(crate) fn enable_search(&self, indexes: crate::search::Indexes) {
        let _ = self.inner.search.set(indexes);
    }

    /// Enables the file operations (once; later calls are ignored).
    pub(crate) fn enable_files(&self, handle: FilesHandle) {
        let _ = self.inner.files.set(handle);
    }

    /// Object storage and its rules, or `unavailable` when files are not enabled here.
    pub(crate) fn files(&self) -> Result<&FilesHandle, ApiError> {
        self.inner
            .files
            .get()
            .ok_or_else(|| ApiError::unavailable("file sharing is not enabled"))
    }

    /// Queues the thumbnail of a file; when the queue is full the sweeper queues it later.
    pub(crate) fn queue_thumbnail(&self, room: &str, id: &str, uploader: &str) {
        let Ok(handle) = self.files() else { return };
        let job = chatmesh_files::queue::Job {
            room: room.to_owned(),
            id: id.to_owned(),
        };
        if let Err(refused) = handle.jobs.push(uploader, job) {
            metrics::counter!("chatmesh_file_thumbnails_total", "outcome" => refused.label())
                .increment(1);
        }
    }

    /// The lock under which a room's file records and byte counts change.
    pub(crate) async fn lock_files(&self, room: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.locks.lock_unbounded(LOCK_FILES, room, "").await
    }

    /// A place for one password request (`register`, `login`), or `None` when the hashing
    /// queue is full (see `password.rs`).
    pub(crate) fn password_slot(&self) -> Option<password::Place> {
        self.inner.passwords.admit()
    }

    /// [`Service::password_slot`] for the login of a known device of `user` (the places
    /// kept for known devices too, one per account).
    pub(crate) fn known_device_slot(&self, user: &str) -> Option<password::Place> {
        self.inner.passwords.admit_known(user)
    }

    pub(crate) fn model(&self) -> &Model {
        &self.inner.model
    }

    fn caches(&self) -> &Caches {
        &self.inner.caches
    }

    /// The room's record, or `not_found`.
    async fn room_meta(&self, room: &str) -> Result<Arc<RoomMeta>, ApiError> {
        self.caches()
            .room(self.model(), room)
            .await?
            .ok_or_else(|| ApiError::not_found("no such room"))
    }

    /// `not_found` unless the store (not the cache) holds `room`'s record. Call under the
    /// room's lock before writing a membership: a deletion removes the record under the same
    /// lock first, so no member is written into a room being deleted, whatever a cache
    /// loaded before it still says.
    async fn room_still_there(&self, room: &str) -> Result<(), ApiError> {
        match self.model().room(room).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found("no such room")),
        }
    }

    /// Waits (bounded, [`StreamTail`]) until the store holds every message of `room` the
    /// stream held when asked, so a message, edit or delete acked a moment ago counts.
    async fn caught_up_now(&self, room: &str) -> Result<(), ApiError> {
        if let Some(tail) = self.inner.tail.get() {
            let stats = self.caches().stats(self.model(), room).await?;
            tail.caught_up(room, None, stats.last_seq).await?;
        }
        Ok(())
    }

    /// After a membership change is stored: drop cached access here, tell the gateways.
    async fn member_changed(&self, room: &str, user: &str, role: Option<Role>) {
        self.access_changed(room, user, role, false).await;
    }

    /// After a change of what `user` may do in `room` is stored: drop cached access here,
    /// tell the gateways (`refresh`: only access changed, not the membership).
    async fn access_changed(&self, room: &str, user: &str, role: Option<Role>, refresh: bool) {
        self.caches().role_changed(room, user).await;
        let Some(events) = &self.inner.events else {
            return;
        };
        let event = MemberEvent {
            room: room.to_owned(),
            user: user.to_owned(),
            role,
            refresh,
        };
        let body = serde_json::to_vec(&event).unwrap_or_default();
        events.publish(member_subject(room), body.into()).await;
    }
}

impl Service {
    /// After a user's token generation moved: tell the gateways (they cache it).
    async fn user_changed(&self, user: &str, gen: u64) {
        self.user_event(user, gen, false).await;
    }

    /// Publishes a user's token generation and whether it is disabled on `chat.user.<user>`.
    async fn user_event(&self, user: &str, gen: u64, disabled: bool) {
        let Some(events) = &self.inner.events else {
            return;
        };
        let event = UserEvent {
            user: user.to_owned(),
            gen,
            disabled,
        };
        let body = serde_json::to_vec(&event).unwrap_or_default();
        events.publish(user_subject(user), body.into()).await;
    }
}

/// Checks a room id or user name, as `bad_request`.
fn valid(what: &'static str, name: &str) -> Result<(), ApiError> {
    validate_name(what, name).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Cuts rows read with `limit + 1` to one page: the first `limit` of them, and whether more
/// follow (the one read past the page).
fn page<T>(mut rows: Vec<T>, limit: usize) -> (Vec<T>, bool) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn a_page_keeps_the_limit_and_says_whether_more_follow() {
        assert_eq!(page(vec![1, 2, 3], 2), (vec![1, 2], true));
        assert_eq!(page(vec![1, 2], 2), (vec![1, 2], false));
        assert_eq!(page(Vec::<u8>::new(), 2), (vec![], false));
    }
}
