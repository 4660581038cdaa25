//! Threads (extension): `GET /v1/rooms/{room}/messages/{seq}/thread?after=&limit=`, a page
//! of the replies to root `seq` with the caller's unread count, and
//! `POST /v1/rooms/{room}/messages/{seq}/thread/read {"seq"}`, the caller's read cursor in
//! that thread. For whoever may read the room's history.

use hyper::body::Incoming;
use hyper::Request;
use serde::Deserialize;

use chatmesh_protocol::service::{GetThread, ReadThread, ThreadReadRequest, ThreadRequest};
use chatmesh_protocol::ApiError;

use super::reply;
use super::request::{body, caller, name, page_params, Answer};
use crate::state::AppState;

/// The caller, once it may read `room`, and the root's seq.
async fn reader(
    state: &AppState,
    req: &Request<Incoming>,
    room: &str,
    seq: &str,
) -> Result<(String, u64), super::request::Refusal> {
    let user = caller(state, req).await?;
    name("room", room)?;
    let seq = seq
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request("the message seq must be a number"))?;
    let access = state.access.get(room, &user).await?;
    if !access.can_read() {
        return Err(ApiError::forbidden("not a member of this room").into());
    }
    Ok((user, seq))
}

pub(super) async fn thread(
    state: &AppState,
    req: Request<Incoming>,
    room: &str,
    seq: &str,
) -> Answer {
    let (user, root) = reader(state, &req, room, seq).await?;
    let (after, limit) = page_params(&req, "after")?;
    let ask = ThreadRequest {
        room: room.to_owned(),
        root,
        user,
        after,
        limit,
    };
    let page = state.services.ask::<GetThread>(room, &ask).await?;
    Ok(reply::json(200, &page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    seq: u64,
}

pub(super) async fn read(
    state: &AppState,
    req: Request<Incoming>,
    room: &str,
    seq: &str,
) -> Answer {
    let (user, root) = reader(state, &req, room, seq).await?;
    // A cursor is kept for members only, as the room's own (`read` needs membership too):
    // a reader of a public room who is no member would leave records nobody removes.
    if !state.access.get(room, &user).await?.can_post() {
        return Err(ApiError::forbidden("only members keep a thread's read cursor").into());
    }
    let read: ReadBody = body(req).await?;
    let ask = ThreadReadRequest {
        room: room.to_owned(),
        root,
        user,
        seq: read.seq,
    };
    state.services.ask::<ReadThread>(room, &ask).await?;
    Ok(reply::empty(204))
}
