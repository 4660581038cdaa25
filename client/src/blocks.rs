//! Blocks over HTTP (extension): the users who may not add the caller to rooms, open a DM
//! with it or send in the DM they share.

use chatmesh_protocol::blocks::BlockPage;

use crate::error::Result;
use crate::http::Http;

impl Http {
    /// `PUT /v1/users/me/blocks/{user}`: blocks `user` (blocking twice is one block).
    pub async fn block(&self, user: &str) -> Result<()> {
        let path = format!("/v1/users/me/blocks/{user}");
        self.call_empty(reqwest::Method::PUT, &path, None).await
    }

    /// `DELETE /v1/users/me/blocks/{user}`: lifts the block (`NotFound` if there is none).
    pub async fn unblock(&self, user: &str) -> Result<()> {
        let path = format!("/v1/users/me/blocks/{user}");
        self.call_empty(reqwest::Method::DELETE, &path, None).await
    }

    /// `GET /v1/users/me/blocks`: up to `limit` (1–1000) blocked users after `after`, by name.
    pub async fn blocks(&self, after: Option<&str>, limit: u32) -> Result<BlockPage> {
        let mut path = format!("/v1/users/me/blocks?limit={limit}");
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.call(reqwest::Method::GET, &path, None).await
    }
}
