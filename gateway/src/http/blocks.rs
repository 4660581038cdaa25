//! The caller's blocks (extension, `chatmesh_protocol::blocks`): `PUT` and `DELETE
//! /v1/users/me/blocks/{user}`, `GET /v1/users/me/blocks`, and the check an add makes of
//! the user being added ([`refuse_blocked_add`]). The list lives with the accounts, so each
//! call goes to the caller's (or the added user's) account partition.

use hyper::body::Incoming;
use hyper::Request;

use chatmesh_protocol::blocks::{
    BlockQuery, BlocksRequest, GetBlock, ListBlocks, SetBlock, SetBlockRequest, MAX_BLOCKS_PAGE,
};
use chatmesh_protocol::ApiError;

use super::reply;
use super::request::{caller, name, name_page, Answer};
use crate::state::AppState;

/// Blocks on a page when `limit` is not given.
const DEFAULT_BLOCKS_PAGE: u32 = 100;

/// `PUT` (`blocked`) or `DELETE /v1/users/me/blocks/{other}`.
pub(super) async fn set(
    state: &AppState,
    req: Request<Incoming>,
    other: &str,
    blocked: bool,
) -> Answer {
    let user = caller(state, &req).await?;
    name("user", other)?;
    let req = SetBlockRequest {
        user,
        other: other.to_owned(),
        blocked,
    };
    state.services.ask::<SetBlock>(&req.user, &req).await?;
    Ok(reply::empty(204))
}

/// `GET /v1/users/me/blocks?after=USER&limit=N`.
pub(super) async fn list(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let (after, limit) = name_page(&req, "user name", DEFAULT_BLOCKS_PAGE, MAX_BLOCKS_PAGE)?;
    let req = BlocksRequest { user, after, limit };
    let page = state.services.ask::<ListBlocks>(&req.user, &req).await?;
    Ok(reply::json(200, &page))
}

/// `forbidden` when `user` has blocked `actor`, who wants to add it to a room.
pub(super) async fn refuse_blocked_add(
    state: &AppState,
    user: &str,
    actor: &str,
) -> Result<(), ApiError> {
    let query = BlockQuery {
        user: user.to_owned(),
        other: actor.to_owned(),
    };
    if state.services.ask::<GetBlock>(user, &query).await?.blocked {
        return Err(ApiError::forbidden(
            "this user does not accept being added to rooms by you",
        ));
    }
    Ok(())
}
