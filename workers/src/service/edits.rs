//! The services of edits, deletes and reactions: the check a gateway asks before it
//! publishes one (the rules are [`crate::edits`] and [`crate::reactions`], which the store
//! writer applies again when it stores it), the versions of an edited message, and the
//! check of a resend (`send` with `resend_after`): was its id stored already?

use chatmesh_protocol::service::{
    ChangeCheck, ChangeCheckRequest, EditHistory, EditsRequest, SentCheckRequest, Version,
};
use chatmesh_protocol::{validate_msg_id, ApiError};

use super::{budget, valid, Service};
use crate::{edits, reactions};

/// Messages a resend's check looks through at most (the first after its `resend_after`).
pub const MAX_RESEND_SCAN: usize = 10_000;
/// Most bytes of stored messages a late resend's check reads: 10,000 short messages fit,
/// 10,000 of the largest (16 KiB bodies, more JSON-escaped) would be a gigabyte.
pub const MAX_RESEND_SCAN_BYTES: usize = 16 * 1024 * 1024;

impl Service {
    /// May `req.user` send this edit, delete or reaction? Checked against everything the stream held
    /// for the room when asked, like a history read: the store writer is waited for
    /// (bounded), so a target, an edit or a delete that was acked a moment ago counts. Only a
    /// change published after this answer can still race this one (the store writer decides
    /// by stream order then).
    pub async fn change_check(&self, req: ChangeCheckRequest) -> Result<ChangeCheck, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.user)?;
        self.room_meta(&req.room).await?;
        let target = req.change.target();
        self.caught_up_now(&req.room).await?;
        let stored = self.model().message(&req.room, target).await?;
        let role = self
            .caches()
            .role(self.model(), &req.room, &req.user)
            .await?;
        if req.change.is_reaction() {
            let mine = self
                .model()
                .user_reactions(&req.room, target, &req.user)
                .await?;
            return reactions::check_send(
                stored.as_ref(),
                req.change,
                &req.key,
                &req.id,
                &mine,
                role,
            );
        }
        edits::check_send(stored.as_ref(), req.change, &req.user, &req.id, role)
    }

    /// Did `req.user` send a message with client id `req.id` to the room that is stored
    /// after seq `req.after`? Looked for among the first [`MAX_RESEND_SCAN`] messages after
    /// it, once the store holds everything the stream held when asked (like a history
    /// read), so a copy acked a moment ago counts. A resend within the stream's duplicate
    /// window is recognised by JetStream as well; this finds one after it.
    pub async fn sent_check(&self, req: SentCheckRequest) -> Result<ChangeCheck, ApiError> {
        valid("room", &req.room)?;
        valid("user name", &req.user)?;
        validate_msg_id(&req.id).map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.room_meta(&req.room).await?;
        self.caught_up_now(&req.room).await?;
        let found = self
            .model()
            .sent_after(
                &req.room,
                &req.user,
                &req.id,
                req.after,
                (MAX_RESEND_SCAN, MAX_RESEND_SCAN_BYTES),
            )
            .await?;
        Ok(match found {
            Some((seq, ts)) => ChangeCheck::Duplicate { seq, ts },
            None => ChangeCheck::Allowed,
        })
    }

    /// Every version of message `req.seq`, oldest first: its original, then each edit still
    /// stored (retention may have trimmed old edits). At most `1 + MAX_EDITS` versions, and
    /// the newest that fit in the page budget (`more` when cut). Who may read the room is
    /// the gateway's check.
    pub async fn edits(&self, req: EditsRequest) -> Result<EditHistory, ApiError> {
        valid("room", &req.room)?;
        self.room_meta(&req.room).await?;
        // Every edit acked when asked is stored first (the caller's own newest one too).
        self.caught_up_now(&req.room).await?;
        let not_found = || ApiError::not_found(format!("no message {} in this room", req.seq));
        let m = self
            .model()
            .message(&req.room, req.seq)
            .await?
            .ok_or_else(not_found)?;
        if m.deleted.is_some() {
            return Err(ApiError::not_found(format!(
                "message {} was deleted",
                req.seq
            )));
        }
        let first = m.original.clone().unwrap_or_else(|| m.body.clone());
        let mut versions = vec![Version {
            seq: req.seq,
            ts: m.ts,
            body: first,
        }];
        for e in &m.edits {
            if let Some(edit) = self.model().message(&req.room, e.seq).await? {
                versions.push(Version {
                    seq: e.seq,
                    ts: e.ts,
                    body: edit.body,
                });
            }
        }
        // 21 versions of 16 KiB of control characters are over nats-server's payload limit:
        // the newest that fit are kept (`budget.rs`).
        let (versions, more) = budget::fit(versions, false, self.page_budget(), true);
        Ok(EditHistory {
            room: req.room,
            seq: req.seq,
            versions,
            more,
        })
    }
}
