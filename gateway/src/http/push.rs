//! Push notification endpoints (extension of v1, docs/PUSH.md): the caller's push targets
//! (`POST`/`GET /v1/push/targets`, `DELETE /v1/push/targets/{id}`), settings
//! (`GET`/`PATCH /v1/push/settings`) and the VAPID public key (`GET /v1/push/vapid`).
//!
//! Shapes are checked here first (a clear 400 without a round trip) and again by the worker
//! that stores them, which alone knows whether `http://` loopback endpoints are allowed.

use hyper::body::Incoming;
use hyper::Request;

use chatmesh_protocol::push::{
    AddTargetRequest, NewTarget, SetSettingsRequest, SettingsPatch, TargetRequest,
};
use chatmesh_protocol::service::{
    PushSettingsGet, PushSettingsSet, PushTargetAdd, PushTargetRemove, PushTargets, PushVapid,
    UserRequest,
};
use chatmesh_protocol::ApiError;

use super::reply;
use super::request::{body, caller, name, Answer};
use crate::state::AppState;

pub(super) async fn add_target(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let target: NewTarget = body(req).await?;
    // Loopback http is the worker's call; everything else is refused here already.
    if let Err(e) = target.check(true) {
        return Err(ApiError::bad_request(e.to_string()).into());
    }
    let req = AddTargetRequest { user, target };
    let info = state.services.ask::<PushTargetAdd>(&req.user, &req).await?;
    Ok(reply::json(201, &info))
}

pub(super) async fn targets(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let req = UserRequest { user };
    let list = state.services.ask::<PushTargets>(&req.user, &req).await?;
    Ok(reply::json(200, &list))
}

pub(super) async fn remove_target(state: &AppState, req: Request<Incoming>, id: &str) -> Answer {
    let user = caller(state, &req).await?;
    name("target id", id)?;
    let req = TargetRequest {
        user,
        id: id.to_owned(),
    };
    state
        .services
        .ask::<PushTargetRemove>(&req.user, &req)
        .await?;
    Ok(reply::empty(204))
}

pub(super) async fn settings(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let req = UserRequest { user };
    let settings = state
        .services
        .ask::<PushSettingsGet>(&req.user, &req)
        .await?;
    Ok(reply::json(200, &settings))
}

pub(super) async fn set_settings(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let patch: SettingsPatch = body(req).await?;
    let req = SetSettingsRequest { user, patch };
    let settings = state
        .services
        .ask::<PushSettingsSet>(&req.user, &req)
        .await?;
    Ok(reply::json(200, &settings))
}

pub(super) async fn vapid(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let req = UserRequest { user };
    let key = state.services.ask::<PushVapid>(&req.user, &req).await?;
    Ok(reply::json(200, &key))
}
