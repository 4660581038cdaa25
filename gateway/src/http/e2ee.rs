//! The key-package directory of end-to-end encrypted rooms (extension of v1, docs/E2EE.md):
//! the caller's identity key (`PUT /v1/e2ee/identity`), its devices
//! (`PUT`/`DELETE /v1/e2ee/devices/{device}`) and their KeyPackages
//! (`POST /v1/e2ee/devices/{device}/key-packages`), a user's devices
//! (`GET /v1/e2ee/users/{user}`) and claiming one KeyPackage per device of a user to add it
//! to a group (`POST /v1/e2ee/users/{user}/claim[?room=]`, throttled per caller; a user who
//! takes adds by invitation only is claimed only for an e2ee room both are members of), and a room's
//! group as the server tracks it to check commits (`PUT`/`GET /v1/e2ee/rooms/{room}/group`).
//!
//! Shapes are checked here (a clear 400 without a round trip); the worker that owns the
//! user's partition stores them and checks each device's signature by the identity key.

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use chatmesh_protocol::e2ee::{
    identity_key_bytes, validate_device, AddKeyPackagesRequest, DeviceBody, DeviceRequest,
    GroupBody, GroupPutRequest, IdentityBody, KeyPackagesBody, PutDeviceRequest,
    ReplaceIdentityRequest, SetIdentityRequest,
};
use chatmesh_protocol::invitations::Adds;
use chatmesh_protocol::service::{
    Claim, DeviceDelete, DevicePut, Devices, GroupGet, GroupPut, IdentityReplace, IdentitySet,
    KeyPackagesAdd, RoomKind, RoomUserRequest,
};
use chatmesh_protocol::ApiError;

use super::invitations::adds_of;
use super::reply::{self, Body};
use super::request::{
    ask_with_password, body, caller, caller_identity, name, query_pairs, Answer, Refusal,
};
use crate::state::AppState;

/// Routes `/v1/e2ee/...` (segments after `e2ee`).
pub(super) async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    seg: &[&str],
) -> Response<Body> {
    let method = req.method().clone();
    let result = match (&method, seg) {
        (&Method::PUT, ["identity"]) => identity(state, req).await,
        (&Method::PUT, ["devices", device]) => put_device(state, req, device).await,
        (&Method::DELETE, ["devices", device]) => delete_device(state, req, device).await,
        (&Method::POST, ["devices", device, "key-packages"]) => {
            key_packages(state, req, device).await
        }
        (&Method::GET, ["users", user]) => devices(state, req, user).await,
        (&Method::POST, ["users", user, "claim"]) => claim(state, req, user).await,
        (&Method::PUT, ["rooms", room, "group"]) => put_group(state, req, room).await,
        (&Method::GET, ["rooms", room, "group"]) => get_group(state, req, room).await,
        (
            _,
            ["identity"]
            | ["devices", _]
            | ["devices", _, "key-packages"]
            | ["users", _]
            | ["users", _, "claim"]
            | ["rooms", _, "group"],
        ) => Err(ApiError::bad_request("method not allowed here").into()),
        _ => Err(ApiError::not_found("no such endpoint").into()),
    };
    result.unwrap_or_else(Refusal::response)
}

/// Sets the caller's identity key, or with the account's password replaces it. A wrong
/// password counts as a failed login of (IP, account), with the login's lockouts.
async fn identity(state: &AppState, req: Request<Incoming>) -> Answer {
    let ip = super::client_ip(&req);
    let identity = caller_identity(state, &req).await?;
    let b: IdentityBody = body(req).await?;
    let user = identity.user;
    let Some(password) = b.password else {
        let req = SetIdentityRequest { user, key: b.key };
        let id = state.services.ask::<IdentitySet>(&req.user, &req).await?;
        return Ok(reply::json(200, &id));
    };
    if identity.gen.is_none() {
        return Err(ApiError::bad_request(
            "an external issuer's users have no password here: their identity key is set once",
        )
        .into());
    }
    // A key of the wrong shape is refused before it costs a login attempt.
    identity_key_bytes(&b.key)?;
    let req = ReplaceIdentityRequest {
        user: user.clone(),
        key: b.key,
        password,
    };
    let wrong = "the password is wrong";
    let id = ask_with_password::<IdentityReplace>(state, ip, &user, &req, wrong).await?;
    Ok(reply::json(200, &id))
}

async fn put_device(state: &AppState, req: Request<Incoming>, device: &str) -> Answer {
    let user = caller(state, &req).await?;
    validate_device(device)?;
    let b: DeviceBody = body(req).await?;
    let req = PutDeviceRequest {
        user,
        device: device.to_owned(),
        signature_key: b.signature_key,
        signature: b.signature,
    };
    let info = state.services.ask::<DevicePut>(&req.user, &req).await?;
    Ok(reply::json(200, &info))
}

async fn delete_device(state: &AppState, req: Request<Incoming>, device: &str) -> Answer {
    let user = caller(state, &req).await?;
    validate_device(device)?;
    let req = DeviceRequest {
        user,
        device: device.to_owned(),
    };
    state.services.ask::<DeviceDelete>(&req.user, &req).await?;
    Ok(reply::empty(204))
}

async fn key_packages(state: &AppState, req: Request<Incoming>, device: &str) -> Answer {
    let user = caller(state, &req).await?;
    validate_device(device)?;
    let b: KeyPackagesBody = body(req).await?;
    b.validate()?;
    let req = AddKeyPackagesRequest {
        user,
        device: device.to_owned(),
        body: b,
    };
    let count = state
        .services
        .ask::<KeyPackagesAdd>(&req.user, &req)
        .await?;
    Ok(reply::json(200, &count))
}

async fn devices(state: &AppState, req: Request<Incoming>, user: &str) -> Answer {
    caller(state, &req).await?;
    name("user", user)?;
    let req = DeviceRequest {
        user: user.to_owned(),
        device: String::new(),
    };
    let list = state.services.ask::<Devices>(&req.user, &req).await?;
    Ok(reply::json(200, &list))
}

async fn claim(state: &AppState, req: Request<Incoming>, user: &str) -> Answer {
    let me = caller(state, &req).await?;
    name("user", user)?;
    let room = query_pairs(&req)
        .find(|(k, _)| *k == "room")
        .map(|(_, v)| v.to_owned());
    state.throttle.claim_allowed(&me, user).await?;
    match &room {
        Some(room) => shared_e2ee_room(state, room, &me, user).await?,
        None => claimable_by_anyone(state, user).await?,
    }
    let req = DeviceRequest {
        user: user.to_owned(),
        device: String::new(),
    };
    let claimed = state.services.ask::<Claim>(&req.user, &req).await?;
    Ok(reply::json(200, &claimed))
}

/// A claim that names no room: refused for a user who takes adds by invitation only (its
/// packages are for rooms it is in, not for anyone who asks).
async fn claimable_by_anyone(state: &AppState, user: &str) -> Result<(), ApiError> {
    if adds_of(state, user).await? == Adds::Invitations {
        return Err(ApiError::forbidden(format!(
            "{user} takes adds by invitation only: claim its KeyPackages for an e2ee room you \
             are both members of (?room=ROOM)"
        )));
    }
    Ok(())
}

/// Checks that `room` is an `e2ee` room both `me` and `user` are members of (a claim for
/// it may take the KeyPackages of a user who takes adds by invitation only).
async fn shared_e2ee_room(
    state: &AppState,
    room: &str,
    me: &str,
    user: &str,
) -> Result<(), ApiError> {
    name("room", room)?;
    let mine = state.access.get(room, me).await?;
    if mine.kind != RoomKind::E2ee {
        return Err(ApiError::bad_request(
            "claims name an e2ee room (?room=): this room is not one",
        ));
    }
    if !mine.can_post() {
        return Err(ApiError::forbidden("you are not a member of this room"));
    }
    let theirs = state.access.get(room, user).await?;
    if !theirs.can_post() {
        return Err(ApiError::forbidden(format!(
            "{user} is not a member of this room: add them first"
        )));
    }
    Ok(())
}

async fn put_group(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let user = caller(state, &req).await?;
    name("room", room)?;
    let b: GroupBody = body(req).await?;
    b.validate()?;
    let req = GroupPutRequest {
        room: room.to_owned(),
        user,
        body: b,
    };
    let group = state.services.ask::<GroupPut>(&req.room, &req).await?;
    Ok(reply::json(200, &group))
}

async fn get_group(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let user = caller(state, &req).await?;
    name("room", room)?;
    let req = RoomUserRequest {
        room: room.to_owned(),
        user,
    };
    let group = state.services.ask::<GroupGet>(&req.room, &req).await?;
    Ok(reply::json(200, &group))
}
