//! History pages and read cursors. A page comes from the room's recent page in the cache
//! when that holds everything the answer depends on, else from the store. Who may read a
//! room is the gateway's check (it holds the session's identity); the worker only serves.

use chatmesh_protocol::frames::MAX_HISTORY_LIMIT;
use chatmesh_protocol::service::{Done, HistoryPage, HistoryRequest, SetCursorRequest};
use chatmesh_protocol::ApiError;

use super::{budget, valid, Service, LOCK_CURSOR};
use crate::model::{Cursor, HistoryQuery, Model};
use crate::store::WriteBatch;

impl Service {
    /// A page of a room's messages, oldest first (see [`HistoryRequest`]). Without `after`
    /// it includes every message the stream held when asked (see `fresh.rs`).
    pub async fn history(&self, req: HistoryRequest) -> Result<HistoryPage, ApiError> {
        valid("room", &req.room)?;
        if !(1..=MAX_HISTORY_LIMIT).contains(&req.limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_HISTORY_LIMIT}"
            )));
        }
        self.room_meta(&req.room).await?;
        let mut stats = self.caches().stats(self.model(), &req.room).await?;
        if let (None, Some(tail)) = (req.after, self.inner.tail.get()) {
            if tail
                .caught_up(&req.room, req.before, stats.last_seq)
                .await?
            {
                stats = self.caches().stats(self.model(), &req.room).await?;
            }
        }
        let q = HistoryQuery {
            before: req.before,
            after: req.after,
            limit: req.limit as usize,
        };
        let page = self
            .caches()
            .page(self.model(), &req.room, stats.last_seq)
            .await?;
        let (messages, more) = match page.and_then(|p| p.serve(&q)) {
            Some(served) => served,
            None => self.model().history(&req.room, q).await?,
        };
        let (messages, more) = budget::fit(messages, more, self.page_budget(), q.after.is_none());
        Ok(HistoryPage { messages, more })
    }

    /// Bytes of items one page may hold (see `budget.rs`).
    pub(super) fn page_budget(&self) -> usize {
        let max_payload = self
            .inner
            .events
            .as_ref()
            .map_or(0, |events| events.nats().server_info().max_payload);
        budget::page_budget(self.inner.history_page_max_bytes, max_payload)
    }

    /// Moves the user's read cursor forward to `seq` (never back).
    pub async fn cursor(&self, req: SetCursorRequest) -> Result<Done, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.user)?;
        self.room_meta(&req.room).await?;
        let _guard = self
            .inner
            .locks
            .lock(LOCK_CURSOR, &req.user, &req.room)
            .await?;
        let current = self.model().cursor(&req.user, &req.room).await?;
        if current.is_some_and(|c| c.seq >= req.seq) {
            return Ok(Done {});
        }
        let stats = self.caches().stats(self.model(), &req.room).await?;
        let (n, quiet) = if req.seq >= stats.last_seq {
            (stats.count, stats.quiet)
        } else {
            self.model().position_at(&req.room, req.seq).await?
        };
        let cursor = Cursor {
            seq: req.seq,
            n,
            quiet,
            exact: req.seq <= stats.last_seq,
        };
        let mut batch = WriteBatch::new();
        Model::put_cursor(&mut batch, &req.user, &req.room, &cursor);
        self.model().write(batch).await?;
        Ok(Done {})
    }
}
