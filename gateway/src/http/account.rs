//! The caller's own account: `GET`/`PATCH /v1/users/me` (profile: display name) and
//! `POST /v1/auth/password` (change the password).
//!
//! A password change is a login in disguise for a thief holding a stolen token, so it passes
//! the login throttles of [`crate::throttle`]: a wrong old password counts as a failed login
//! of (IP, account), a right one clears it. It answers 403 `forbidden`, not 401: the token is
//! fine, and a client must not take it for an expired session. On success every token of the
//! user issued so far is revoked (open sessions close with 4001, as after `logout_all`) and
//! the answer carries a fresh token, so the caller stays logged in.

use hyper::body::Incoming;
use hyper::Request;
use serde::Deserialize;

use chatmesh_protocol::service::{
    ChangePassword, ChangePasswordRequest, GetProfile, SetProfile, SetProfileRequest, UserRequest,
};
use chatmesh_protocol::text::clean_display_name;
use chatmesh_protocol::ApiError;

use super::reply;
use super::request::{ask_with_password, body, caller, caller_identity, patch_field, Answer};
use crate::state::AppState;

/// Longest password accepted, in bytes (as at login and registration).
const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest new password, in characters.
const MIN_PASSWORD_CHARS: usize = 8;

pub(super) async fn profile(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let req = UserRequest { user };
    let profile = state.services.ask::<GetProfile>(&req.user, &req).await?;
    Ok(reply::json(200, &profile))
}

pub(super) async fn set_profile(state: &AppState, req: Request<Incoming>) -> Answer {
    let user = caller(state, &req).await?;
    let display_name = patch_field(body(req).await?, "display_name")?;
    let display_name = match display_name {
        Some(text) => {
            clean_display_name(&text).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        None => None,
    };
    let req = SetProfileRequest { user, display_name };
    let profile = state.services.ask::<SetProfile>(&req.user, &req).await?;
    Ok(reply::json(200, &profile))
}

#[derive(Deserialize)]
struct PasswordChange {
    old_password: String,
    new_password: String,
}

pub(super) async fn change_password(state: &AppState, req: Request<Incoming>) -> Answer {
    let ip = super::client_ip(&req);
    let identity = caller_identity(state, &req).await?;
    if identity.gen.is_none() {
        return Err(ApiError::bad_request(
            "the passwords of an external issuer's users are changed at that issuer",
        )
        .into());
    }
    let change: PasswordChange = body(req).await?;
    let user = identity.user;
    if change.new_password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_request(format!(
            "the new password must have at least {MIN_PASSWORD_CHARS} characters"
        ))
        .into());
    }
    if change.new_password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(format!(
            "the new password must have at most {MAX_PASSWORD_BYTES} bytes"
        ))
        .into());
    }
    let wrong = "the old password is wrong";
    if change.old_password.len() > MAX_PASSWORD_BYTES {
        // Counted like any wrong password, so its length tells nothing.
        let _attempt = state.throttle.login_allowed(ip, &user).await?;
        state.throttle.login_failed(ip, &user).await;
        return Err(ApiError::forbidden(wrong).into());
    }
    let req = ChangePasswordRequest {
        user: user.clone(),
        old_password: change.old_password,
        new_password: change.new_password,
    };
    let gen = ask_with_password::<ChangePassword>(state, ip, &user, &req, wrong).await?;
    // The worker's event does the same on every gateway; this one need not wait for it.
    state.revocation.bumped(&user, gen.gen).await;
    let (token, expires_at) = state
        .tokens
        .issue(&user, gen.gen)
        .ok_or_else(|| ApiError::bad_request("this gateway issues no tokens"))?;
    Ok(reply::json(
        200,
        &serde_json::json!({ "token": token, "expires_at": expires_at }),
    ))
}
