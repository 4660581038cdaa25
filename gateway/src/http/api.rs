//! The `/v1` HTTP API of protocol v1: accounts, rooms, members, DMs and history.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use chatmesh_protocol::frames::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
use chatmesh_protocol::service::{
    AddMember, AddMemberRequest, CreateRoom, CreateRoomRequest, Credentials, DmRequest, ListRooms,
    ListRoomsRequest, Login, OpenDm, Register, RemoveMember, RemoveMemberRequest, Role, RoomKind,
};
use chatmesh_protocol::{validate_name, ApiError, ErrorCode};

use super::reply::{self, Body};
use crate::state::AppState;

/// Largest JSON request body.
const MAX_BODY: usize = 64 * 1024;

type Answer = Result<Response<Body>, ApiError>;

/// Routes `/v1/...` (segments after `v1`).
pub async fn handle(state: &AppState, req: Request<Incoming>, seg: &[&str]) -> Response<Body> {
    let method = req.method().clone();
    let result = match (&method, seg) {
        (&Method::POST, ["auth", "register"]) => register(state, req).await,
        (&Method::POST, ["auth", "login"]) => login(state, req).await,
        (&Method::POST, ["rooms"]) => create_room(state, req).await,
        (&Method::GET, ["rooms"]) => list_rooms(state, req).await,
        (&Method::POST, ["rooms", room, "members"]) => add_member(state, req, room).await,
        (&Method::DELETE, ["rooms", room, "members", user]) => {
            remove_member(state, req, room, user).await
        }
        (&Method::POST, ["dm", user]) => dm(state, req, user).await,
        (&Method::GET, ["rooms", room, "messages"]) => messages(state, req, room).await,
        (
            _,
            ["auth", _]
            | ["rooms"]
            | ["rooms", _, "members"]
            | ["rooms", _, "members", _]
            | ["dm", _]
            | ["rooms", _, "messages"],
        ) => Err(ApiError::new(
            ErrorCode::BadRequest,
            "method not allowed here",
        )),
        _ => Err(ApiError::not_found("no such endpoint")),
    };
    result.unwrap_or_else(|e| reply::error(&e))
}

/// The user named by the request's bearer token.
fn caller(state: &AppState, req: &Request<Incoming>) -> Result<String, ApiError> {
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
    let token = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "expected a bearer token"))?;
    state
        .tokens
        .verify(token.trim())
        .map(|i| i.user)
        .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "invalid or expired token"))
}

async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    use hyper::body::Body as _;
    let too_large = || ApiError::new(ErrorCode::TooLarge, "request body too large");
    // A declared Content-Length over the limit is refused before a byte of it is read.
    if req.body().size_hint().lower() > MAX_BODY as u64 {
        return Err(too_large());
    }
    let deadline = req
        .extensions()
        .get::<super::BodyDeadline>()
        .cloned()
        .unwrap_or_default();
    let collected = deadline
        .run(Limited::new(req.into_body(), MAX_BODY).collect())
        .await?
        .map_err(|_| too_large())?;
    serde_json::from_slice(&collected.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn name(what: &'static str, value: &str) -> Result<(), ApiError> {
    validate_name(what, value).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn register(state: &AppState, req: Request<Incoming>) -> Answer {
    let creds: Credentials = body(req).await?;
    name("username", &creds.username)?;
    if creds.password.chars().count() < 8 {
        return Err(ApiError::bad_request(
            "password must have at least 8 characters",
        ));
    }
    if creds.password.len() > 1024 {
        return Err(ApiError::bad_request("password is longer than 1024 bytes"));
    }
    let user = state
        .services
        .ask::<Register>(&creds.username, &creds)
        .await?;
    Ok(reply::json(201, &user))
}

async fn login(state: &AppState, req: Request<Incoming>) -> Answer {
    let creds: Credentials = body(req).await?;
    let unauthorized = || ApiError::new(ErrorCode::Unauthorized, "wrong user name or password");
    if validate_name("username", &creds.username).is_err() || creds.password.len() > 1024 {
        return Err(unauthorized());
    }
    let user = state
        .services
        .ask::<Login>(&creds.username, &creds)
        .await
        .map_err(|e| {
            if e.code == ErrorCode::Unavailable {
                e
            } else {
                unauthorized()
            }
        })?;
    let (token, expires_at) = state.tokens.issue(&user.user).ok_or_else(|| {
        ApiError::bad_request("this gateway accepts tokens of an external issuer only")
    })?;
    Ok(reply::json(
        200,
        &serde_json::json!({ "token": token, "expires_at": expires_at }),
    ))
}

#[derive(Deserialize)]
struct NewRoom {
    room: String,
    kind: RoomKind,
}

async fn create_room(state: &AppState, req: Request<Incoming>) -> Answer {
    let actor = caller(state, &req)?;
    let new: NewRoom = body(req).await?;
    name("room", &new.room)?;
    if new.kind == RoomKind::Dm {
        return Err(ApiError::bad_request(
            "kind must be public or private (DMs: POST /v1/dm/{user})",
        ));
    }
    let req = CreateRoomRequest {
        room: new.room,
        kind: new.kind,
        actor,
    };
    let info = state.services.ask::<CreateRoom>(&req.room, &req).await?;
    Ok(reply::json(201, &info))
}

async fn list_rooms(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req)?;
    let req = ListRoomsRequest { user };
    let list = state.services.ask::<ListRooms>(&req.user, &req).await?;
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
    let actor = caller(state, &req)?;
    name("room", room)?;
    let new: NewMember = body(req).await?;
    name("user", &new.user)?;
    if new.role == Role::Owner {
        return Err(ApiError::bad_request("role must be member or admin"));
    }
    let req = AddMemberRequest {
        room: room.to_owned(),
        user: new.user,
        role: new.role,
        actor,
    };
    state.services.ask::<AddMember>(room, &req).await?;
    Ok(reply::empty(204))
}

async fn remove_member(state: &AppState, req: Request<Incoming>, room: &str, user: &str) -> Answer {
    let actor = caller(state, &req)?;
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
    let me = caller(state, &req)?;
    name("user", other)?;
    if me == other {
        return Err(ApiError::bad_request("a DM needs two different users"));
    }
    let req = DmRequest {
        a: me.clone(),
        b: other.to_owned(),
    };
    let room = state.services.ask::<OpenDm>(&me, &req).await?;
    Ok(reply::json(200, &room))
}

async fn messages(state: &AppState, req: Request<Incoming>, room: &str) -> Answer {
    let user = caller(state, &req)?;
    name("room", room)?;
    let (mut before, mut limit) = (None, DEFAULT_HISTORY_LIMIT);
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{k} must be a number")))
        };
        match k {
            "before" => before = Some(number()?),
            "limit" => limit = u32::try_from(number()?).unwrap_or(u32::MAX),
            _ => return Err(ApiError::bad_request(format!("unknown parameter {k}"))),
        }
    }
    if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 100"));
    }
    let page = crate::access::read_history(state, &user, room, before, limit).await?;
    Ok(reply::json(
        200,
        &serde_json::json!({ "messages": page.messages, "more": page.more }),
    ))
}

/// `/readyz`: 200 when [`AppState::readiness`] holds, 503 with the reason otherwise.
pub async fn readyz(state: &AppState) -> Response<Body> {
    match state.readiness().await {
        Ok(()) => reply::text(200, "ready"),
        Err(why) => reply::text(503, why),
    }
}
