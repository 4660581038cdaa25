//! Adding and removing members. The rules, in one place for every gateway:
//!
//! - only the owner or an admin adds members; only the OWNER grants or takes away admin
//!   (an admin may not mint or demote admins, so a rogue admin cannot take over a room);
//!   nobody grants owner: a room has exactly one, its creator;
//! - a member may remove itself; the owner or an admin may remove a member, and only the
//!   owner may remove an admin; nobody removes the owner;
//! - a DM has exactly its two users: no adds, no removes;
//! - a user banned from the room is not added (`conflict`: unban it first);
//! - an invitation made before someone else removed the user from the room adds nobody
//!   (`forbidden`): a kick voids it;
//! - a user who takes invitations is not added by others (`member_invite`): the checks are
//!   the same, and the gateway keeps an invitation instead (`invitations.rs`);
//! - decisions read roles from the store under the room's lock, never from a cache.

use chatmesh_protocol::invitations::InviteCheck;
use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::service::{AddMemberRequest, Done, RemoveMemberRequest, Role, RoomKind};
use chatmesh_protocol::ApiError;

use super::{valid, Service, LOCK_ROOM};
use crate::model::Model;
use crate::store::WriteBatch;

impl Service {
    /// Adds `user` to the room with `role`, or changes its role.
    pub async fn member_add(&self, req: AddMemberRequest) -> Result<Done, ApiError> {
        self.add_or_invite(req, false).await.map(|_| Done {})
    }

    /// An add of a user who takes invitations (invitations extension): the same checks as
    /// [`Self::member_add`]; a member's role changes as asked, anyone else is not added but
    /// is to be invited (`invite: true`, the gateway keeps the invitation).
    pub async fn member_invite(&self, req: AddMemberRequest) -> Result<InviteCheck, ApiError> {
        self.add_or_invite(req, true).await
    }

    async fn add_or_invite(
        &self,
        req: AddMemberRequest,
        invite: bool,
    ) -> Result<InviteCheck, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.user)?;
        valid("user name", &req.actor)?;
        if self.room_meta(&req.room).await?.kind == RoomKind::Dm {
            return Err(ApiError::forbidden("a DM has exactly its two users"));
        }
        if req.role == Role::Owner {
            return Err(ApiError::bad_request("a room has one owner: its creator"));
        }
        // Asked before the room's lock (with regional workers the primary answers it; an
        // account is never deleted), told only to whoever may add members.
        let exists = self.user_exists(&req.user).await?;
        {
            let _guard = self.inner.locks.lock(LOCK_ROOM, &req.room, "").await?;
            self.room_still_there(&req.room).await?;
            let actor = self.model().role(&req.room, &req.actor).await?;
            match (actor, req.role) {
                (Some(Role::Owner), _) | (Some(Role::Admin), Role::Member) => {}
                (Some(Role::Admin), _) => {
                    return Err(ApiError::forbidden("only the owner may grant admin"))
                }
                _ => {
                    return Err(ApiError::forbidden(
                        "only the owner or an admin may add members",
                    ))
                }
            }
            if !exists {
                return Err(ApiError::not_found("no such user"));
            }
            if self.model().ban(&req.room, &req.user).await?.is_some() {
                return Err(ApiError::conflict(
                    "the user is banned from this room: unban it first",
                ));
            }
            if let Some(invited) = req.invited_at {
                let removed = self.model().removed_at(&req.room, &req.user).await?;
                if removed.is_some_and(|removed| removed >= invited) {
                    return Err(ApiError::forbidden(
                        "the user was removed from the room after the invitation was made",
                    ));
                }
            }
            let kept = InviteCheck { invite: false };
            match self.model().role(&req.room, &req.user).await? {
                Some(Role::Owner) => {
                    return Err(ApiError::forbidden("the owner's role cannot change"))
                }
                Some(Role::Admin) if actor != Some(Role::Owner) => {
                    return Err(ApiError::forbidden("only the owner may change an admin"))
                }
                Some(current) if current == req.role => return Ok(kept),
                None if invite => return Ok(InviteCheck { invite: true }),
                _ => {}
            }
            let mut batch = WriteBatch::new();
            Model::put_member(&mut batch, &req.room, &req.user, req.role);
            self.model().write(batch).await?;
        }
        self.member_changed(&req.room, &req.user, Some(req.role))
            .await;
        Ok(InviteCheck { invite: false })
    }

    /// Removes `user` from the room.
    pub async fn member_remove(&self, req: RemoveMemberRequest) -> Result<Done, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.user)?;
        valid("user name", &req.actor)?;
        if self.room_meta(&req.room).await?.kind == RoomKind::Dm {
            return Err(ApiError::forbidden("a DM has exactly its two users"));
        }
        {
            let _guard = self.inner.locks.lock(LOCK_ROOM, &req.room, "").await?;
            let target = self.model().role(&req.room, &req.user).await?;
            let target = target.ok_or_else(|| ApiError::not_found("not a member"))?;
            if target == Role::Owner {
                return Err(ApiError::forbidden("the owner cannot be removed"));
            }
            if req.actor != req.user {
                match (self.model().role(&req.room, &req.actor).await?, target) {
                    (Some(Role::Owner), _) | (Some(Role::Admin), Role::Member) => {}
                    (Some(Role::Admin), _) => {
                        return Err(ApiError::forbidden("only the owner may remove an admin"))
                    }
                    _ => {
                        return Err(ApiError::forbidden(
                            "only the owner or an admin may remove members",
                        ))
                    }
                }
            }
            let mut batch = WriteBatch::new();
            Model::delete_member(&mut batch, &req.room, &req.user);
            if req.actor != req.user {
                // Invitations made before a kick are void (`add_or_invite`): one to be an
                // admin, made before the user joined by himself, must not bring him back.
                Model::put_removed(&mut batch, &req.room, &req.user, now_ms());
            }
            self.model().write(batch).await?;
        }
        self.member_changed(&req.room, &req.user, None).await;
        Ok(Done {})
    }
}
