//! Blocking another user (extension, docs/PROTOCOL.md "Blocks"): a user keeps a list of users
//! who may not add it to rooms, open a DM with it, or send in the DM they already share.
//! The list lives with the accounts (the primary region's workers); the gateway asks it
//! before an add, the worker of the DM before opening one or answering a DM's access.

use serde::{Deserialize, Serialize};

use crate::service::{op, Op};

/// Most users one user may block.
pub const MAX_BLOCKS: usize = 1_000;
/// Most blocks on one page of `GET /v1/users/me/blocks`.
pub const MAX_BLOCKS_PAGE: u32 = 1_000;

/// Blocks (`blocked: true`) or unblocks `other` for `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBlockRequest {
    pub user: String,
    pub other: String,
    pub blocked: bool,
}

/// Whether `user` has blocked `other`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockQuery {
    pub user: String,
    pub other: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    pub blocked: bool,
}

/// A page of `user`'s blocks, by name after `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocksRequest {
    pub user: String,
    pub after: Option<String>,
    pub limit: u32,
}

/// One blocked user, and when (milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    pub user: String,
    pub ts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockPage {
    pub blocks: Vec<BlockInfo>,
    /// More blocks follow the last one of this page.
    pub more: bool,
}

op!(SetBlock, "block_set", SetBlockRequest, BlockState);
op!(GetBlock, "block_get", BlockQuery, BlockState);
op!(ListBlocks, "blocks_list", BlocksRequest, BlockPage);
