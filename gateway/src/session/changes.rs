//! The gateway's check of an edit or a delete before it is published: the target's room
//! worker applies the rules of `chatmesh_workers::edits` to its store (author, role,
//! target alive and normal), so a refused change never enters the room's order. The worker
//! checks again when it stores the change: what slips through a race (the target deleted,
//! or the role taken away, between this check and the store) is stored as a void marker.

use chatmesh_protocol::message::Change;
use chatmesh_protocol::service::{ChangeCheck, ChangeCheckRequest, CheckChange};
use chatmesh_protocol::ApiError;

use crate::state::AppState;

/// Asks the room's worker whether `user` may send `change` with client id `id`.
pub(super) async fn check(
    state: &AppState,
    room: &str,
    user: &str,
    id: &str,
    change: Change,
) -> Result<ChangeCheck, ApiError> {
    let req = ChangeCheckRequest {
        room: room.to_owned(),
        user: user.to_owned(),
        id: id.to_owned(),
        change,
    };
    state.services.ask::<CheckChange>(room, &req).await
}
