//! Closing a DM (extension, docs/PROTOCOL.md "Closing DMs"): a DM has exactly its two users
//! and neither can leave it, but either can close it for itself. A closed DM is listed as
//! `closed` in that user's room list (clients do not show it) until the DM holds a message
//! newer than the close (from either user) or the user opens it again (`dm`); the other user
//! sees no change, and the closer stays a member (it still reads the DM, gets what is sent
//! there and can be pushed). Clients stay joined to closed DMs, so a new message there
//! reaches them live and they show the DM again. A close and a reopen are told to the
//! user's sessions as `membership {room, role: member}`, so its other clients update their
//! room lists. The
//! close is taken at the DM's last seq in the stream, so a message acked just before it
//! and not yet stored does not bring the DM back once stored.

use chatmesh_protocol::service::{DmRequest, Done, Role, RoomKind};
use chatmesh_protocol::ApiError;

use super::{valid, Service};
use crate::model::{dm_room, Model};
use crate::store::WriteBatch;

impl Service {
    /// `req.a` closes its DM with `req.b`; `not_found` if they have none.
    pub async fn dm_close(&self, req: DmRequest) -> Result<Done, ApiError> {
        valid("user name", &req.a)?;
        valid("user name", &req.b)?;
        if req.a == req.b {
            return Err(ApiError::bad_request("a DM needs two different users"));
        }
        let room = dm_room(&req.a, &req.b);
        let meta = self.caches().room(self.model(), &room).await?;
        if meta.is_none_or(|m| m.kind != RoomKind::Dm) {
            return Err(ApiError::not_found("no DM with this user"));
        }
        // What was acked in the DM up to now, stored yet or not, is what the user closes
        // it on (the store's own last seq where the stream is not at hand).
        let stored = self.caches().stats(self.model(), &room).await?.last_seq;
        let last_seq = match self.inner.tail.get() {
            Some(tail) => match tail.room_last_seq(&room).await {
                Some(acked) => acked?.max(stored),
                None => stored,
            },
            None => stored,
        };
        let mut batch = WriteBatch::new();
        Model::put_dm_closed(&mut batch, &req.a, &room, last_seq);
        self.model().write(batch).await?;
        // The closer's other sessions update their room lists (`membership`).
        self.member_changed(&room, &req.a, Some(Role::Member)).await;
        Ok(Done {})
    }

    /// `user` opened DM `room` (again): it is listed from now on.
    pub(super) async fn dm_reopen(&self, user: &str, room: &str) -> Result<(), ApiError> {
        if self.model().dm_closed(user, room).await?.is_some() {
            let mut batch = WriteBatch::new();
            Model::delete_dm_closed(&mut batch, user, room);
            self.model().write(batch).await?;
            self.member_changed(room, user, Some(Role::Member)).await;
        }
        Ok(())
    }

    /// Whether `user` closed DM `room` and nothing was sent there since (`last_seq`: the
    /// room's last seq now).
    pub(super) async fn dm_hidden(
        &self,
        user: &str,
        room: &str,
        last_seq: u64,
    ) -> Result<bool, ApiError> {
        let closed = self.model().dm_closed(user, room).await?;
        Ok(closed.is_some_and(|at| last_seq <= at))
    }
}
