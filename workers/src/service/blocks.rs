//! Blocks (extension, `chatmesh_protocol::blocks`): each user's list of users who may not add
//! it to rooms, open a DM with it, or send in the DM they share. The list is kept with the
//! accounts (the primary region's workers); a user blocks at most
//! [`MAX_BLOCKS`](chatmesh_protocol::blocks::MAX_BLOCKS) others.
//!
//! Where each effect is decided: adds by the gateway (it asks `block_get` of the user being
//! added before asking the room's worker, so rooms of every region are covered); DMs here,
//! where they live with the accounts: `dm` refuses a user whom the other has blocked, and the
//! access of a DM's member whom the other member blocked is muted for good. A block or
//! unblock tells the gateways that access changed in the DM the two share.

use chatmesh_protocol::blocks::{
    BlockInfo, BlockPage, BlockQuery, BlockState, BlocksRequest, SetBlockRequest, MAX_BLOCKS,
    MAX_BLOCKS_PAGE,
};
use chatmesh_protocol::message::now_ms;
use chatmesh_protocol::service::{Role, RoomKind};
use chatmesh_protocol::ApiError;

use super::{valid, Service, LOCK_USER};
use crate::model::records::BlockRecord;
use crate::model::{dm_room, Model};
use crate::store::WriteBatch;

impl Service {
    /// Blocks or unblocks `other` for `user` (blocking twice is one block; unblocking a user
    /// not blocked is `not_found`).
    pub async fn block_set(&self, req: SetBlockRequest) -> Result<BlockState, ApiError> {
        valid("user name", &req.user)?;
        valid("user name", &req.other)?;
        if req.user == req.other {
            return Err(ApiError::bad_request("you cannot block yourself"));
        }
        {
            let _guard = self
                .inner
                .locks
                .lock(LOCK_USER, &req.user, "blocks")
                .await?;
            let existing = self.model().block(&req.user, &req.other).await?;
            let mut batch = WriteBatch::new();
            match (req.blocked, existing) {
                (true, Some(_)) => return Ok(BlockState { blocked: true }),
                (true, None) => {
                    // The cap first: a full list must not answer, free of any side effect,
                    // which names have an account.
                    let held = self
                        .model()
                        .blocks_after(&req.user, None, MAX_BLOCKS)
                        .await?;
                    if held.len() >= MAX_BLOCKS {
                        return Err(ApiError::conflict(format!(
                            "you block {MAX_BLOCKS} users already: unblock one first"
                        )));
                    }
                    if !self.user_exists(&req.other).await? {
                        return Err(ApiError::not_found("no such user"));
                    }
                    let rec = BlockRecord { ts: now_ms() };
                    Model::put_block(&mut batch, &req.user, &req.other, &rec);
                }
                (false, None) => return Err(ApiError::not_found("this user is not blocked")),
                (false, Some(_)) => Model::delete_block(&mut batch, &req.user, &req.other),
            }
            self.model().write(batch).await?;
        }
        // The DM the two share, if any: `other` may (no longer) send there.
        let room = dm_room(&req.user, &req.other);
        let dm = self.model().room(&room).await?;
        if dm.is_some_and(|meta| meta.kind == RoomKind::Dm) {
            self.access_changed(&room, &req.other, Some(Role::Member), true)
                .await;
        }
        Ok(BlockState {
            blocked: req.blocked,
        })
    }

    /// Whether `user` has blocked `other`.
    pub async fn block_get(&self, req: BlockQuery) -> Result<BlockState, ApiError> {
        valid("user name", &req.user)?;
        valid("user name", &req.other)?;
        let blocked = self.model().block(&req.user, &req.other).await?.is_some();
        Ok(BlockState { blocked })
    }

    /// A page of `user`'s blocks, by name.
    pub async fn blocks_list(&self, req: BlocksRequest) -> Result<BlockPage, ApiError> {
        valid("user name", &req.user)?;
        if let Some(after) = &req.after {
            valid("user name", after)?;
        }
        if !(1..=MAX_BLOCKS_PAGE).contains(&req.limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_BLOCKS_PAGE}"
            )));
        }
        let limit = req.limit as usize;
        let found = self
            .model()
            .blocks_after(&req.user, req.after.as_deref(), limit + 1)
            .await?;
        let (found, more) = super::page(found, limit);
        let blocks = found
            .into_iter()
            .map(|(user, rec)| BlockInfo { user, ts: rec.ts })
            .collect();
        Ok(BlockPage { blocks, more })
    }

    /// Whether the other member of DM `room` has blocked `user` (false for other rooms).
    pub(super) async fn blocked_in_dm(&self, room: &str, user: &str) -> Result<bool, ApiError> {
        for (member, _) in self.model().members(room, 3).await? {
            if member != user && self.model().block(&member, user).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
