//! The gateway's part of end-to-end encrypted rooms (docs/E2EE.md): a room of kind `e2ee`
//! takes only MLS messages and other rooms none, and a commit must be for the room's
//! current epoch.
//!
//! The epoch check has two halves. Before publishing, the room's worker says which epoch it
//! has stored (`room_epoch`); a commit for an older one is refused (unless it is the
//! sender's resend of the commit that started the epoch: that is answered with its seq), and
//! one for a newer one too, after waiting up to 3 s for the worker to store the commits
//! before it (a member commits as soon as it has the previous commit, which reaches it
//! before the worker has stored it). The commit is then published
//! under the id [`commit_msg_id`], shared by every commit for that epoch of that room, so of
//! two commits racing past the first check JetStream stores one and answers the other as a
//! duplicate of it: that one is refused here. That holds only while the earlier commit's id
//! is in JetStream's duplicate window (`mesh.duplicate_window_secs`): a store further behind
//! than the window would still say epoch E while a commit for E, older than the window, waits
//! in the stream, and a second commit for E would be acked and then stored void (its sender
//! forked). So the worker answers an ask that carries a commit only once its store holds
//! every message the stream had of the room when it asked the stream's leader (waiting up to
//! `worker.history_wait_ms`, then `unavailable`, which is passed on to the sender): any
//! commit its epoch does not reflect reached the stream after that, within the window of the
//! publish here. Behind all this, the worker stores a commit for any other epoch as a void
//! marker, so clients that apply the same rule in seq order never fork.
//!
//! The first half carries the commit: in a room whose group the server tracks (docs/E2EE.md,
//! "Checked commits") the worker refuses one that no member of the group could have made.
//! A welcome waits the same way for its commit's epoch, and the worker refuses it unless
//! its sender sent the commit that started that epoch.

use std::time::Duration;

use chatmesh_protocol::backoff::Backoff;
use chatmesh_protocol::e2ee::{commit_msg_id, Mls, MlsKind, RoomEpoch, RoomEpochRequest};
use chatmesh_protocol::message::Payload;
use chatmesh_protocol::service::{RoomEpochGet, RoomKind};
use chatmesh_protocol::ApiError;

use tokio::time::Instant;

use crate::state::AppState;

/// How long a commit for an epoch ahead of the worker's waits for the worker to catch up.
const FUTURE_WAIT: Duration = Duration::from_secs(3);

/// Checks that `mls` fits the room's kind: every send to an `e2ee` room has it but a delete
/// (which carries nothing to encrypt: the frame rules keep `mls` off a change), no other send
/// does.
pub(super) fn fits(kind: RoomKind, mls: Option<&Mls>, delete: bool) -> Result<(), ApiError> {
    match (kind, mls) {
        (RoomKind::E2ee, Some(_)) | (RoomKind::Public | RoomKind::Private | RoomKind::Dm, None) => {
            Ok(())
        }
        (RoomKind::E2ee, None) if delete => Ok(()),
        (RoomKind::E2ee, None) => Err(ApiError::bad_request(
            "an e2ee room takes only MLS messages (and deletes): send with mls and an empty body",
        )),
        (_, Some(_)) => Err(ApiError::bad_request("mls is only for rooms of kind e2ee")),
    }
}

/// What the epoch check says of a send.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Commit {
    /// Not a commit: published under the sender's own dedupe id.
    No,
    /// A commit for the room's epoch: published under this id (shared by every commit for
    /// the epoch).
    Publish { msg_id: String, epoch: u64 },
    /// The sender's resend of the commit that started the room's epoch: answered with it.
    Stored { seq: u64, ts: u64 },
}

/// The epoch check of a send (see the module doc).
pub(super) async fn check(
    state: &AppState,
    room: &str,
    user: &str,
    id: &str,
    mls: &Mls,
) -> Result<Commit, ApiError> {
    if mls.kind == MlsKind::App {
        return Ok(Commit::No);
    }
    // The worker checks the commit against the room's group when it tracks it (and refuses
    // a standalone proposal there), and a welcome's sender against its commit's.
    let req = RoomEpochRequest {
        room: room.to_owned(),
        user: user.to_owned(),
        commit: Some(mls.clone()),
    };
    if mls.kind == MlsKind::Proposal {
        state.services.ask::<RoomEpochGet>(room, &req).await?;
        return Ok(Commit::No);
    }
    let stored = caught_up(state, room, &req).await?;
    if mls.kind == MlsKind::Welcome {
        if mls.epoch > stored.epoch {
            metrics::counter!("chatmesh_mls_welcomes_refused_total", "why" => "future")
                .increment(1);
            return Err(ApiError::conflict(format!(
                "future epoch: the room is at epoch {}, the welcome's commit is not stored yet",
                stored.epoch
            )));
        }
        return Ok(Commit::No);
    }
    if let Some(c) = &stored.commit {
        if mls.epoch.checked_add(1) == Some(stored.epoch) && c.from == user && c.id == id {
            return Ok(Commit::Stored {
                seq: c.seq,
                ts: c.ts,
            });
        }
    }
    let epoch = stored.epoch;
    if mls.epoch < epoch {
        metrics::counter!("chatmesh_mls_commits_refused_total", "why" => "stale").increment(1);
        return Err(ApiError::conflict(format!(
            "stale epoch: the room is at epoch {epoch}"
        )));
    }
    if mls.epoch > epoch {
        metrics::counter!("chatmesh_mls_commits_refused_total", "why" => "future").increment(1);
        return Err(ApiError::conflict(format!(
            "future epoch: the room is at epoch {epoch} (retry shortly if a commit was just stored)"
        )));
    }
    Ok(Commit::Publish {
        msg_id: commit_msg_id(room, epoch),
        epoch,
    })
}

/// The room's epoch as its worker has stored it, after waiting up to [`FUTURE_WAIT`] for it to
/// reach `req`'s (a member commits, or welcomes, as soon as its commit is acked, which may
/// be before the worker stored it). The worker checked `req`'s message once the epoch was
/// at or past the message's: the polls while it catches up leave the message (up to 60 KiB
/// inline) out, and the one that finds the epoch there is followed by an ask with it.
async fn caught_up(
    state: &AppState,
    room: &str,
    req: &RoomEpochRequest,
) -> Result<RoomEpoch, ApiError> {
    let Some(epoch) = req.commit.as_ref().map(|m| m.epoch) else {
        return state.services.ask::<RoomEpochGet>(room, req).await;
    };
    let give_up = Instant::now() + FUTURE_WAIT;
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(200));
    let mut stored = state.services.ask::<RoomEpochGet>(room, req).await?;
    let poll = RoomEpochRequest {
        commit: None,
        ..req.clone()
    };
    while epoch > stored.epoch && Instant::now() < give_up {
        tokio::time::sleep(backoff.next_delay()).await;
        // Each poll is a worker request of the sender's budget (a welcome for an epoch far
        // ahead paid one unit for some twenty of them).
        state.throttle.charge_api(&req.user).await?;
        stored = state.services.ask::<RoomEpochGet>(room, &poll).await?;
        if epoch <= stored.epoch {
            stored = state.services.ask::<RoomEpochGet>(room, req).await?;
        }
    }
    Ok(stored)
}

/// A commit JetStream answered as a duplicate: the sender's own resend (the stored commit
/// has its id), or a commit that lost the race for its epoch (`conflict`).
pub(super) async fn duplicate_commit(
    state: &AppState,
    room: &str,
    seq: u64,
    user: &str,
    id: &str,
    epoch: u64,
) -> Result<(), ApiError> {
    let stored = state.reader.get(room, seq).await.ok();
    let original = stored.and_then(|p| serde_json::from_slice::<Payload>(&p).ok());
    match original {
        Some(p) if p.from == user && p.id == id => Ok(()),
        _ => {
            metrics::counter!("chatmesh_mls_commits_refused_total", "why" => "race").increment(1);
            Err(ApiError::conflict(format!(
                "stale epoch: another commit for epoch {epoch} was stored first (seq {seq})"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_protocol::e2ee::encode;

    #[test]
    fn mls_only_where_the_kind_wants_it() {
        let m = Mls {
            kind: MlsKind::App,
            epoch: 0,
            data: encode(b"c"),
            file: None,
        };
        assert!(fits(RoomKind::E2ee, Some(&m), false).is_ok());
        assert!(fits(RoomKind::E2ee, None, false).is_err());
        assert!(fits(RoomKind::E2ee, None, true).is_ok(), "a delete");
        assert!(fits(RoomKind::Private, Some(&m), false).is_err());
        assert!(fits(RoomKind::Public, None, false).is_ok());
    }
}
