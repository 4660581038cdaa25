//! Room moderation (extension): bans, mutes and the room's display name. The rules, in one
//! place for every gateway, decided under the room's lock from the store:
//!
//! - only the owner or an admin moderates; only the owner bans or mutes an admin; nobody
//!   bans or mutes the owner, or themselves; a DM has no admins, so nobody moderates it;
//! - a ban removes the membership (as a removal does: the gateways evict the user's
//!   sessions at once) and keeps the user out until it is lifted: no join, no re-add, no
//!   reading; an unban does not re-add. A room holds at most `max_bans_per_room` bans;
//! - a mute (of a member, maybe until a time) refuses the member's sends, whatever their
//!   kind; it outlives a leave and re-join, and ends with an unmute, a ban, or its time.
//!
//! Each operation answers the [`RoomEvent`] the gateway then publishes into the room's
//! order (workers may not publish into the stream, see `protocol::bus`).

use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::moderation::{
    BanInfo, BanPage, BanRequest, BansRequest, LiftRequest, MuteRequest, RoomEvent, RoomName,
    SetNameRequest, MAX_BANS_PAGE, MAX_MUTE_SECS,
};
use chatmesh_protocol::service::{Role, RoomKind};
use chatmesh_protocol::text::{clean_reason, clean_room_name};
use chatmesh_protocol::ApiError;

use super::{valid, Service, LOCK_ROOM};
use crate::model::{BanRecord, Model, MuteRecord};
use crate::store::WriteBatch;

/// Now, in unix seconds.
pub(super) fn now_secs() -> u64 {
    now_ms() / 1000
}

/// May `actor` (with this role) `verb` a user whose role is `target`?
fn may_moderate(verb: &str, actor: Option<Role>, target: Option<Role>) -> Result<(), ApiError> {
    match (actor, target) {
        (Some(Role::Owner | Role::Admin), Some(Role::Owner)) => {
            Err(ApiError::forbidden("the owner cannot be banned or muted"))
        }
        (Some(Role::Owner), _) | (Some(Role::Admin), None | Some(Role::Member)) => Ok(()),
        (Some(Role::Admin), Some(Role::Admin)) => Err(ApiError::forbidden(format!(
            "only the owner may {verb} an admin"
        ))),
        _ => Err(ApiError::forbidden(format!(
            "only the owner or an admin may {verb} users"
        ))),
    }
}

/// Only the owner lifts a ban or a mute made of an admin (`admin`), whatever the user's role
/// is now.
fn lift_of_admin(verb: &str, actor: Option<Role>, admin: bool) -> Result<(), ApiError> {
    if admin && actor != Some(Role::Owner) {
        return Err(ApiError::forbidden(format!(
            "only the owner may {verb} an admin"
        )));
    }
    Ok(())
}

impl Service {
    /// The checks every moderation request starts with: names, the room (not a DM), not
    /// oneself.
    async fn moderated(&self, room: &str, actor: &str, user: &str) -> Result<(), ApiError> {
        valid("room", room)?;
        valid("user name", actor)?;
        valid("user name", user)?;
        if self.room_meta(room).await?.kind == RoomKind::Dm {
            return Err(ApiError::forbidden(
                "a DM has no owner or admins: nobody moderates it",
            ));
        }
        if actor == user {
            return Err(ApiError::forbidden("nobody can ban or mute themselves"));
        }
        Ok(())
    }

    /// Bans `user`: removes its membership, records the ban.
    pub async fn ban(&self, req: BanRequest) -> Result<RoomEvent, ApiError> {
        let reason = match &req.reason {
            Some(text) => clean_reason(text).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => None,
        };
        self.moderated(&req.room, &req.actor, &req.user).await?;
        // Asked before the room's lock: with regional workers the accounts are the
        // primary's (an account is never deleted, so the answer holds under the lock).
        let exists = self.user_exists(&req.user).await?;
        {
            let _guard = self.inner.locks.lock(LOCK_ROOM, &req.room, "").await?;
            let actor = self.model().role(&req.room, &req.actor).await?;
            may_moderate("ban", actor, Some(Role::Member))?;
            if reason.is_some() {
                // A reason is text in front of every member, as a topic is.
                self.refuse_muted(&req.room, &req.actor).await?;
            }
            if !exists {
                return Err(ApiError::not_found("no such user"));
            }
            let target = self.model().role(&req.room, &req.user).await?;
            may_moderate("ban", actor, target)?;
            if self.model().ban(&req.room, &req.user).await?.is_some() {
                return Err(ApiError::conflict("already banned from this room"));
            }
            let count = self.model().ban_count(&req.room).await?;
            let max = self.inner.max_bans_per_room;
            if count >= max {
                return Err(ApiError::forbidden(format!(
                    "this room holds {max} bans, the most it may: unban someone first"
                )));
            }
            let ban = BanRecord {
                by: req.actor.clone(),
                reason: reason.clone(),
                ts: now_ms(),
                admin: target == Some(Role::Admin),
            };
            let mut batch = WriteBatch::new();
            if target.is_some() {
                Model::delete_member(&mut batch, &req.room, &req.user);
            }
            Model::delete_mute(&mut batch, &req.room, &req.user);
            Model::put_ban(&mut batch, &req.room, &req.user, &ban, count + 1);
            self.model().write(batch).await?;
        }
        // Also for a non-member: every gateway drops what it cached about the user here.
        self.member_changed(&req.room, &req.user, None).await;
        Ok(RoomEvent::Ban {
            user: req.user,
            reason,
        })
    }

    /// Lifts `user`'s ban (it stays out of the room until it joins or is added again).
    pub async fn unban(&self, req: LiftRequest) -> Result<RoomEvent, ApiError> {
        self.moderated(&req.room, &req.actor, &req.user).await?;
        {
            let _guard = self.inner.locks.lock(LOCK_ROOM, &req.room, "").await?;
            let actor = self.model().role(&req.room, &req.actor).await?;
            may_moderate("unban", actor, None)?;
            let Some(ban) = self.model().ban(&req.room, &req.user).await? else {
                return Err(ApiError::not_found("not banned from this room"));
            };
            // The banned admin has no role left to check: the ban remembers it.
            lift_of_admin("unban", actor, ban.admin)?;
            let count = self.model().ban_count(&req.room).await?;
            let mut batch = WriteBatch::new();
            Model::delete_ban(&mut batch, &req.room, &req.user, count.saturating_sub(1));
            self.model().write(batch).await?;
        }
        self.access_changed(&req.room, &req.user, None, true).await;
        Ok(RoomEvent::Unban { user: req.user })
    }

    /// Mutes member `user`, until `until` or until unmuted.
    pub async fn mute(&self, req: MuteRequest) -> Result<RoomEvent, ApiError> {
        if let Some(until) = req.until {
            let now = now_secs();
            if until <= now || until - now > MAX_MUTE_SECS {
                return Err(ApiError::bad_request(
                    "until must be a time (unix seconds) in the next ten years",
                ));
            }
        }
        self.moderated(&req.room, &req.actor, &req.user).await?;
        let target = {
            let _guard = self.inner.locks.lock(LOCK_ROOM, &req.room, "").await?;
            let actor = self.model().role(&req.room, &req.actor).await?;
            may_moderate("mute", actor, Some(Role::Member))?;
            let target = self.model().role(&req.room, &req.user).await?;
            if target.is_none() {
                return Err(ApiError::not_found("not a member of this room"));
            }
            may_moderate("mute", actor, target)?;
            let mute = MuteRecord {
                by: req.actor.clone(),
                until: req.until,
                ts: now_ms(),
                admin: target == Some(Role::Admin),
            };
            let mut batch = WriteBatch::new();
            Model::put_mute(&mut batch, &req.room, &req.user, &mute);
            self.model().write(batch).await?;
            target
        };
        self.access_changed(&req.room, &req.user, target, true)
            .await;
        Ok(RoomEvent::Mute {
            user: req.user,
            until: req.until,
        })
    }

    /// `forbidden` while `user` is muted in `room`: a topic or a room name is text in front of
    /// every member, which a muted admin may not put there any more than a message. Called
    /// under the room's lock.
    pub(super) async fn refuse_muted(&self, room: &str, user: &str) -> Result<(), ApiError> {
        let mute = self.model().mute(room, user).await?;
        if mute.is_some_and(|m| m.holds(now_secs())) {
            return Err(ApiError::forbidden("muted in this room"));
        }
        Ok(())
    }

    /// Lifts `user`'s mute.
    pub async fn unmute(&self, req: LiftRequest) -> Result<RoomEvent, ApiError> {
        self.moderated(&req.room, &req.actor, &req.user).await?;
        let target = {
            let _guard = self.inner.locks.lock(LOCK_ROOM, &req.room, "").await?;
            let actor = self.model().role(&req.room, &req.actor).await?;
            may_moderate("unmute", actor, Some(Role::Member))?;
            let target = self.model().role(&req.room, &req.user).await?;
            may_moderate("unmute", actor, target)?;
            let muted = self.model().mute(&req.room, &req.user).await?;
            let Some(muted) = muted.filter(|m| m.holds(now_secs())) else {
                return Err(ApiError::not_found("not muted in this room"));
            };
            // An admin muted and gone from the room since has no role left to check.
            lift_of_admin("unmute", actor, muted.admin)?;
            let mut batch = WriteBatch::new();
            Model::delete_mute(&mut batch, &req.room, &req.user);
            self.model().write(batch).await?;
            target
        };
        self.access_changed(&req.room, &req.user, target, true)
            .await;
        Ok(RoomEvent::Unmute { user: req.user })
    }

    /// A page of the room's bans; owner and admins only.
    pub async fn bans_list(&self, req: BansRequest) -> Result<BanPage, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.actor)?;
        if let Some(after) = &req.after {
            valid("user name", after)?;
        }
        if !(1..=MAX_BANS_PAGE).contains(&req.limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_BANS_PAGE}"
            )));
        }
        self.room_meta(&req.room).await?;
        match self.model().role(&req.room, &req.actor).await? {
            Some(Role::Owner | Role::Admin) => {}
            _ => {
                return Err(ApiError::forbidden(
                    "only the owner or an admin may list the bans",
                ))
            }
        }
        let limit = req.limit as usize;
        let rows = self
            .model()
            .bans_after(&req.room, req.after.as_deref(), limit + 1)
            .await?;
        let (rows, more) = super::page(rows, limit);
        let bans = rows
            .into_iter()
            .map(|(user, b)| BanInfo {
                user,
                by: b.by,
                reason: b.reason,
                ts: b.ts,
            })
            .collect();
        Ok(BanPage { bans, more })
    }

    /// Sets or clears the room's display name (owner or admin).
    pub async fn room_name(&self, req: SetNameRequest) -> Result<RoomName, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.actor)?;
        let name = match &req.name {
            Some(text) => {
                clean_room_name(text).map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            None => None,
        };
        self.room_meta(&req.room).await?;
        {
            let _guard = self.inner.locks.lock(LOCK_ROOM, &req.room, "").await?;
            match self.model().role(&req.room, &req.actor).await? {
                Some(Role::Owner | Role::Admin) => {}
                _ => {
                    return Err(ApiError::forbidden(
                        "only the owner or an admin may name the room",
                    ))
                }
            }
            self.refuse_muted(&req.room, &req.actor).await?;
            let mut batch = WriteBatch::new();
            Model::put_room_name(&mut batch, &req.room, name.as_deref());
            self.model().write(batch).await?;
        }
        Ok(RoomName {
            room: req.room,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_moderates_whom() {
        use Role::*;
        let ok = |a, t| may_moderate("ban", a, t).is_ok();
        assert!(ok(Some(Owner), Some(Admin)) && ok(Some(Owner), Some(Member)));
        assert!(ok(Some(Owner), None) && ok(Some(Admin), None));
        assert!(ok(Some(Admin), Some(Member)));
        assert!(!ok(Some(Admin), Some(Admin)) && !ok(Some(Admin), Some(Owner)));
        assert!(!ok(Some(Owner), Some(Owner)));
        assert!(!ok(Some(Member), Some(Member)) && !ok(None, None));
    }
}
