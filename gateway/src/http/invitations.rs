//! Invitations (extension, `chatmesh_protocol::invitations`): who may add the caller to rooms
//! (`GET`/`PUT /v1/users/me/adds`), its invitations (`GET /v1/users/me/invitations`,
//! accept with `POST` and decline with `DELETE /v1/users/me/invitations/{room}`), and the
//! add of a user who takes invitations ([`invite_instead`]).
//!
//! An add asks the added user's account partition (with the block check) whether it takes
//! invitations; if so the room's worker checks the add as for any add (`member_invite`) and
//! the invitation is kept with the user's account. Accepting is the add in the inviter's
//! name: an inviter who has lost the right to add members (or a room that is gone) makes the
//! invitation void, and it is dropped.

use hyper::body::Incoming;
use hyper::Request;
use serde::Deserialize;

use chatmesh_protocol::invitations::{
    Adds, DeleteInvitation, GetAdds, GetInvitation, Invitation, InvitationQuery,
    InvitationsRequest, InviteMember, InviteRequest, ListInvitations, PutInvitation, SetAdds,
    SetAddsRequest, MAX_INVITATIONS_PAGE,
};
use chatmesh_protocol::service::{AddMember, AddMemberRequest, UserRequest};
use chatmesh_protocol::{ApiError, ErrorCode};

use super::reply;
use super::request::{body, caller, name, name_page, Answer};
use crate::state::AppState;

/// Invitations on a page when `limit` is not given.
const DEFAULT_INVITATIONS_PAGE: u32 = 100;

/// `GET /v1/users/me/adds`.
pub(super) async fn adds(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let req = UserRequest { user };
    let setting = state.services.ask::<GetAdds>(&req.user, &req).await?;
    Ok(reply::json(200, &setting))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddsBody {
    adds: Adds,
}

/// `PUT /v1/users/me/adds {"adds": "anyone" | "invitations"}`.
pub(super) async fn set_adds(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let AddsBody { adds } = body(req).await?;
    let req = SetAddsRequest { user, adds };
    let setting = state.services.ask::<SetAdds>(&req.user, &req).await?;
    Ok(reply::json(200, &setting))
}

/// `GET /v1/users/me/invitations?after=ROOM&limit=N`.
pub(super) async fn list(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let (after, limit) = name_page(&req, "room", DEFAULT_INVITATIONS_PAGE, MAX_INVITATIONS_PAGE)?;
    let req = InvitationsRequest { user, after, limit };
    let page = state
        .services
        .ask::<ListInvitations>(&req.user, &req)
        .await?;
    Ok(reply::json(200, &page))
}

/// `POST /v1/users/me/invitations/{room}`: the caller is added with the invitation's role,
/// in its inviter's name.
pub(super) async fn accept(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let user = caller(state, &req).await?;
    name("room", room)?;
    let query = InvitationQuery {
        user,
        room: room.to_owned(),
    };
    let invitation = state
        .services
        .ask::<GetInvitation>(&query.user, &query)
        .await?;
    let add = AddMemberRequest {
        room: query.room.clone(),
        user: query.user.clone(),
        role: invitation.role,
        actor: invitation.by,
        invited_at: Some(invitation.ts),
    };
    match state.services.ask::<AddMember>(room, &add).await {
        Ok(_) => {}
        // The inviter may no longer add members, the room is gone, the user is banned:
        // the invitation is void.
        Err(e)
            if matches!(
                e.code,
                ErrorCode::Forbidden | ErrorCode::NotFound | ErrorCode::Conflict
            ) =>
        {
            drop_invitation(state, &query).await?;
            return Err(ApiError::new(
                e.code,
                format!("the invitation is no longer valid: {}", e.message),
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    drop_invitation(state, &query).await?;
    Ok(reply::empty(204))
}

/// `DELETE /v1/users/me/invitations/{room}`.
pub(super) async fn decline(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let user = caller(state, &req).await?;
    name("room", room)?;
    let query = InvitationQuery {
        user,
        room: room.to_owned(),
    };
    state
        .services
        .ask::<DeleteInvitation>(&query.user, &query)
        .await?;
    Ok(reply::empty(204))
}

/// Drops an invitation that was used or is void (one dropped meanwhile is no error).
async fn drop_invitation(state: &AppState, query: &InvitationQuery) -> Result<(), ApiError> {
    match state
        .services
        .ask::<DeleteInvitation>(&query.user, query)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == ErrorCode::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whom `user` takes adds from. A user without an account here (an external issuer's)
/// takes adds from anyone.
pub(super) async fn adds_of(state: &AppState, user: &str) -> Result<Adds, ApiError> {
    let req = UserRequest {
        user: user.to_owned(),
    };
    match state.services.ask::<GetAdds>(&req.user, &req).await {
        Ok(setting) => Ok(setting.adds),
        Err(e) if e.code == ErrorCode::NotFound => Ok(Adds::Anyone),
        Err(e) => Err(e),
    }
}

/// For an add of `req.user` by `req.actor`: `None` if the user takes adds (add it as
/// usual); else the room's worker checks the add, a member's role changes as asked
/// (`Some(None)`), and anyone else gets an invitation (`Some(Some(invitation))`).
pub(super) async fn invite_instead(
    state: &AppState,
    req: &AddMemberRequest,
) -> Result<Option<Option<Invitation>>, ApiError> {
    if adds_of(state, &req.user).await? != Adds::Invitations {
        return Ok(None);
    }
    if !state
        .services
        .ask::<InviteMember>(&req.room, req)
        .await?
        .invite
    {
        return Ok(Some(None));
    }
    let invite = InviteRequest {
        user: req.user.clone(),
        room: req.room.clone(),
        by: req.actor.clone(),
        role: req.role,
    };
    let invitation = state
        .services
        .ask::<PutInvitation>(&invite.user, &invite)
        .await?;
    Ok(Some(Some(invitation)))
}
