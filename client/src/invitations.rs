//! Invitations over HTTP (extension): who may add the caller to rooms, and the invitations
//! the caller holds when it takes invitations instead of adds.

use chatmesh_protocol::invitations::{Adds, AddsSetting, Invitation, InvitationPage};
use chatmesh_protocol::service::Role;
use serde::Deserialize;
use serde_json::json;

use crate::error::Result;
use crate::http::Http;

/// What an add did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// The user is a member (or its role changed).
    Member,
    /// The user takes invitations: it is invited, and a member once it accepts.
    Invited(Invitation),
}

impl Http {
    /// `POST /v1/rooms/{room}/members` (owner or admin only): adds `user`, or invites it
    /// when it takes invitations (202).
    pub async fn add_or_invite(&self, room: &str, user: &str, admin: bool) -> Result<Added> {
        #[derive(Deserialize)]
        struct Answer {
            invitation: Invitation,
        }
        let role = if admin { Role::Admin } else { Role::Member };
        let path = format!("/v1/rooms/{room}/members");
        let body = json!({"user": user, "role": role});
        let resp = self.send(reqwest::Method::POST, &path, Some(body)).await?;
        if resp.status() == reqwest::StatusCode::ACCEPTED {
            let answer: Answer = crate::download::json(resp).await?;
            return Ok(Added::Invited(answer.invitation));
        }
        Ok(Added::Member)
    }

    /// `GET /v1/users/me/adds`: who may add the caller to rooms.
    pub async fn adds(&self) -> Result<Adds> {
        let setting: AddsSetting = self
            .call(reqwest::Method::GET, "/v1/users/me/adds", None)
            .await?;
        Ok(setting.adds)
    }

    /// `PUT /v1/users/me/adds`: sets who may add the caller to rooms.
    pub async fn set_adds(&self, adds: Adds) -> Result<Adds> {
        let body = json!({ "adds": adds });
        let setting: AddsSetting = self
            .call(reqwest::Method::PUT, "/v1/users/me/adds", Some(body))
            .await?;
        Ok(setting.adds)
    }

    /// `GET /v1/users/me/invitations`: up to `limit` (1–200) of the caller's invitations
    /// after room `after`, by room.
    pub async fn invitations(&self, after: Option<&str>, limit: u32) -> Result<InvitationPage> {
        let mut path = format!("/v1/users/me/invitations?limit={limit}");
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// `POST /v1/users/me/invitations/{room}`: accepts the invitation; the caller is a member
    /// with its role (`Forbidden`, `NotFound` or `Conflict` when it was no longer valid:
    /// it is gone then).
    pub async fn accept_invitation(&self, room: &str) -> Result<()> {
        let path = format!("/v1/users/me/invitations/{room}");
        self.call_empty(reqwest::Method::POST, &path, None).await
    }

    /// `DELETE /v1/users/me/invitations/{room}`: declines the invitation.
    pub async fn decline_invitation(&self, room: &str) -> Result<()> {
        let path = format!("/v1/users/me/invitations/{room}");
        self.call_empty(reqwest::Method::DELETE, &path, None).await
    }
}
