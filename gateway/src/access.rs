//! Who may read and post where: worker answers cached per (room, user) in moka, dropped when
//! a membership event for the room arrives, so a change takes effect at once on every
//! gateway (and within the TTL even if an event is lost).

use std::sync::Arc;
use std::time::Duration;

use chatmesh_protocol::frames::ServerFrame;
use chatmesh_protocol::service::{
    Access, GetAccess, History, HistoryPage, HistoryRequest, MemberEvent, RoomUserRequest,
};
use chatmesh_protocol::subjects::MEMBER_ALL;
use chatmesh_protocol::ApiError;
use futures::StreamExt;
use moka::future::Cache;

use crate::error::GatewayError;
use crate::services::Services;
use crate::state::AppState;

type Key = (Arc<str>, Arc<str>);

/// Cached room access.
#[derive(Debug, Clone)]
pub struct AccessCache {
    cache: Cache<Key, Access>,
    services: Services,
}

impl AccessCache {
    pub fn new(services: Services) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(200_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            services,
        }
    }

    /// What `user` may do in `room` (loaded once per key when cold).
    pub async fn get(&self, room: &str, user: &str) -> Result<Access, ApiError> {
        let key: Key = (Arc::from(room), Arc::from(user));
        let services = self.services.clone();
        let req = RoomUserRequest {
            room: room.to_owned(),
            user: user.to_owned(),
        };
        let result = self
            .cache
            .entry(key)
            .or_try_insert_with(async move { services.ask::<GetAccess>(&req.room, &req).await })
            .await;
        match result {
            Ok(entry) => {
                let outcome = if entry.is_fresh() { "miss" } else { "hit" };
                metrics::counter!("chatmesh_cache_requests_total", "cache" => "access", "result" => outcome)
                    .increment(1);
                Ok(entry.into_value())
            }
            Err(e) => Err((*e).clone()),
        }
    }

    /// Stores a fresh answer (after a join made the user a member).
    pub async fn put(&self, room: &str, user: &str, access: Access) {
        self.cache
            .insert((Arc::from(room), Arc::from(user)), access)
            .await;
    }

    pub async fn forget(&self, room: &str, user: &str) {
        self.cache
            .invalidate(&(Arc::from(room), Arc::from(user)))
            .await;
    }
}

/// A page of `room`'s history for `user`, if the user may read the room.
pub async fn read_history(
    state: &AppState,
    user: &str,
    room: &str,
    before: Option<u64>,
    limit: u32,
) -> Result<HistoryPage, ApiError> {
    let access = state.access.get(room, user).await?;
    if !access.can_read() {
        return Err(ApiError::forbidden("not a member of this room"));
    }
    let req = HistoryRequest {
        room: room.to_owned(),
        before,
        after: None,
        limit,
    };
    state.services.ask::<History>(room, &req).await
}

/// Listens to membership events: drops cached access and evicts removed users' sessions.
pub async fn spawn_member_listener(state: Arc<AppState>) -> Result<(), GatewayError> {
    let mut sub = state
        .nats
        .subscribe(MEMBER_ALL)
        .await
        .map_err(|e| GatewayError::Nats(e.to_string()))?;
    let drain = state.drain.clone();
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = drain.cancelled() => break,
                msg = sub.next() => match msg { Some(m) => m, None => break },
            };
            let Ok(ev) = serde_json::from_slice::<MemberEvent>(&msg.payload) else {
                tracing::warn!(subject = %msg.subject, "malformed membership event");
                continue;
            };
            state.access.forget(&ev.room, &ev.user).await;
            if ev.role.is_none() {
                let room = ev.room.clone();
                state.fanout.evict_user(&ev.room, &ev.user, move || {
                    ServerFrame::Left {
                        r#ref: std::borrow::Cow::Owned(None),
                        room: std::borrow::Cow::Borrowed(&room),
                    }
                    .encode()
                    .into()
                });
            }
        }
    });
    Ok(())
}
