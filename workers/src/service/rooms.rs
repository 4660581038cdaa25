//! Rooms: create, access, join, DMs and the room list of a user.
//!
//! `rooms_list` gives the rooms the user is in (role, last seq, unread, topic, name; `closed`
//! for a DM it closed with nothing newer: `dms`), then public rooms it
//! is not in (and not banned from) (role null, unread 0: unread counts are kept only for rooms one follows), at most
//! `rooms_list_max` entries in all. A user in more rooms than that gets them in pages, by
//! name (`more`, then `after` the last one); the public rooms come on the last page. The public tail is bounded so that nobody can crowd a
//! user's own rooms out: at most `rooms_list_public_max` entries, and at most
//! `rooms_list_public_per_owner` rooms of any one owner. Room creation is capped per user
//! (`max_rooms_per_user` rooms created, `forbidden` beyond; counted under the user's lock).
//! Unread is the number of stored messages above the user's
//! cursor: the room's message count minus the position of the newest message at or below
//! the cursor, so it costs no scan (one is done only for a cursor set ahead of the store).

use std::collections::{HashMap, HashSet};

use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::service::{
    Access, CreateRoomRequest, DmRequest, DmRoom, ListRoomsRequest, Role, RoomInfo, RoomKind,
    RoomList, RoomListing, RoomUserRequest, MAX_MENTION_COUNT,
};
use chatmesh_protocol::ApiError;
use tracing::{error, warn};

use super::{budget, valid, Service, LOCK_ROOM, LOCK_USER};
use crate::model::{dm_room, Cursor, Model, RoomMeta, RoomStats, DM_PREFIX};
use crate::store::WriteBatch;

impl Service {
    /// Creates a public or private room owned by the actor; `conflict` if it exists.
    pub async fn room_create(&self, req: CreateRoomRequest) -> Result<RoomInfo, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.actor)?;
        if req.kind == RoomKind::Dm {
            return Err(ApiError::bad_request(
                "DM rooms are opened with the dm operation",
            ));
        }
        if req.room.starts_with(DM_PREFIX) {
            return Err(ApiError::bad_request(
                "room ids starting with dm_ are reserved",
            ));
        }
        {
            let _guards = self
                .inner
                .locks
                .lock_two((LOCK_USER, &req.actor), (LOCK_ROOM, &req.room))
                .await?;
            if self.model().room(&req.room).await?.is_some() {
                return Err(ApiError::conflict("room already exists"));
            }
            if self.model().deletion(&req.room).await?.is_some() {
                return Err(ApiError::conflict(
                    "a room of this name is being deleted; retry when it is done",
                ));
            }
            let created = self.model().rooms_created(&req.actor).await?;
            let cap = self.inner.max_rooms_per_user;
            if created >= cap {
                return Err(ApiError::forbidden(format!(
                    "room quota reached: a user may create at most {cap} rooms"
                )));
            }
            let meta = RoomMeta {
                kind: req.kind,
                owner: Some(req.actor.clone()),
                created: now_ms(),
            };
            let mut batch = WriteBatch::new();
            Model::put_room(&mut batch, &req.room, &meta);
            Model::put_member(&mut batch, &req.room, &req.actor, Role::Owner);
            Model::put_rooms_created(&mut batch, &req.actor, created + 1);
            self.model().write(batch).await?;
        }
        self.member_changed(&req.room, &req.actor, Some(Role::Owner))
            .await;
        Ok(RoomInfo {
            room: req.room,
            kind: req.kind,
            owner: req.actor,
        })
    }

    /// What `user` may do in `room`; `not_found` if there is no such room.
    pub async fn access(&self, req: RoomUserRequest) -> Result<Access, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.user)?;
        let meta = self.room_meta(&req.room).await?;
        let role = self
            .caches()
            .role(self.model(), &req.room, &req.user)
            .await?;
        let stats = self.caches().stats(self.model(), &req.room).await?;
        // Moderation: two reads that find nothing for nearly everyone.
        let banned = self.model().ban(&req.room, &req.user).await?.is_some();
        let now = super::moderation::now_secs();
        let muted_until = self
            .model()
            .mute(&req.room, &req.user)
            .await?
            .filter(|m| m.holds(now))
            .map(|m| m.until.unwrap_or(u64::MAX));
        // Blocks: in a DM whose other member blocked the user, the user reads but no longer
        // sends.
        let blocked = meta.kind == RoomKind::Dm && self.blocked_in_dm(&req.room, &req.user).await?;
        Ok(Access {
            kind: meta.kind,
            role,
            last_seq: stats.last_seq,
            banned,
            muted_until,
            blocked,
        })
    }

    /// Makes the user a member of a public room (idempotent); `forbidden` for a private room
    /// or DM it is not a member of.
    pub async fn join(&self, req: RoomUserRequest) -> Result<Access, ApiError> {
        let access = self.access(req.clone()).await?;
        if access.role.is_some() {
            return Ok(access);
        }
        if access.banned {
            return Err(ApiError::forbidden("banned from this room"));
        }
        if access.kind != RoomKind::Public {
            return Err(ApiError::forbidden("this room is open to its members only"));
        }
        let added = {
            let _guard = self
                .inner
                .locks
                .lock_crowd(LOCK_ROOM, &req.room, "")
                .await?;
            self.room_still_there(&req.room).await?;
            if self.model().ban(&req.room, &req.user).await?.is_some() {
                return Err(ApiError::forbidden("banned from this room"));
            }
            let role = self.model().role(&req.room, &req.user).await?;
            if role.is_none() {
                let mut batch = WriteBatch::new();
                Model::put_member(&mut batch, &req.room, &req.user, Role::Member);
                self.model().write(batch).await?;
            }
            role.is_none()
        };
        if added {
            self.member_changed(&req.room, &req.user, Some(Role::Member))
                .await;
        }
        self.access(req).await
    }

    /// The one DM room of two existing users, created on first use.
    pub async fn dm(&self, req: DmRequest) -> Result<DmRoom, ApiError> {
        valid("user name", &req.a)?;
        valid("user name", &req.b)?;
        if req.a == req.b {
            return Err(ApiError::bad_request("a DM needs two different users"));
        }
        for user in [&req.a, &req.b] {
            if self.model().user(user).await?.is_none() {
                return Err(ApiError::not_found("no such user"));
            }
        }
        if self.model().block(&req.b, &req.a).await?.is_some() {
            return Err(ApiError::forbidden(
                "this user does not accept direct messages from you",
            ));
        }
        let room = dm_room(&req.a, &req.b);
        {
            let _guard = self.inner.locks.lock(LOCK_ROOM, &room, "").await?;
            if let Some(meta) = self.model().room(&room).await? {
                if meta.kind == RoomKind::Dm {
                    self.dm_reopen(&req.a, &room).await?;
                    return Ok(DmRoom { room });
                }
                error!(room, "a non-DM room holds a DM room id");
                return Err(ApiError::internal());
            }
            // An admin is deleting it (its record went first): made again now, it would be
            // emptied under its users, and what they sent lost.
            if self.model().deletion(&room).await?.is_some() {
                return Err(ApiError::conflict(
                    "this direct message is being deleted; retry when it is done",
                ));
            }
            let meta = RoomMeta {
                kind: RoomKind::Dm,
                owner: None,
                created: now_ms(),
            };
            let mut batch = WriteBatch::new();
            Model::put_room(&mut batch, &room, &meta);
            Model::put_member(&mut batch, &room, &req.a, Role::Member);
            Model::put_member(&mut batch, &room, &req.b, Role::Member);
            self.model().write(batch).await?;
        }
        for user in [&req.a, &req.b] {
            self.member_changed(&room, user, Some(Role::Member)).await;
        }
        Ok(DmRoom { room })
    }

    /// The user's rooms, then public rooms it is not in (see the module docs).
    pub async fn rooms_list(&self, req: ListRoomsRequest) -> Result<RoomList, ApiError> {
        valid("user name", &req.user)?;
        let max = self.inner.rooms_list_max;
        if let Some(after) = &req.after {
            valid("room", after)?;
        }
        let after = req.after.as_deref();
        let mut mine = self
            .model()
            .rooms_of_after(&req.user, after, max + 1)
            .await?;
        let mut more = mine.len() > max;
        mine.truncate(max);
        // The page is also cut at its byte budget (`budget.rs`: 1,000 long topics are over
        // nats-server's payload limit); the next one starts after its last room.
        let budget = self.page_budget();
        let mut used = 0usize;
        let mut rooms = Vec::with_capacity(mine.len());
        let mut cut = None;
        for (i, (room, role)) in mine.iter().enumerate() {
            let Some(meta) = self.caches().room(self.model(), room).await? else {
                warn!(
                    room,
                    user = req.user,
                    "membership of a room that does not exist"
                );
                continue;
            };
            let stats = self.caches().stats(self.model(), room).await?;
            let closed = meta.kind == RoomKind::Dm
                && self.dm_hidden(&req.user, room, stats.last_seq).await?;
            let cursor = self.model().cursor(&req.user, room).await?;
            let peer = match meta.kind {
                RoomKind::Dm => self
                    .model()
                    .members(room, 2)
                    .await?
                    .into_iter()
                    .map(|(user, _)| user)
                    .find(|user| *user != req.user),
                _ => None,
            };
            let unread = self.unread(room, stats, cursor).await?;
            // Nothing unread, nothing to scan: most rooms of a list.
            let mentions = match unread {
                0 => 0,
                _ => {
                    let after = cursor.map_or(0, |c| c.seq);
                    let max = MAX_MENTION_COUNT as usize;
                    self.model()
                        .mentions_after(room, &req.user, after, max)
                        .await?
                }
            };
            rooms.push(RoomListing {
                room: room.clone(),
                kind: meta.kind,
                role: Some(*role),
                last_seq: stats.last_seq,
                unread,
                mentions,
                peer,
                topic: self.model().topic(room).await?,
                name: self.model().room_name(room).await?,
                closed,
            });
            used = used.saturating_add(rooms.last().map_or(0, budget::encoded_len) + 1);
            if used > budget && rooms.len() > 1 {
                rooms.pop();
                cut = Some(i);
                break;
            }
        }
        if let Some(i) = cut {
            mine.truncate(i);
            more = true;
        }
        let member_of: HashSet<&str> = mine.iter().map(|(r, _)| r.as_str()).collect();
        // Public rooms come on the last page, after every room of the user's.
        let tail_max = match more {
            false => max
                .saturating_sub(rooms.len())
                .min(self.inner.rooms_list_public_max),
            true => 0,
        };
        if tail_max > 0 {
            let per_owner_max = self.inner.rooms_list_public_per_owner;
            let mut per_owner: HashMap<String, usize> = HashMap::new();
            let mut tail = 0;
            let public = self.model().public_rooms(max + mine.len()).await?;
            for room in public.iter().filter(|r| !member_of.contains(r.as_str())) {
                if tail >= tail_max {
                    break;
                }
                let Some(meta) = self.caches().room(self.model(), room).await? else {
                    continue;
                };
                // A room the user is banned from is not offered to it.
                if self.model().ban(room, &req.user).await?.is_some() {
                    continue;
                }
                let owner = meta.owner.clone().unwrap_or_default();
                let n = per_owner.entry(owner).or_default();
                if *n >= per_owner_max {
                    continue;
                }
                *n += 1;
                tail += 1;
                let stats = self.caches().stats(self.model(), room).await?;
                let listing = RoomListing {
                    room: room.clone(),
                    kind: RoomKind::Public,
                    role: None,
                    last_seq: stats.last_seq,
                    unread: 0,
                    mentions: 0,
                    peer: None,
                    topic: self.model().topic(room).await?,
                    name: self.model().room_name(room).await?,
                    closed: false,
                };
                // The public rooms offered are a sample: those past the budget are left out.
                used = used.saturating_add(budget::encoded_len(&listing) + 1);
                if used > budget {
                    break;
                }
                rooms.push(listing);
            }
        }
        Ok(RoomList {
            rooms,
            more,
            unavailable: Vec::new(),
        })
    }

    async fn unread(
        &self,
        room: &str,
        stats: RoomStats,
        cursor: Option<Cursor>,
    ) -> Result<u64, ApiError> {
        // Reactions are not unread: positions count them, `quiet` says how many they are.
        let loud = |n: u64, quiet: u64| n.saturating_sub(quiet);
        let all = loud(stats.count, stats.quiet);
        Ok(match cursor {
            None => all,
            Some(c) if c.seq >= stats.last_seq => 0,
            Some(c) if c.exact => all.saturating_sub(loud(c.n, c.quiet)),
            Some(c) => {
                let (n, quiet) = self.model().position_at(room, c.seq).await?;
                all.saturating_sub(loud(n, quiet))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chatmesh_protocol::service::{CreateRoomRequest, RoomKind};

    use super::super::locks::KeyLocks;
    use super::super::{Service, LOCK_ROOM, LOCK_USER};
    use crate::cache::Caches;
    use crate::model::Model;
    use crate::WorkerConfig;

    /// A room whose lock stripe is its creator's: creating it locked that stripe twice and
    /// never returned, holding the creator's stripe (and a service permit) for good.
    #[tokio::test]
    async fn creating_a_room_on_the_creators_lock_stripe_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WorkerConfig {
            data_dir: dir.path().to_path_buf(),
            ..WorkerConfig::default()
        };
        let store = crate::open_store(&cfg).await.unwrap();
        let model = Model::new(store);
        let svc =
            Service::new(model, Arc::new(Caches::new(cfg.cache_sizes())), &cfg, None).unwrap();
        let user = KeyLocks::stripe(LOCK_USER, "alice", "");
        let room = (0..1_000_000)
            .map(|i| format!("r{i}"))
            .find(|r| KeyLocks::stripe(LOCK_ROOM, r, "") == user)
            .unwrap();
        let req = CreateRoomRequest {
            room: room.clone(),
            kind: RoomKind::Public,
            actor: "alice".into(),
        };
        let created = tokio::time::timeout(Duration::from_secs(10), svc.room_create(req)).await;
        assert_eq!(
            created.expect("room_create never returned").unwrap().room,
            room
        );
    }
}
