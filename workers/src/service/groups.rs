//! Checked commits of `e2ee` rooms (docs/E2EE.md, "Checked commits"), served by the room's
//! worker: the owner hands the room's group over (`e2ee_group_put`; at creation, epoch 0,
//! or later at the room's epoch while none is on record); from then
//! on `room_epoch` checks a commit for the room's epoch against the group before the gateway
//! publishes it, so a commit no member could have made (junk, another group's, signed by a
//! leaf that is not the sender's) is refused instead of moving the room's epoch on.
//!
//! The record follows the room lazily: the store writer does not touch it. A check finds it
//! at the room's epoch or one behind (every commit the store holds passed a check at its
//! epoch, which brought the record to that epoch), and one behind is caught up by applying
//! the commit that started the room's epoch (`RoomStats::commit`): the state its check led
//! to, kept when it passed (`keep_next`), is adopted, since checking it again could fail on
//! the clock alone. A record that cannot be caught up (damaged, the commit trimmed away) is
//! dropped, logged and counted: the room goes back to unchecked ordering rather than
//! refusing every commit.
//!
//! Welcomes are checked in every `e2ee` room, tracked or not: only the sender of the commit
//! that started a welcome's epoch may send it (`check_welcome`).

use chatmesh_files::FilesError;
use chatmesh_protocol::e2ee::{decode, GroupPutRequest, Mls, RoomGroup};
use chatmesh_protocol::service::{RoomKind, RoomUserRequest};
use chatmesh_protocol::{ApiError, ErrorCode};
use tracing::warn;

use super::{valid, Service};
use crate::groups::{GroupError, Tracked};
use crate::metrics as m;
use crate::model::{Model, RoomStats};
use crate::store::WriteBatch;

/// Lock kind of a room's group record.
const LOCK_GROUP: u8 = b'g';

/// How many messages before the room's latest commit a welcome's commit is looked for.
const MAX_WELCOME_LOOKBACK: usize = 200;

/// Checked next states kept per room at most (see `keep_next`).
const MAX_NEXT_STATES: usize = 8;

/// Largest commit read from a file of the room (as the SDK sends one: 8 MiB).
const MAX_COMMIT_FILE_BYTES: u64 = 8 * 1024 * 1024;

impl Service {
    /// Takes the group of an `e2ee` room from its owner, at the room's epoch, while the
    /// server has none on record (a new room's at epoch 0; an older room's, or one whose
    /// record was dropped, later).
    pub async fn e2ee_group_put(&self, req: GroupPutRequest) -> Result<RoomGroup, ApiError> {
        valid("room", &req.room)?;
        req.body.validate()?;
        let meta = self.room_meta(&req.room).await?;
        if meta.kind != RoomKind::E2ee {
            return Err(ApiError::bad_request("only an e2ee room has a group"));
        }
        if meta.owner.as_deref() != Some(req.user.as_str()) {
            return Err(ApiError::forbidden(
                "only the room's owner hands its group over",
            ));
        }
        let info = decode(&req.body.group_info, "group_info")?;
        let tree = decode(&req.body.ratchet_tree, "ratchet_tree")?;
        let _guard = self.inner.locks.lock(LOCK_GROUP, &req.room, "").await?;
        let stats = self.caches().stats(self.model(), &req.room).await?;
        let (room, user, epoch) = (req.room.clone(), req.user.clone(), stats.epoch);
        let tracked = off_thread(move || Tracked::create(&room, &user, epoch, &info, &tree))
            .await?
            .map_err(refusal)?;
        let state = tracked.save();
        match self.model().mls_group(&req.room).await? {
            // The same group again (a retry) is fine.
            Some(old) if old == state => {}
            Some(_) => return Err(ApiError::conflict("the room's group is on record already")),
            None => {
                let mut batch = WriteBatch::new();
                Model::put_mls_group(&mut batch, &req.room, state);
                self.model().write(batch).await?;
            }
        }
        Ok(view(&req.room, Some(&tracked), stats.epoch))
    }

    /// Whether the room's commits are checked, and the group as the server tracks it
    /// (members of the room only).
    pub async fn e2ee_group_get(&self, req: RoomUserRequest) -> Result<RoomGroup, ApiError> {
        valid("room", &req.room)?;
        if self.room_meta(&req.room).await?.kind != RoomKind::E2ee {
            return Err(ApiError::bad_request("only an e2ee room has a group"));
        }
        if self.model().role(&req.room, &req.user).await?.is_none() {
            return Err(ApiError::forbidden("only members see the room's group"));
        }
        let stats = self.caches().stats(self.model(), &req.room).await?;
        let tracked = self.tracked(&req.room, &stats).await?;
        Ok(view(&req.room, tracked.as_ref(), stats.epoch))
    }

    /// Checks a commit `user` sends for the room's epoch (`stats.epoch`) against the room's
    /// group, when the room has one on record.
    pub(super) async fn check_commit(
        &self,
        room: &str,
        user: &str,
        stats: &RoomStats,
        commit: &Mls,
    ) -> Result<(), ApiError> {
        let Some(tracked) = self.tracked(room, stats).await? else {
            return Ok(());
        };
        if tracked.epoch() > stats.epoch {
            // The room moved on while this request was read.
            return Err(ApiError::conflict(format!(
                "stale epoch: the room is at epoch {}",
                tracked.epoch()
            )));
        }
        // Only a file that can still be attached: a detached one would never be published.
        if let Some(file) = &commit.file {
            if self.model().live_file(room, file).await?.is_none() {
                return Err(ApiError::not_found(format!("no file {file} in this room")));
            }
        }
        let bytes = self.commit_bytes(room, commit).await?;
        let user = user.to_owned();
        let checked = off_thread(move || {
            let hash = tracked.next_key(&bytes);
            let mut next = tracked;
            let checked = next.check(&user, &bytes)?;
            next.apply(checked)?;
            Ok::<_, GroupError>((hash, next.save()))
        })
        .await?;
        match checked {
            Ok((hash, next)) => self.keep_next(room, &hash, next).await,
            Err(e) => {
                let why = match e {
                    GroupError::Malformed { .. } => "malformed",
                    GroupError::Private => "private",
                    _ => "refused",
                };
                metrics::counter!(m::MLS_COMMITS_REFUSED, "why" => why).increment(1);
                Err(refusal(e))
            }
        }
    }

    /// Keeps the state a commit that passed its check leads to, so that the record adopts it
    /// when the commit is stored instead of checking it again then: a check depends on the
    /// clock (an added KeyPackage's lifetime), and one that passed now could fail later,
    /// which would drop the record. At most [`MAX_NEXT_STATES`] per room (racing commits for
    /// one epoch): when they are all taken they are forgotten for the new one, so none can
    /// be kept out by filling them.
    async fn keep_next(&self, room: &str, hash: &[u8; 32], next: Vec<u8>) -> Result<(), ApiError> {
        if self.model().mls_nexts(room, MAX_NEXT_STATES).await? >= MAX_NEXT_STATES {
            // The oldest are those of commits that lost their race (or were never sent):
            // forgetting them costs only a check when the room catches up.
            self.model().delete_mls_nexts(room).await?;
        }
        let mut batch = WriteBatch::new();
        Model::put_mls_next(&mut batch, room, hash, next);
        self.model().write(batch).await?;
        Ok(())
    }

    /// A standalone proposal is refused in a room whose commits are checked: its members'
    /// commits carry their proposals inline. (One queued by the members from a proposal the
    /// server never saw would make their next commit fail the server's check.)
    pub(super) async fn check_proposal(&self, room: &str) -> Result<(), ApiError> {
        if self.model().mls_group(room).await?.is_none() {
            return Ok(());
        }
        metrics::counter!(m::MLS_COMMITS_REFUSED, "why" => "proposal").increment(1);
        Err(ApiError::bad_request(
            "commits in this room carry their proposals inline: a proposal alone is refused",
        ))
    }

    /// A welcome starts its new members in the epoch a commit started, and only that
    /// commit's sender holds the group state to make it: a welcome for `epoch` from anyone
    /// else (a member who built a group of their own under the room's id with a claimed
    /// KeyPackage, say) is refused before it can draw a new member into it. The commit is
    /// the room's latest, or one of the [`MAX_WELCOME_LOOKBACK`] messages before it (a
    /// member may commit again between the commit's ack and its welcome).
    pub(super) async fn check_welcome(
        &self,
        room: &str,
        user: &str,
        stats: &RoomStats,
        epoch: u64,
    ) -> Result<(), ApiError> {
        let from = match (epoch, stats.commit) {
            (0, _) | (_, 0) => None,
            (e, seq) if e == stats.epoch => self.model().message(room, seq).await?.map(|m| m.from),
            (e, seq) => {
                self.model()
                    .commit_starting(room, e, seq, MAX_WELCOME_LOOKBACK)
                    .await?
            }
        };
        let refuse = |why: &'static str| {
            metrics::counter!(m::MLS_WELCOMES_REFUSED, "why" => why).increment(1);
        };
        match from {
            Some(from) if from == user => Ok(()),
            Some(_) => {
                refuse("sender");
                Err(ApiError::forbidden(format!(
                    "a welcome to epoch {epoch} is sent by the member whose commit started it"
                )))
            }
            None => {
                refuse("no_commit");
                Err(ApiError::conflict(format!(
                    "no commit that started epoch {epoch} among the room's recent messages"
                )))
            }
        }
    }

    /// The room's group record, caught up to the room's epoch; `None` when the room's
    /// commits are not checked.
    async fn tracked(&self, room: &str, stats: &RoomStats) -> Result<Option<Tracked>, ApiError> {
        if self.model().mls_group(room).await?.is_none() {
            return Ok(None);
        }
        let _guard = self.inner.locks.lock(LOCK_GROUP, room, "").await?;
        let Some(state) = self.model().mls_group(room).await? else {
            return Ok(None);
        };
        let mut tracked = match Tracked::load(room, &state) {
            Ok(t) => t,
            Err(e) => return self.untrack(room, &e.to_string()).await,
        };
        if tracked.epoch() >= stats.epoch {
            return Ok(Some(tracked));
        }
        if tracked.epoch() + 1 != stats.epoch {
            let why = format!(
                "the record is at epoch {}, the room at {}",
                tracked.epoch(),
                stats.epoch
            );
            return self.untrack(room, &why).await;
        }
        // One behind: apply the commit that started the room's epoch.
        let Some(stored) = self.model().message(room, stats.commit).await? else {
            return self.untrack(room, "the last commit is not stored").await;
        };
        let Some(mls) = &stored.mls else {
            return self
                .untrack(room, "the last commit has no MLS message")
                .await;
        };
        let bytes = match self.commit_bytes(room, mls).await {
            Ok(bytes) => bytes,
            Err(e) if e.code == ErrorCode::NotFound => {
                return self.untrack(room, "the last commit's file is gone").await;
            }
            Err(e) => return Err(e),
        };
        // The state its check led to, if kept; else the commit is checked again.
        let kept = self
            .model()
            .mls_next(room, &tracked.next_key(&bytes))
            .await?;
        let adopted = kept.and_then(|next| Tracked::load(room, &next).ok());
        let tracked = match adopted.filter(|t| t.epoch() == stats.epoch) {
            Some(next) => next,
            None => {
                let (tracked, applied) = off_thread(move || {
                    let applied = tracked
                        .check(&stored.from, &bytes)
                        .and_then(|c| tracked.apply(c));
                    (tracked, applied)
                })
                .await?;
                if let Err(e) = applied {
                    return self.untrack(room, &e.to_string()).await;
                }
                tracked
            }
        };
        let mut batch = WriteBatch::new();
        Model::put_mls_group(&mut batch, room, tracked.save());
        self.model().write(batch).await?;
        self.model().delete_mls_nexts(room).await?;
        Ok(Some(tracked))
    }

    /// Drops a group record that cannot be caught up: the room's commits are no longer
    /// checked.
    async fn untrack(&self, room: &str, why: &str) -> Result<Option<Tracked>, ApiError> {
        warn!(
            room,
            why, "dropping the room's MLS group record: its commits are no longer checked"
        );
        metrics::counter!(m::MLS_GROUPS_UNTRACKED).increment(1);
        let mut batch = WriteBatch::new();
        Model::delete_mls_group(&mut batch, room);
        self.model().write(batch).await?;
        self.model().delete_mls_nexts(room).await?;
        Ok(None)
    }

    /// The MLS message bytes of a commit: inline, or the room's file it names.
    async fn commit_bytes(&self, room: &str, mls: &Mls) -> Result<Vec<u8>, ApiError> {
        let Some(file) = &mls.file else {
            return decode(&mls.data, "mls.data");
        };
        let files = self.files()?;
        let store = &files.files.store;
        let bytes = store
            .read_all(&store.object(room, file), MAX_COMMIT_FILE_BYTES)
            .await
            .map_err(|e| match e {
                FilesError::NotFound => ApiError::not_found(format!("the commit's file {file}")),
                FilesError::TooLarge(max) => {
                    ApiError::new(
                        ErrorCode::TooLarge,
                        format!("the commit's file is larger than {max} bytes"),
                    )
                }
                other => {
                    // Not the sender's fault: the same commit may be sent again later.
                    warn!(room, file, error = %chatmesh_protocol::error::Chain(&other), "reading a commit's file failed");
                    ApiError::unavailable("the commit's file cannot be read now: retry shortly")
                }
            })?;
        Ok(bytes.to_vec())
    }
}

/// Runs MLS work (signatures, tree hashes: milliseconds for a large group) on a blocking
/// thread, off the worker's async tasks.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        warn!(error = %e, "an MLS check did not finish");
        ApiError::internal()
    })
}

fn view(room: &str, tracked: Option<&Tracked>, epoch: u64) -> RoomGroup {
    RoomGroup {
        room: room.to_owned(),
        checked: tracked.is_some(),
        epoch: tracked.map_or(epoch, Tracked::epoch),
        members: tracked.map(Tracked::members).unwrap_or_default(),
    }
}

fn refusal(e: GroupError) -> ApiError {
    match e {
        GroupError::Epoch { .. } => ApiError::conflict(e.to_string()),
        GroupError::Malformed { .. } | GroupError::Private => ApiError::bad_request(e.to_string()),
        GroupError::Refused(_) => ApiError::forbidden(e.to_string()),
        GroupError::Record(_) => {
            warn!(error = %e, "an MLS group record does not load");
            ApiError::internal()
        }
    }
}
