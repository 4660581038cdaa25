//! The `/v1` HTTP API of protocol v1: accounts, rooms, members, DMs and history; the
//! profile and password endpoints are in `account.rs`, member lists, topics and names in
//! `room_info.rs`, bans and mutes in `moderation.rs`, shared files in `files.rs`, push targets and settings in `push.rs`,
//! threads in `threads.rs`, the key-package directory of e2ee rooms in `e2ee.rs`.
//!
//! Logins, registrations and room creation pass the throttles of [`crate::throttle`]; a
//! refusal is 429 `rate_limited` with `Retry-After` (seconds). Every bearer token is checked
//! against its user's token generation ([`crate::revocation`]). What handlers share (the
//! caller, bodies, refusals) is in `request.rs`.

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde::Deserialize;

use chatmesh_protocol::service::{
    AddMember, AddMemberRequest, CloseDm, CreateRoom, CreateRoomRequest, Credentials, DmRequest,
    EditsRequest, GetEdits, Login, LogoutAll, OpenDm, Register, RemoveMember, RemoveMemberRequest,
    Role, RoomKind, UserRequest,
};
use chatmesh_protocol::{validate_name, ApiError, ErrorCode};

use super::files::{self, Part};
use super::reply::{self, Body};
use super::request::{
    body, caller, caller_identity, name, page_params, password_queue_full, query_pairs, Answer,
    Refusal,
};
use super::{account, invitations, moderation, push, room_info, threads};
use crate::state::AppState;

/// Routes `/v1/...` (segments after `v1`).
pub async fn handle(state: &AppState, req: Request<Incoming>, seg: &[&str]) -> Response<Body> {
    let method = req.method().clone();
    let result = match (&method, seg) {
        (&Method::POST, ["auth", "register"]) => register(state, req).await,
        (&Method::POST, ["auth", "login"]) => login(state, req).await,
        (&Method::POST, ["auth", "logout_all"]) => logout_all(state, req).await,
        (&Method::POST, ["auth", "password"]) => account::change_password(state, req).await,
        (&Method::GET, ["users", "me"]) => account::profile(state, req).await,
        (&Method::PATCH, ["users", "me"]) => account::set_profile(state, req).await,
        (&Method::GET, ["users", "me", "adds"]) => invitations::adds(state, req).await,
        (&Method::PUT, ["users", "me", "adds"]) => invitations::set_adds(state, req).await,
        (&Method::GET, ["users", "me", "invitations"]) => invitations::list(state, req).await,
        (&Method::POST, ["users", "me", "invitations", room]) => {
            invitations::accept(state, req, room).await
        }
        (&Method::DELETE, ["users", "me", "invitations", room]) => {
            invitations::decline(state, req, room).await
        }
        (&Method::GET, ["users", "me", "blocks"]) => super::blocks::list(state, req).await,
        (&Method::PUT, ["users", "me", "blocks", user]) => {
            super::blocks::set(state, req, user, true).await
        }
        (&Method::DELETE, ["users", "me", "blocks", user]) => {
            super::blocks::set(state, req, user, false).await
        }
        (&Method::PATCH, ["rooms", room]) => room_info::patch_room(state, req, room).await,
        (&Method::GET, ["rooms", room, "members"]) => room_info::members(state, req, room).await,
        (&Method::POST, ["rooms"]) => create_room(state, req).await,
        (&Method::GET, ["rooms"]) => list_rooms(state, req).await,
        (&Method::POST, ["rooms", room, "members"]) => add_member(state, req, room).await,
        (&Method::DELETE, ["rooms", room, "members", user]) => {
            remove_member(state, req, room, user).await
        }
        (&Method::POST, ["dm", user]) => dm(state, req, user).await,
        (&Method::DELETE, ["dm", user]) => close_dm(state, req, user).await,
        (&Method::POST, ["push", "targets"]) => push::add_target(state, req).await,
        (&Method::GET, ["push", "targets"]) => push::targets(state, req).await,
        (&Method::DELETE, ["push", "targets", id]) => push::remove_target(state, req, id).await,
        (&Method::GET, ["push", "settings"]) => push::settings(state, req).await,
        (&Method::PATCH, ["push", "settings"]) => push::set_settings(state, req).await,
        (&Method::GET, ["push", "vapid"]) => push::vapid(state, req).await,
        (&Method::GET, ["rooms", room, "messages"]) => messages(state, req, room).await,
        (&Method::GET, ["search"]) => super::search::search(state, req).await,
        (&Method::GET, ["rooms", room, "messages", seq, "edits"]) => {
            edits(state, req, room, seq).await
        }
        (&Method::GET, ["rooms", room, "messages", seq, "thread"]) => {
            threads::thread(state, req, room, seq).await
        }
        (&Method::POST, ["rooms", room, "messages", seq, "thread", "read"]) => {
            threads::read(state, req, room, seq).await
        }
        // Room moderation (extension).
        (&Method::POST, ["rooms", room, "bans"]) => moderation::ban(state, req, room).await,
        (&Method::GET, ["rooms", room, "bans"]) => moderation::bans(state, req, room).await,
        (&Method::DELETE, ["rooms", room, "bans", user]) => {
            moderation::unban(state, req, room, user).await
        }
        (&Method::POST, ["rooms", room, "mutes"]) => moderation::mute(state, req, room).await,
        (&Method::DELETE, ["rooms", room, "mutes", user]) => {
            moderation::unmute(state, req, room, user).await
        }
        (&Method::POST, ["rooms", room, "files"]) => files::upload(state, req, room).await,
        (&Method::GET, ["rooms", room, "files", id]) => {
            files::download(state, req, room, id, Part::Bytes).await
        }
        (&Method::GET, ["rooms", room, "files", id, "thumbnail"]) => {
            files::download(state, req, room, id, Part::Thumbnail).await
        }
        (&Method::GET, ["rooms", room, "files", id, "info"]) => {
            files::download(state, req, room, id, Part::Info).await
        }
        (_, ["admin", ..]) => return super::admin::handle(state, req, &seg[1..]).await,
        (_, ["e2ee", ..]) => return super::e2ee::handle(state, req, &seg[1..]).await,
        (
            _,
            ["auth", _]
            | ["users", "me"]
            | ["users", "me", "blocks"]
            | ["users", "me", "blocks", _]
            | ["rooms"]
            | ["rooms", _]
            | ["rooms", _, "members"]
            | ["rooms", _, "members", _]
            | ["dm", _]
            | ["push", "targets" | "settings" | "vapid"]
            | ["push", "targets", _]
            | ["rooms", _, "messages"]
            | ["search"]
            | ["rooms", _, "messages", _, "edits" | "thread"]
            | ["rooms", _, "messages", _, "thread", "read"]
            | ["rooms", _, "files"]
            | ["rooms", _, "files", _]
            | ["rooms", _, "files", _, "thumbnail" | "info"]
            | ["rooms", _, "bans" | "mutes"]
            | ["rooms", _, "bans" | "mutes", _],
        ) => Err(ApiError::new(ErrorCode::BadRequest, "method not allowed here").into()),
        _ => Err(ApiError::not_found("no such endpoint").into()),
    };
    result.unwrap_or_else(Refusal::response)
}

/// Accounts of an external issuer are the issuer's: no built-in account is made or signed
/// in to here (a password checked for nothing would only answer who has one).
fn built_in_accounts(state: &AppState) -> Result<(), Refusal> {
    if state.tokens.issues() {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "this gateway takes an external issuer's tokens: sign up and log in there",
    )
    .into())
}

async fn register(state: &AppState, req: Request<Incoming>) -> Answer {
    built_in_accounts(state)?;
    let ip = super::client_ip(&req);
    let mut creds: Credentials = body(req).await?;
    // The gateway's word only: a client's `ip` is replaced (and a login's fields dropped).
    creds.ip = Some(ip.to_string());
    creds.known_device = None;
    creds.device = None;
    name("username", &creds.username)?;
    if creds.password.chars().count() < 8 {
        return Err(ApiError::bad_request("password must have at least 8 characters").into());
    }
    if creds.password.len() > 1024 {
        return Err(ApiError::bad_request("password is longer than 1024 bytes").into());
    }
    if creds
        .admin_token
        .as_ref()
        .is_some_and(|t| t.len() > chatmesh_protocol::admin::MAX_ADMIN_TOKEN_BYTES)
    {
        return Err(ApiError::bad_request("admin_token is too long").into());
    }
    state.throttle.register_allowed(ip).await?;
    let user = state
        .services
        .ask::<Register>(&creds.username, &creds)
        .await
        .inspect_err(password_queue_full)?;
    Ok(reply::json(201, &user))
}

async fn login(state: &AppState, req: Request<Incoming>) -> Answer {
    built_in_accounts(state)?;
    let ip = super::client_ip(&req);
    let mut creds: Credentials = body(req).await?;
    // Only the gateway names addresses (a login's is not used by the worker) and says
    // whether a device is known.
    creds.ip = None;
    creds.known_device = None;
    let unauthorized = || ApiError::new(ErrorCode::Unauthorized, "wrong user name or password");
    if validate_name("username", &creds.username).is_err() || creds.password.len() > 1024 {
        return Err(unauthorized().into());
    }
    // A device token of another account, expired or not ours is no device: the login goes
    // the way of any other.
    let device = known_device(state, &creds).await;
    creds.device = None;
    // Held until the outcome is recorded.
    let attempt = match &device {
        Some(d) => {
            state
                .throttle
                .device_login_allowed(ip, &d.id, &d.user)
                .await?
        }
        None => state.throttle.login_allowed(ip, &creds.username).await?,
    };
    creds.known_device = device.as_ref().map(|d| d.id.clone());
    let outcome = state.services.ask::<Login>(&creds.username, &creds).await;
    let (t, user) = (&state.throttle, creds.username.as_str());
    match (&device, &outcome) {
        (Some(d), Err(e)) if e.code == ErrorCode::Unauthorized => {
            t.device_login_failed(&d.id, user).await;
        }
        (Some(d), Ok(_)) => t.device_login_succeeded(&d.id, user).await,
        (Some(_), Err(_)) => {}
        (None, Err(e)) if e.code == ErrorCode::Unauthorized => t.login_failed(ip, user).await,
        // The right password (for an account a server admin disabled: `forbidden`).
        (None, Ok(_)) => t.login_succeeded(ip, user).await,
        (None, Err(e)) if e.code == ErrorCode::Forbidden => t.login_succeeded(ip, user).await,
        (None, Err(_)) => t.login_unanswered(user).await,
    }
    drop(attempt);
    let user = match outcome {
        Ok(user) => user,
        Err(e) if e.code == ErrorCode::Unauthorized => return Err(unauthorized().into()),
        // The right password for an account a server admin disabled (admin API).
        Err(e) if e.code == ErrorCode::Forbidden => return Err(e.into()),
        Err(e) if matches!(e.code, ErrorCode::Unavailable | ErrorCode::RateLimited) => {
            password_queue_full(&e);
            return Err(e.into());
        }
        Err(_) => return Err(unauthorized().into()),
    };
    let (token, expires_at) = state.tokens.issue(&user.user, user.gen).ok_or_else(|| {
        ApiError::bad_request("this gateway accepts tokens of an external issuer only")
    })?;
    // A device token each login: a known device keeps its id, a new one gets one (a token
    // brought back stays valid until it expires, or until the account's generation moves).
    let device =
        state
            .tokens
            .issue_device(&user.user, user.gen, device.as_ref().map(|d| d.id.as_str()));
    Ok(reply::json(
        200,
        &serde_json::json!({ "token": token, "expires_at": expires_at, "device": device }),
    ))
}

/// Longest device token looked at (the ones this gateway issues are about 250 bytes).
const MAX_DEVICE_TOKEN_BYTES: usize = 1024;

/// The known device a login comes from: its device token is this deployment's, unexpired,
/// of the account logging in, and issued at the account's current token generation (a
/// `logout_all` or a password change since makes the device unknown again). Any other token
/// is no device: the login goes the way of any other.
async fn known_device(state: &AppState, creds: &Credentials) -> Option<crate::auth::Device> {
    let token = creds.device.as_deref()?;
    if token.len() > MAX_DEVICE_TOKEN_BYTES {
        return None;
    }
    let device = state.tokens.verify_device(token)?;
    if device.user != creds.username {
        return None;
    }
    let at = crate::auth::Identity {
        user: device.user.clone(),
        expires_at: 0,
        gen: Some(device.gen),
        kid: None,
    };
    // Bounded: with the workers slow or away the device is unknown (the login's own
    // request then finds out), rather than the login waiting twice.
    match tokio::time::timeout(DEVICE_CHECK_WAIT, state.revocation.check(&at)).await {
        Ok(Ok(())) => Some(device),
        Ok(Err(_)) => None,
        Err(_) => {
            metrics::counter!("chatmesh_known_device_checks_timed_out_total").increment(1);
            None
        }
    }
}

/// How long a login waits to learn whether its device token is still current.
const DEVICE_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Revokes every token of the caller issued so far, this one included (built-in tokens).
async fn logout_all(state: &AppState, req: Request<Incoming>) -> Answer {
    let identity = caller_identity(state, &req).await?;
    if identity.gen.is_none() {
        return Err(ApiError::bad_request(
            "tokens of an external issuer are revoked by that issuer",
        )
        .into());
    }
    let req = UserRequest {
        user: identity.user,
    };
    let gen = state.services.ask::<LogoutAll>(&req.user, &req).await?;
    // The worker's event does the same on every gateway; this one need not wait for it.
    state.revocation.bumped(&req.user, gen.gen).await;
    Ok(reply::empty(204))
}

#[derive(Deserialize)]
struct NewRoom {
    room: String,
    kind: RoomKind,
    /// Extension (regions): the room's home region, or `"here"` for this gateway's.
    #[serde(default)]
    home: Option<String>,
}

async fn create_room(state: &AppState, req: Request<Incoming>) -> Answer {
    let actor = caller(state, &req).await?;
    let mut new: NewRoom = body(req).await?;
    name("room", &new.room)?;
    if let Some(home) = new.home.take() {
        new.room = homed(&state.mesh, &home, &new.room)?;
    }
    if new.kind == RoomKind::Dm {
        return Err(ApiError::bad_request(
            "kind must be public, private or e2ee (DMs: POST /v1/dm/{user})",
        )
        .into());
    }
    state.throttle.room_allowed(&actor).await?;
    let req = CreateRoomRequest {
        room: new.room,
        kind: new.kind,
        actor,
    };
    let info = state.services.ask::<CreateRoom>(&req.room, &req).await?;
    Ok(reply::json(201, &info))
}

/// `room` homed in `home` (`"here"`: this gateway's `mesh.region`): `<region>~<room>`. A
/// gateway without a region takes `"here"` as the room id itself.
fn homed(mesh: &chatmesh_protocol::MeshConfig, home: &str, room: &str) -> Result<String, ApiError> {
    let region = match (home, mesh.region.as_deref()) {
        // One region (or a gateway not told its own): "here" is where every room lives.
        ("here", None) => return Ok(room.to_owned()),
        ("here", Some(r)) => r,
        (r, _) => r,
    };
    if !mesh.regions.iter().any(|x| x == region) {
        return Err(ApiError::bad_request(format!(
            "home: {region:?} is not a region of this deployment"
        )));
    }
    if chatmesh_protocol::subjects::home_region(room).is_some() {
        return Err(ApiError::bad_request(
            "a room id with a home region takes no \"home\"",
        ));
    }
    let id = format!("{region}{}{room}", chatmesh_protocol::subjects::HOME_SEP);
    name("room", &id)?;
    Ok(id)
}

async fn list_rooms(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let mut after = None;
    for (k, v) in query_pairs(&req) {
        match k {
            "after" => {
                // A room id, which may name its home region (`us~general`).
                name("room", v)?;
                after = Some(v);
            }
            _ => return Err(ApiError::bad_request(format!("unknown parameter {k}")).into()),
        }
    }
    let list = state.services.rooms_list(&user, after).await?;
    Ok(reply::json(200, &list))
}

#[derive(Deserialize)]
struct NewMember {
    user: String,
    #[serde(default = "member")]
    role: Role,
}

fn member() -> Role {
    Role::Member
}

async fn add_member(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let actor = caller(state, &req).await?;
    name("room", room)?;
    let new: NewMember = body(req).await?;
    name("user", &new.user)?;
    if new.role == Role::Owner {
        return Err(ApiError::bad_request("role must be member or admin").into());
    }
    if new.user != actor {
        super::blocks::refuse_blocked_add(state, &new.user, &actor).await?;
    }
    let self_add = new.user == actor;
    let req = AddMemberRequest {
        room: room.to_owned(),
        user: new.user,
        role: new.role,
        actor,
        invited_at: None,
    };
    if !self_add {
        match super::invitations::invite_instead(state, &req).await? {
            None => {}
            Some(None) => return Ok(reply::empty(204)),
            Some(Some(invitation)) => {
                let answer = serde_json::json!({ "invited": true, "invitation": invitation });
                return Ok(reply::json(202, &answer));
            }
        }
    }
    state.services.ask::<AddMember>(room, &req).await?;
    Ok(reply::empty(204))
}

async fn remove_member(state: &AppState, req: Request<Incoming>, room: &str, user: &str) -> Answer {
    let actor = caller(state, &req).await?;
    name("room", room)?;
    name("user", user)?;
    let req = RemoveMemberRequest {
        room: room.to_owned(),
        user: user.to_owned(),
        actor,
    };
    state.services.ask::<RemoveMember>(room, &req).await?;
    Ok(reply::empty(204))
}

async fn dm(state: &AppState, req: Request<Incoming>, other: &str) -> Answer {
    let me = caller(state, &req).await?;
    name("user", other)?;
    if me == other {
        return Err(ApiError::bad_request("a DM needs two different users").into());
    }
    state.throttle.dm_allowed(&me).await?;
    let req = DmRequest {
        a: me.clone(),
        b: other.to_owned(),
    };
    let room = state.services.ask::<OpenDm>(&me, &req).await?;
    Ok(reply::json(200, &room))
}

/// `DELETE /v1/dm/{user}` (extension): closes the caller's DM with `user` (see
/// `chatmesh_workers` `service::dms`).
async fn close_dm(state: &AppState, req: Request<Incoming>, other: &str) -> Answer {
    let me = caller(state, &req).await?;
    name("user", other)?;
    let req = DmRequest {
        a: me.clone(),
        b: other.to_owned(),
    };
    state.services.ask::<CloseDm>(&me, &req).await?;
    Ok(reply::empty(204))
}

async fn messages(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let user = caller(state, &req).await?;
    name("room", room)?;
    let (before, limit) = page_params(&req, "before")?;
    let page = state
        .access
        .read_history(&user, room, before, limit)
        .await?;
    Ok(reply::json(
        200,
        &serde_json::json!({ "messages": page.messages, "more": page.more }),
    ))
}

/// The versions of an edited message (extension), for whoever may read the room's history.
async fn edits(state: &AppState, req: Request<Incoming>, room: &str, seq: &str) -> Answer {
    let user = caller(state, &req).await?;
    name("room", room)?;
    let seq = seq
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request("the message seq must be a number"))?;
    let access = state.access.get(room, &user).await?;
    if !access.can_read() {
        return Err(ApiError::forbidden("not a member of this room").into());
    }
    let req = EditsRequest {
        room: room.to_owned(),
        seq,
    };
    let history = state.services.ask::<GetEdits>(room, &req).await?;
    Ok(reply::json(200, &history))
}

/// `/readyz`: 200 when [`AppState::readiness`] holds, 503 with the reason otherwise.
pub async fn readyz(state: &AppState) -> Response<Body> {
    match state.readiness().await {
        Ok(()) => reply::text(200, "ready"),
        Err(why) => reply::text(503, why),
    }
}

#[cfg(test)]
mod tests {
    use super::homed;
    use chatmesh_protocol::MeshConfig;

    #[test]
    fn a_room_is_homed_here_or_in_a_named_region() {
        let mesh = MeshConfig {
            regions: vec!["eu".into(), "us".into()],
            region: Some("us".into()),
            ..Default::default()
        };
        assert_eq!(homed(&mesh, "here", "general").unwrap(), "us~general");
        assert_eq!(homed(&mesh, "eu", "general").unwrap(), "eu~general");
        assert!(homed(&mesh, "ap", "general").is_err());
        assert!(homed(&mesh, "eu", "us~general").is_err());
        assert!(
            homed(&mesh, "eu", &"a".repeat(62)).is_err(),
            "too long with the prefix"
        );
        let one = MeshConfig::default();
        assert_eq!(homed(&one, "here", "general").unwrap(), "general");
        assert!(homed(&one, "eu", "general").is_err());
    }
}
