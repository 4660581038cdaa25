//! The rules of edits and deletes, in one place for the two that check them: the service a
//! gateway asks before it publishes one (`change_check`), and the store writer, which
//! checks again when it stores one (the room's truth) and stores a refused one as a void
//! marker, so seqs and the `prev` chain stay intact.
//!
//! An edit or a delete is a message of the room's order that refers to an earlier one (its
//! target). Only the target's author edits it; its author, the room's admins and its owner
//! delete it. The target must be a stored message of the room, a normal one (not an edit or
//! a delete), not deleted, and not one of an MLS group's own messages (a commit, proposal
//! or welcome of an `e2ee` room: members catching up need them). A message is edited at
//! most [`MAX_EDITS`] times, so its edit history stays bounded.

use chatmesh_protocol::e2ee::MlsKind;
use chatmesh_protocol::message::Change;
use chatmesh_protocol::service::{ChangeCheck, Role};
use chatmesh_protocol::ApiError;

use crate::model::{Deletion, EditRef, StoredMessage};

/// Edits one message may have.
pub const MAX_EDITS: usize = 20;

/// Whether `user` (with `role` in the room) may apply `change` to `target` (`None`: no such
/// stored message in the room).
pub fn check(
    target: Option<&StoredMessage>,
    change: Change,
    user: &str,
    role: Option<Role>,
) -> Result<(), ApiError> {
    let seq = change.target();
    let target =
        target.ok_or_else(|| ApiError::not_found(format!("no message {seq} in this room")))?;
    if !target.is_normal() {
        return Err(ApiError::bad_request(
            "only a normal message can be edited or deleted, not an edit, a delete or an event",
        ));
    }
    if target.deleted.is_some() {
        return Err(ApiError::not_found(format!("message {seq} was deleted")));
    }
    if target.mls.as_ref().is_some_and(|m| m.kind != MlsKind::App) {
        return Err(ApiError::bad_request(
            "an MLS commit, proposal or welcome is the group's state: members catching up need it, it cannot be changed",
        ));
    }
    match change {
        Change::Edit(_) if target.from != user => Err(ApiError::forbidden(
            "only the author of a message may edit it",
        )),
        Change::Edit(_) if target.edits.len() >= MAX_EDITS => Err(ApiError::forbidden(format!(
            "a message can be edited at most {MAX_EDITS} times"
        ))),
        Change::Delete(_)
            if target.from != user && !matches!(role, Some(Role::Admin | Role::Owner)) =>
        {
            Err(ApiError::forbidden(
                "only the author, a room admin or the owner may delete a message",
            ))
        }
        _ => Ok(()),
    }
}

/// The check a gateway asks for: a resend of a change that was already stored (same user,
/// same client id) is a duplicate and answered with the stored seq and ts, whatever the
/// rules say now (the target may have been deleted by that very change).
pub fn check_send(
    target: Option<&StoredMessage>,
    change: Change,
    user: &str,
    id: &str,
    role: Option<Role>,
) -> Result<ChangeCheck, ApiError> {
    if let Some(t) = target {
        if let Some(d) = t.deleted.as_ref().filter(|d| d.by == user && d.id == id) {
            return Ok(ChangeCheck::Duplicate {
                seq: d.seq,
                ts: d.ts,
            });
        }
        if t.from == user {
            if let Some(e) = t.edits.iter().find(|e| e.id == id) {
                return Ok(ChangeCheck::Duplicate {
                    seq: e.seq,
                    ts: e.ts,
                });
            }
        }
    }
    if role.is_none() {
        // As for any send: the gateway's cached access may be older than a removal.
        return Err(ApiError::forbidden("only members may post to this room"));
    }
    check(target, change, user, role).map(|()| ChangeCheck::Allowed)
}

/// Applies the checked edit `edit` (stored at `seq`) to `target`.
pub fn apply_edit(target: &mut StoredMessage, seq: u64, edit: &StoredMessage) {
    let old = std::mem::replace(&mut target.body, edit.body.clone());
    target.original.get_or_insert(old);
    target.edits.push(EditRef {
        seq,
        ts: edit.ts,
        id: edit.id.clone(),
    });
}

/// Makes `target` a tombstone for the checked delete `delete` (stored at `seq`). Returns the
/// ids of the files it carried, whose references must go too.
pub fn apply_delete(target: &mut StoredMessage, seq: u64, delete: &StoredMessage) -> Vec<String> {
    target.body.clear();
    target.original = None;
    // An e2ee room's ciphertext goes like a body (its file, if it had one, below).
    target.mls = None;
    // Its reactions go with it (the caller deletes their records); a thread stays readable.
    target.reactions.clear();
    target.deleted = Some(Deletion {
        seq,
        ts: delete.ts,
        by: delete.from.clone(),
        id: delete.id.clone(),
    });
    std::mem::take(&mut target.attachments)
        .into_iter()
        .map(|a| a.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_protocol::e2ee::Mls;
    use chatmesh_protocol::ErrorCode;

    fn msg(from: &str, body: &str) -> StoredMessage {
        StoredMessage {
            id: "m".into(),
            from: from.into(),
            ts: 1,
            body: body.into(),
            ..Default::default()
        }
    }

    fn code(r: Result<(), ApiError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn only_the_author_edits_and_admins_delete() {
        let t = msg("ann", "hi");
        let member = Some(Role::Member);
        assert_eq!(code(check(Some(&t), Change::Edit(1), "ann", member)), None);
        assert_eq!(
            code(check(Some(&t), Change::Edit(1), "bob", Some(Role::Owner))),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(check(Some(&t), Change::Delete(1), "bob", member)),
            Some(ErrorCode::Forbidden)
        );
        for role in [Role::Admin, Role::Owner] {
            assert_eq!(
                code(check(Some(&t), Change::Delete(1), "bob", Some(role))),
                None
            );
        }
        assert_eq!(
            code(check(Some(&t), Change::Delete(1), "ann", member)),
            None
        );
    }

    #[test]
    fn targets_must_be_live_normal_messages() {
        assert_eq!(
            code(check(None, Change::Edit(1), "ann", None)),
            Some(ErrorCode::NotFound)
        );
        let mut edit = msg("ann", "x");
        edit.edit_of = Some(1);
        assert_eq!(
            code(check(Some(&edit), Change::Edit(2), "ann", None)),
            Some(ErrorCode::BadRequest)
        );
        let mut t = msg("ann", "hi");
        let del = msg("ann", "");
        apply_delete(&mut t, 3, &del);
        assert_eq!(t.body, "");
        assert_eq!(
            code(check(Some(&t), Change::Edit(1), "ann", None)),
            Some(ErrorCode::NotFound)
        );
    }

    #[test]
    fn an_mls_groups_own_messages_stay_and_a_deleted_ciphertext_goes() {
        let mls = |kind| Mls {
            kind,
            epoch: 0,
            data: "Y2lwaGVy".into(),
            file: None,
        };
        let admin = Some(Role::Admin);
        for kind in [MlsKind::Commit, MlsKind::Proposal, MlsKind::Welcome] {
            let mut t = msg("ann", "");
            t.mls = Some(mls(kind));
            assert_eq!(
                code(check(Some(&t), Change::Delete(1), "ann", admin)),
                Some(ErrorCode::BadRequest),
                "{kind:?}"
            );
        }
        let mut t = msg("ann", "");
        t.mls = Some(mls(MlsKind::App));
        assert_eq!(code(check(Some(&t), Change::Delete(1), "bob", admin)), None);
        apply_delete(&mut t, 2, &msg("bob", ""));
        assert!(t.mls.is_none() && t.deleted.is_some());
    }

    #[test]
    fn edits_are_bounded_and_resends_are_duplicates() {
        let mut t = msg("ann", "v0");
        for i in 0..MAX_EDITS as u64 {
            let mut e = msg("ann", &format!("v{}", i + 1));
            e.id = format!("e{i}");
            apply_edit(&mut t, 10 + i, &e);
        }
        assert_eq!(t.original.as_deref(), Some("v0"));
        assert_eq!(t.body, format!("v{MAX_EDITS}"));
        assert_eq!(
            code(check(Some(&t), Change::Edit(1), "ann", None)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            check_send(Some(&t), Change::Edit(1), "ann", "e3", None).unwrap(),
            ChangeCheck::Duplicate { seq: 13, ts: 1 }
        );
    }
}
