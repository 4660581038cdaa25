//! The gateway's check of an edit, a delete, a reaction or a reply before it is published:
//! the target's room worker applies the rules of `chatmesh_workers::edits` and
//! `chatmesh_workers::reactions` to its store (author, role, target alive and normal,
//! reaction bounds), so a refused change never enters the room's order. The worker checks
//! again when it stores the change: what slips through a race (the target deleted, or the
//! role taken away, between this check and the store) is stored as a void marker. A reply
//! learns its thread's root here, and a resend whether it was stored already.

use chatmesh_protocol::message::Change;
use chatmesh_protocol::service::{
    ChangeCheck, ChangeCheckRequest, CheckChange, CheckReply, CheckSent, ReplyCheckRequest,
    SentCheckRequest,
};
use chatmesh_protocol::ApiError;

use crate::state::AppState;

/// Asks the room's worker whether `user` may send `change` with client id `id` (and, for a
/// reaction, `key`).
pub(super) async fn check(
    state: &AppState,
    room: &str,
    user: &str,
    id: &str,
    change: Change,
    key: &str,
) -> Result<ChangeCheck, ApiError> {
    let req = ChangeCheckRequest {
        room: room.to_owned(),
        user: user.to_owned(),
        id: id.to_owned(),
        change,
        key: key.to_owned(),
    };
    state.services.ask::<CheckChange>(room, &req).await
}

/// Asks the room's worker whether `user` sent a message with client id `id` that is stored
/// after seq `after` (a resend: `send` with `resend_after`).
pub(super) async fn sent(
    state: &AppState,
    room: &str,
    user: &str,
    id: &str,
    after: u64,
) -> Result<ChangeCheck, ApiError> {
    let req = SentCheckRequest {
        room: room.to_owned(),
        user: user.to_owned(),
        id: id.to_owned(),
        after,
    };
    state.services.ask::<CheckSent>(room, &req).await
}

/// Asks the room's worker whether `user` may reply to `reply_to`; the thread's root.
pub(super) async fn reply_root(
    state: &AppState,
    room: &str,
    user: &str,
    reply_to: u64,
) -> Result<u64, ApiError> {
    let req = ReplyCheckRequest {
        room: room.to_owned(),
        user: user.to_owned(),
        reply_to,
    };
    Ok(state.services.ask::<CheckReply>(room, &req).await?.root)
}
