//! `GET /v1/rooms/{room}/members` (a page of members with roles, display names and mutes;
//! members only) and `PATCH /v1/rooms/{room}` (`{"topic"}` or `{"name"}`; owner or admin).
//! The worker owning the room decides who may and stores the text; the gateway checks the
//! shape of the request first and, once it is stored, publishes a room event into the
//! room's order ([`crate::room_events`]), where the store writer applies it in order. A
//! topic is also announced on `chat.evt.<room>` as a `topic` frame, as before the events
//! (with typing and receipts: sessions that joined the room get it).

use hyper::body::Incoming;
use hyper::Request;

use chatmesh_protocol::frames::ServerFrame;
use chatmesh_protocol::moderation::{RoomEvent, SetNameRequest};
use chatmesh_protocol::service::{ListMembers, MembersRequest, SetName, SetTopic, SetTopicRequest};
use chatmesh_protocol::text::{clean_room_name, clean_topic};
use chatmesh_protocol::ApiError;

use super::reply;
use super::request::{body, caller, name, name_page, patch_field, Answer};
use crate::room_events;
use crate::state::AppState;

/// Members per page unless `limit` says otherwise.
const DEFAULT_MEMBERS_PAGE: u32 = 100;
/// Largest `limit`.
const MAX_MEMBERS_PAGE: u32 = 200;

pub(super) async fn members(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let actor = caller(state, &req).await?;
    name("room", room)?;
    let (after, limit) = name_page(&req, "user name", DEFAULT_MEMBERS_PAGE, MAX_MEMBERS_PAGE)?;
    let req = MembersRequest {
        room: room.to_owned(),
        actor,
        after,
        limit,
        without_names: false,
    };
    let page = state.services.ask::<ListMembers>(room, &req).await?;
    Ok(reply::json(200, &page))
}

/// `PATCH /v1/rooms/{room}`: `{"topic"}` or (extension) `{"name"}`, one at a time.
pub(super) async fn patch_room(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let actor = caller(state, &req).await?;
    name("room", room)?;
    let body: serde_json::Value = body(req).await?;
    if body.get("name").is_some() {
        set_name(state, room, actor, body).await
    } else {
        set_topic(state, room, actor, body).await
    }
}

async fn set_topic(state: &AppState, room: &str, actor: String, body: serde_json::Value) -> Answer {
    let topic = match patch_field(body, "topic")? {
        Some(text) => clean_topic(&text).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => None,
    };
    let req = SetTopicRequest {
        room: room.to_owned(),
        actor,
        topic,
    };
    let info = state.services.ask::<SetTopic>(room, &req).await?;
    // Stored: now the room hears it, through every gateway with sessions in it, as it hears
    // typing and receipts. Best effort: a session that misses it reads the room list.
    let frame = ServerFrame::Topic {
        room: room.into(),
        topic: info.topic.as_deref().map(Into::into),
        by: req.actor.as_str().into(),
    }
    .encode();
    if let Err(e) = crate::receipts::publish(&state.nats, room, &req.actor, frame).await {
        tracing::warn!(room, error = %e, "could not announce a topic change");
    }
    // And in the room's order (extension), where the store writer applies it.
    let event = RoomEvent::Topic(info.topic.clone());
    let seq = room_events::announce(state, room, &req.actor, event).await;
    Ok(reply::json(
        200,
        &serde_json::json!({ "room": info.room, "topic": info.topic, "seq": seq }),
    ))
}

/// Sets or clears the room's display name (extension): stored by the worker, then an
/// event in the room's order.
async fn set_name(state: &AppState, room: &str, actor: String, body: serde_json::Value) -> Answer {
    let name = match patch_field(body, "name")? {
        Some(text) => clean_room_name(&text).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => None,
    };
    let req = SetNameRequest {
        room: room.to_owned(),
        actor,
        name,
    };
    let info = state.services.ask::<SetName>(room, &req).await?;
    let event = RoomEvent::Name(info.name.clone());
    let seq = room_events::announce(state, room, &req.actor, event).await;
    Ok(reply::json(
        200,
        &serde_json::json!({ "room": info.room, "name": info.name, "seq": seq }),
    ))
}
