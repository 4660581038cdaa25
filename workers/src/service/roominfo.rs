//! What members see about a room besides its messages: the member list (a bounded page, by
//! user name, with roles, display names and mutes) and the topic.
//!
//! Only members read the member list, whatever the room's kind: the list of a public room's
//! readers is not public. Only the owner or an admin sets the topic (a DM has neither, so its
//! topic cannot be set). The worker stores a topic change; the gateway that asked announces
//! it to the room (workers may not publish on the rooms' event subjects, see
//! `protocol::bus`).

use chatmesh_protocol::service::{
    MemberInfo, MemberPage, MembersRequest, Role, RoomTopic, SetTopicRequest,
};
use chatmesh_protocol::text::clean_topic;
use chatmesh_protocol::ApiError;

use super::{valid, Service, LOCK_ROOM};
use crate::model::Model;
use crate::store::WriteBatch;

/// Largest member page.
pub const MAX_MEMBERS_PAGE: u32 = 200;

impl Service {
    /// A page of the room's members; `forbidden` unless the actor is one.
    pub async fn members_list(&self, req: MembersRequest) -> Result<MemberPage, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.actor)?;
        if let Some(after) = &req.after {
            valid("user name", after)?;
        }
        if !(1..=MAX_MEMBERS_PAGE).contains(&req.limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_MEMBERS_PAGE}"
            )));
        }
        self.room_meta(&req.room).await?;
        if self.model().role(&req.room, &req.actor).await?.is_none() {
            return Err(ApiError::forbidden(
                "only members may list the members of a room",
            ));
        }
        let limit = req.limit as usize;
        let rows = self
            .model()
            .members_after(&req.room, req.after.as_deref(), limit + 1)
            .await?;
        let (rows, more) = super::page(rows, limit);
        let mut members = Vec::with_capacity(rows.len());
        let now = super::moderation::now_secs();
        let users: Vec<String> = rows.iter().map(|(user, _)| user.clone()).collect();
        let names = match req.without_names {
            true => vec![None; users.len()],
            false => self.display_names(&users).await?,
        };
        for ((user, role), display_name) in rows.into_iter().zip(names) {
            let mute = self
                .model()
                .mute(&req.room, &user)
                .await?
                .filter(|m| m.holds(now));
            members.push(MemberInfo {
                user,
                role,
                display_name,
                muted: mute.is_some(),
                muted_until: mute.and_then(|m| m.until),
            });
        }
        Ok(MemberPage { members, more })
    }

    /// Sets or clears the room's topic (owner or admin) and tells the room.
    pub async fn room_topic(&self, req: SetTopicRequest) -> Result<RoomTopic, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.actor)?;
        let topic = match &req.topic {
            Some(text) => clean_topic(text).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => None,
        };
        self.room_meta(&req.room).await?;
        {
            let _guard = self.inner.locks.lock(LOCK_ROOM, &req.room, "").await?;
            match self.model().role(&req.room, &req.actor).await? {
                Some(Role::Owner | Role::Admin) => {}
                _ => {
                    return Err(ApiError::forbidden(
                        "only the owner or an admin may set the topic",
                    ))
                }
            }
            self.refuse_muted(&req.room, &req.actor).await?;
            let mut batch = WriteBatch::new();
            Model::put_topic(&mut batch, &req.room, topic.as_deref());
            self.model().write(batch).await?;
        }
        Ok(RoomTopic {
            room: req.room,
            topic,
        })
    }
}
