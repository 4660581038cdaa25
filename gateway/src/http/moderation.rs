//! Room moderation over HTTP (extension): `POST /v1/rooms/{room}/bans` and `DELETE
//! .../bans/{user}`, `GET .../bans` (a page, owner and admins), `POST .../mutes` and
//! `DELETE .../mutes/{user}`. The room's worker decides and stores each action (the rules
//! are in the worker's `service/moderation.rs`) and names the room event, which this
//! gateway then publishes into the room's order ([`crate::room_events`]). The action
//! stands even if that event cannot be published (logged and counted).

use hyper::body::Incoming;
use hyper::Request;
use serde::Deserialize;

use chatmesh_protocol::moderation::{
    BanRequest, BansRequest, LiftRequest, MuteRequest, DEFAULT_BANS_PAGE, MAX_BANS_PAGE,
};
use chatmesh_protocol::service::{Ban, ListBans, Mute, Unban, Unmute};

use super::reply;
use super::request::{body, caller, name, name_page, Answer};
use crate::room_events;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBan {
    user: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMute {
    user: String,
    #[serde(default)]
    until: Option<u64>,
}

pub(super) async fn ban(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let actor = caller(state, &req).await?;
    name("room", room)?;
    let new: NewBan = body(req).await?;
    name("user", &new.user)?;
    let req = BanRequest {
        room: room.to_owned(),
        actor,
        user: new.user,
        reason: new.reason,
    };
    let event = state.services.ask::<Ban>(room, &req).await?;
    // The banned user's sessions here leave the room at once (every gateway's fan-out also
    // takes them out when it reaches the event, before delivering it: `fanout::room`; and
    // on the worker's membership event, published before it answered). Should the event
    // not be published, they are out all the same.
    state.fanout.evict_user(room, &req.user);
    room_events::announce(state, room, &req.actor, event).await;
    Ok(reply::empty(204))
}

pub(super) async fn unban(
    state: &AppState,
    req: Request<Incoming>,
    room: &str,
    user: &str,
) -> Answer {
    lift::<Unban>(state, req, room, user).await
}

pub(super) async fn mute(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let actor = caller(state, &req).await?;
    name("room", room)?;
    let new: NewMute = body(req).await?;
    name("user", &new.user)?;
    let req = MuteRequest {
        room: room.to_owned(),
        actor,
        user: new.user,
        until: new.until,
    };
    let event = state.services.ask::<Mute>(room, &req).await?;
    room_events::announce(state, room, &req.actor, event).await;
    Ok(reply::empty(204))
}

pub(super) async fn unmute(
    state: &AppState,
    req: Request<Incoming>,
    room: &str,
    user: &str,
) -> Answer {
    lift::<Unmute>(state, req, room, user).await
}

/// An unban or an unmute.
async fn lift<O>(state: &AppState, req: Request<Incoming>, room: &str, user: &str) -> Answer
where
    O: chatmesh_protocol::service::Op<
        Request = LiftRequest,
        Response = chatmesh_protocol::moderation::RoomEvent,
    >,
{
    let actor = caller(state, &req).await?;
    name("room", room)?;
    name("user", user)?;
    let req = LiftRequest {
        room: room.to_owned(),
        actor,
        user: user.to_owned(),
    };
    let event = state.services.ask::<O>(room, &req).await?;
    room_events::announce(state, room, &req.actor, event).await;
    Ok(reply::empty(204))
}

pub(super) async fn bans(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let actor = caller(state, &req).await?;
    name("room", room)?;
    let (after, limit) = name_page(&req, "user name", DEFAULT_BANS_PAGE, MAX_BANS_PAGE)?;
    let req = BansRequest {
        room: room.to_owned(),
        actor,
        after,
        limit,
    };
    let page = state.services.ask::<ListBans>(room, &req).await?;
    Ok(reply::json(200, &page))
}
