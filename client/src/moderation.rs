//! Room moderation over HTTP (extension): bans, mutes and the room's display name. What
//! they do shows in the room itself too: each is a message with an `event`
//! ([`crate::RoomEvent`]) in the room's order.

use chatmesh_protocol::moderation::BanPage;
use serde_json::json;

use crate::error::Result;
use crate::http::Http;

impl Http {
    /// `POST /v1/rooms/{room}/bans`: bans `user` (owner or admin), removing it from the room.
    pub async fn ban(&self, room: &str, user: &str, reason: Option<&str>) -> Result<()> {
        let path = format!("/v1/rooms/{room}/bans");
        let body = match reason {
            Some(reason) => json!({"user": user, "reason": reason}),
            None => json!({"user": user}),
        };
        self.call_empty(reqwest::Method::POST, &path, Some(body))
            .await
    }

    /// `DELETE /v1/rooms/{room}/bans/{user}`: lifts the ban (does not add `user` back).
    pub async fn unban(&self, room: &str, user: &str) -> Result<()> {
        let path = format!("/v1/rooms/{room}/bans/{user}");
        self.call_empty(reqwest::Method::DELETE, &path, None).await
    }

    /// `GET /v1/rooms/{room}/bans`: up to `limit` bans after user `after`, by user name.
    pub async fn bans(&self, room: &str, after: Option<&str>, limit: u32) -> Result<BanPage> {
        let mut path = format!("/v1/rooms/{room}/bans?limit={limit}");
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.call(reqwest::Method::GET, &path, None).await
    }

    /// `POST /v1/rooms/{room}/mutes`: `user` may not send until `until` (unix seconds), or
    /// until unmuted.
    pub async fn mute(&self, room: &str, user: &str, until: Option<u64>) -> Result<()> {
        let path = format!("/v1/rooms/{room}/mutes");
        let body = match until {
            Some(until) => json!({"user": user, "until": until}),
            None => json!({"user": user}),
        };
        self.call_empty(reqwest::Method::POST, &path, Some(body))
            .await
    }

    /// `DELETE /v1/rooms/{room}/mutes/{user}`.
    pub async fn unmute(&self, room: &str, user: &str) -> Result<()> {
        let path = format!("/v1/rooms/{room}/mutes/{user}");
        self.call_empty(reqwest::Method::DELETE, &path, None).await
    }

    /// `PATCH /v1/rooms/{room}` `{"name"}`: sets (or, with `None`, clears) the room's
    /// display name (owner or admin).
    pub async fn set_room_name(&self, room: &str, name: Option<&str>) -> Result<()> {
        let path = format!("/v1/rooms/{room}");
        self.call_empty(reqwest::Method::PATCH, &path, Some(json!({ "name": name })))
            .await
    }

    /// `PATCH /v1/rooms/{room}` `{"topic"}`: sets (or, with `None`, clears) the topic.
    pub async fn set_topic(&self, room: &str, topic: Option<&str>) -> Result<()> {
        let path = format!("/v1/rooms/{room}");
        self.call_empty(
            reqwest::Method::PATCH,
            &path,
            Some(json!({ "topic": topic })),
        )
        .await
    }
}
