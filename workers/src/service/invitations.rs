//! Invitations (extension, `chatmesh_protocol::invitations`): a user who takes invitations
//! (`adds: invitations`, kept in its account record) is not added to rooms by others; the
//! gateway keeps an invitation here instead, with the accounts, once the room's worker has
//! said the inviter may add the user (`member_invite`, `members.rs`). A user holds at most
//! [`MAX_PENDING`] invitations; a new one tells the user's sessions (`invitation` frames,
//! through `chat.user.<user>` with header [`INVITATION_EVENT`]). Accepting is the gateway's
//! add in the inviter's name, so an inviter who lost the right to add cannot be accepted.

use chatmesh_protocol::invitations::{
    Adds, AddsSetting, Invitation, InvitationPage, InvitationQuery, InvitationsRequest,
    InviteRequest, SetAddsRequest, INVITATION_EVENT, MAX_INVITATIONS_PAGE, MAX_PENDING,
};
use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::service::{Done, Role, UserRequest};
use chatmesh_protocol::subjects::user_subject;
use chatmesh_protocol::ApiError;

use super::{valid, Service, LOCK_USER};
use crate::model::records::InvitationRecord;
use crate::model::Model;
use crate::store::WriteBatch;

/// After an invitation replaced one less than this before it (ms), it is not replaced again
/// until this after it.
const REPLACE_EVERY_MS: u64 = 60_000;

impl Service {
    /// Who may add `user` to rooms; `not_found` without an account.
    pub async fn adds_get(&self, req: UserRequest) -> Result<AddsSetting, ApiError> {
        valid("user name", &req.user)?;
        let rec = self.model().user(&req.user).await?;
        let rec = rec.ok_or_else(|| ApiError::not_found("no such account"))?;
        Ok(setting(rec.invitations_only))
    }

    /// Sets who may add `user` to rooms.
    pub async fn adds_set(&self, req: SetAddsRequest) -> Result<AddsSetting, ApiError> {
        valid("user name", &req.user)?;
        let only = req.adds == Adds::Invitations;
        let _guard = self.inner.locks.lock(LOCK_USER, &req.user, "").await?;
        let Some(mut rec) = self.model().user(&req.user).await? else {
            return Err(ApiError::not_found("no such account"));
        };
        if rec.invitations_only != only {
            rec.invitations_only = only;
            let mut batch = WriteBatch::new();
            Model::put_user(&mut batch, &req.user, &rec);
            self.model().write(batch).await?;
        }
        Ok(setting(only))
    }

    /// Keeps an invitation (replacing one to the same room by someone else or with another
    /// role; once soon after it was made, then at most once a minute: `rate_limited`; the
    /// same one again changes nothing) and
    /// tells the user's sessions; `conflict` when the user holds [`MAX_PENDING`] others.
    pub async fn invitation_put(&self, req: InviteRequest) -> Result<Invitation, ApiError> {
        valid("user name", &req.user)?;
        valid("room", &req.room)?;
        valid("user name", &req.by)?;
        if req.role == Role::Owner {
            return Err(ApiError::bad_request("a room has one owner: its creator"));
        }
        let mut rec = InvitationRecord {
            by: req.by,
            role: req.role,
            ts: now_ms(),
            quick: false,
        };
        {
            let _guard = self
                .inner
                .locks
                .lock(LOCK_USER, &req.user, "invitations")
                .await?;
            if self.model().user(&req.user).await?.is_none() {
                return Err(ApiError::not_found("no such user"));
            }
            let existing = self.model().invitation(&req.user, &req.room).await?;
            if let Some(same) = existing
                .as_ref()
                .filter(|e| e.by == rec.by && e.role == rec.role)
            {
                // The same invitation again: nothing to store or tell.
                return Ok(invitation(req.room, same.clone()));
            }
            // Each replacement tells the user's sessions: one soon after the invitation (a
            // role corrected) is taken, then at most one a minute, or inviters switching
            // roles (or taking turns) would flood the user with frames.
            if let Some(previous) = &existing {
                let wait = (previous.ts + REPLACE_EVERY_MS).saturating_sub(rec.ts);
                if wait > 0 && previous.quick {
                    return Err(ApiError::rate_limited_for(
                        "this user's invitation to this room was replaced less than a minute \
                         ago",
                        std::time::Duration::from_millis(wait),
                    ));
                }
                rec.quick = wait > 0;
            }
            if existing.is_none() {
                let held = self
                    .model()
                    .invitations_after(&req.user, None, MAX_PENDING)
                    .await?;
                if held.len() >= MAX_PENDING {
                    return Err(ApiError::conflict(format!(
                        "this user holds {MAX_PENDING} invitations already: it must accept or \
                         decline one first"
                    )));
                }
            }
            let mut batch = WriteBatch::new();
            Model::put_invitation(&mut batch, &req.user, &req.room, &rec);
            self.model().write(batch).await?;
        }
        let invitation = invitation(req.room, rec);
        if let Some(events) = &self.inner.events {
            let body = serde_json::to_vec(&invitation).unwrap_or_default();
            events
                .publish_kind(user_subject(&req.user), Some(INVITATION_EVENT), body.into())
                .await;
        }
        Ok(invitation)
    }

    /// `user`'s invitation to `room`, or `not_found`.
    pub async fn invitation_get(&self, req: InvitationQuery) -> Result<Invitation, ApiError> {
        valid("user name", &req.user)?;
        valid("room", &req.room)?;
        match self.model().invitation(&req.user, &req.room).await? {
            Some(rec) => Ok(invitation(req.room, rec)),
            None => Err(ApiError::not_found("no invitation to this room")),
        }
    }

    /// Drops `user`'s invitation to `room` (declined, or accepted and added); `not_found`
    /// without one.
    pub async fn invitation_delete(&self, req: InvitationQuery) -> Result<Done, ApiError> {
        valid("user name", &req.user)?;
        valid("room", &req.room)?;
        let _guard = self
            .inner
            .locks
            .lock(LOCK_USER, &req.user, "invitations")
            .await?;
        if self
            .model()
            .invitation(&req.user, &req.room)
            .await?
            .is_none()
        {
            return Err(ApiError::not_found("no invitation to this room"));
        }
        let mut batch = WriteBatch::new();
        Model::delete_invitation(&mut batch, &req.user, &req.room);
        self.model().write(batch).await?;
        Ok(Done {})
    }

    /// A page of `user`'s invitations, by room.
    pub async fn invitations_list(
        &self,
        req: InvitationsRequest,
    ) -> Result<InvitationPage, ApiError> {
        valid("user name", &req.user)?;
        if let Some(after) = &req.after {
            valid("room", after)?;
        }
        if !(1..=MAX_INVITATIONS_PAGE).contains(&req.limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_INVITATIONS_PAGE}"
            )));
        }
        let limit = req.limit as usize;
        let found = self
            .model()
            .invitations_after(&req.user, req.after.as_deref(), limit + 1)
            .await?;
        let (found, more) = super::page(found, limit);
        let invitations = found
            .into_iter()
            .map(|(room, rec)| invitation(room, rec))
            .collect();
        Ok(InvitationPage { invitations, more })
    }
}

fn setting(invitations_only: bool) -> AddsSetting {
    let adds = match invitations_only {
        true => Adds::Invitations,
        false => Adds::Anyone,
    };
    AddsSetting { adds }
}

fn invitation(room: String, rec: InvitationRecord) -> Invitation {
    Invitation {
        room,
        by: rec.by,
        role: rec.role,
        ts: rec.ts,
    }
}
