//! The services of replies and threads: the check a gateway asks before it publishes a
//! reply (the target is a normal, not deleted message of the room; the answer names the
//! thread's root), a page of one thread with the reader's unread replies, and the reader's
//! thread cursor. Who may read the room is the gateway's check.

use chatmesh_protocol::frames::MAX_HISTORY_LIMIT;
use chatmesh_protocol::service::{
    Done, ReplyCheck, ReplyCheckRequest, ThreadPage, ThreadReadRequest, ThreadRequest,
};
use chatmesh_protocol::ApiError;

use super::{budget, valid, Service, LOCK_CURSOR};
use crate::model::Model;
use crate::store::WriteBatch;

/// Unread replies counted at most (like mentions).
pub const MAX_UNREAD: usize = 100;

impl Service {
    /// May `req.user` reply to `req.reply_to`? Decided against everything the stream held
    /// for the room when asked (the store writer is waited for, as for an edit).
    pub async fn reply_check(&self, req: ReplyCheckRequest) -> Result<ReplyCheck, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.user)?;
        self.room_meta(&req.room).await?;
        self.caught_up_now(&req.room).await?;
        let seq = req.reply_to;
        let target = self
            .model()
            .message(&req.room, seq)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no message {seq} in this room")))?;
        if !target.is_normal() {
            return Err(ApiError::bad_request(
                "only a normal message can be replied to, not an edit, a delete or a reaction",
            ));
        }
        if target.deleted.is_some() {
            return Err(ApiError::not_found(format!("message {seq} was deleted")));
        }
        Ok(ReplyCheck {
            root: target.thread_root.unwrap_or(seq),
        })
    }

    /// A page of the replies to `req.root` above `req.after`, oldest first, with the root
    /// and the reader's unread count. 404 when the root is neither stored nor has replies.
    pub async fn thread(&self, req: ThreadRequest) -> Result<ThreadPage, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.user)?;
        if !(1..=MAX_HISTORY_LIMIT).contains(&req.limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_HISTORY_LIMIT}"
            )));
        }
        self.room_meta(&req.room).await?;
        self.caught_up_now(&req.room).await?;
        let model = self.model();
        let root = model.message(&req.room, req.root).await?;
        if root.as_ref().is_some_and(|r| r.thread_root.is_some()) {
            return Err(ApiError::bad_request(format!(
                "message {} is a reply: its thread is that of {}",
                req.root,
                root.as_ref()
                    .and_then(|r| r.thread_root)
                    .unwrap_or_default()
            )));
        }
        let (seqs, more) = model
            .replies(
                &req.room,
                req.root,
                req.after.unwrap_or(0),
                req.limit as usize,
            )
            .await?;
        if root.is_none() && seqs.is_empty() && req.after.is_none() {
            return Err(ApiError::not_found(format!(
                "no message {} in this room",
                req.root
            )));
        }
        let mut messages = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(m) = model.message(&req.room, seq).await? {
                messages.push(m.into_message(&req.room, seq));
            }
        }
        let root = root.map(|r| r.into_message(&req.room, req.root));
        let budget = self
            .page_budget()
            .saturating_sub(root.as_ref().map_or(0, budget::encoded_len));
        let (messages, more) = budget::fit(messages, more, budget, false);
        let read = model.thread_cursor(&req.user, &req.room, req.root).await?;
        let unread = model
            .replies_unread(&req.room, req.root, &req.user, read, MAX_UNREAD)
            .await?;
        Ok(ThreadPage {
            room: req.room.clone(),
            root,
            messages,
            more,
            unread,
            read,
        })
    }

    /// Moves `req.user`'s read cursor in the thread of `req.root` forward to `req.seq`, at
    /// most to the room's last message. Only a thread has a cursor: 404 when the root has no
    /// replies (made up, or a message nobody answered), 400 for a reply; each cursor is a
    /// record retention never drops, so such roots must not make any.
    pub async fn thread_read(&self, req: ThreadReadRequest) -> Result<Done, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.user)?;
        self.room_meta(&req.room).await?;
        let model = self.model();
        let mut last = self.caches().stats(model, &req.room).await?.last_seq;
        // Everything acked when asked is stored first (the reader's newest reply too).
        if let Some(tail) = self.inner.tail.get() {
            if tail.caught_up(&req.room, None, last).await? {
                last = self.caches().stats(model, &req.room).await?.last_seq;
            }
        }
        let root = model.message(&req.room, req.root).await?;
        if root.as_ref().is_some_and(|r| r.thread_root.is_some()) {
            return Err(ApiError::bad_request(format!(
                "message {} is a reply, not a thread's root",
                req.root
            )));
        }
        if model.replies(&req.room, req.root, 0, 1).await?.0.is_empty() {
            return Err(ApiError::not_found(format!(
                "no thread of message {} in this room",
                req.root
            )));
        }
        let seq = req.seq.min(last);
        let _guard = self
            .inner
            .locks
            .lock(
                LOCK_CURSOR,
                &req.user,
                &format!("{}#{}", req.room, req.root),
            )
            .await;
        let current = self
            .model()
            .thread_cursor(&req.user, &req.room, req.root)
            .await?;
        if current >= seq {
            return Ok(Done {});
        }
        let mut batch = WriteBatch::new();
        Model::put_thread_cursor(&mut batch, &req.user, &req.room, req.root, seq);
        self.model().write(batch).await?;
        Ok(Done {})
    }
}
