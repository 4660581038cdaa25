//! The rules of reactions, in one place for the two that check them: the service a gateway
//! asks before it publishes one (`change_check`, as for edits), and the store writer, which
//! checks again when it stores one and stores a refused one as a void marker.
//!
//! A reaction (`react_to`) puts the sender's key on an earlier message; an unreaction
//! (`unreact_to`) takes it off. The target must be a stored, normal, not deleted message of
//! the room and the sender a member. A user puts a key on a message once, at most
//! [`MAX_PER_USER`] keys per message; a message holds at most [`MAX_KEYS_PER_MESSAGE`]
//! distinct keys; only one's own reaction can be taken off. The target carries the
//! aggregate (count and up to [`MAX_USERS_LISTED`] users per key); who reacted how is in one
//! record per (message, user), [`UserReactions`].

use chatmesh_protocol::message::Change;
use chatmesh_protocol::reactions::{
    Reaction, MAX_KEYS_PER_MESSAGE, MAX_PER_USER, MAX_USERS_LISTED,
};
use chatmesh_protocol::service::{ChangeCheck, Role};
use chatmesh_protocol::ApiError;

use crate::model::{MarkRemoval, ReactionMark, StoredMessage, UserReactions};

/// Whether `user` (with `role` in the room, and `mine` its reactions on the target) may
/// apply the reaction `change` with `key` to `target` (`None`: no such stored message).
pub fn check(
    target: Option<&StoredMessage>,
    change: Change,
    key: &str,
    mine: &UserReactions,
    role: Option<Role>,
) -> Result<(), ApiError> {
    let seq = change.target();
    if role.is_none() {
        return Err(ApiError::forbidden("only members may react"));
    }
    let target =
        target.ok_or_else(|| ApiError::not_found(format!("no message {seq} in this room")))?;
    if !target.is_normal() {
        return Err(ApiError::bad_request(
            "only a normal message can get reactions, not an edit, a delete or a reaction",
        ));
    }
    if target.deleted.is_some() {
        return Err(ApiError::not_found(format!("message {seq} was deleted")));
    }
    let has = mine.active().any(|m| m.key == key);
    match change {
        Change::React(_) if has => Err(ApiError::bad_request(format!(
            "you already reacted with {key} to message {seq}"
        ))),
        Change::React(_) if mine.active().count() >= MAX_PER_USER => Err(ApiError::forbidden(
            format!("a user puts at most {MAX_PER_USER} reactions on one message"),
        )),
        Change::React(_)
            if target.reactions.len() >= MAX_KEYS_PER_MESSAGE
                && !target.reactions.iter().any(|r| r.key == key) =>
        {
            Err(ApiError::forbidden(format!(
                "a message holds at most {MAX_KEYS_PER_MESSAGE} different reactions"
            )))
        }
        Change::Unreact(_) if !has => Err(ApiError::not_found(format!(
            "you have no reaction {key} on message {seq}"
        ))),
        _ => Ok(()),
    }
}

/// The check a gateway asks for: a resend of a reaction or removal that was already stored
/// (same user, same client id) is a duplicate, answered with the stored seq and ts.
pub fn check_send(
    target: Option<&StoredMessage>,
    change: Change,
    key: &str,
    id: &str,
    mine: &UserReactions,
    role: Option<Role>,
) -> Result<ChangeCheck, ApiError> {
    for m in &mine.marks {
        let stored = match change {
            Change::React(_) => (m.id == id).then_some((m.seq, m.ts)),
            _ => m
                .removed
                .as_ref()
                .filter(|r| r.id == id)
                .map(|r| (r.seq, r.ts)),
        };
        if let Some((seq, ts)) = stored {
            return Ok(ChangeCheck::Duplicate { seq, ts });
        }
    }
    check(target, change, key, mine, role).map(|()| ChangeCheck::Allowed)
}

/// Applies the checked reaction `msg` (stored at `seq`, its body the key) to `target` and
/// to its sender's reactions `mine`. Returns true when the target's list of users for the
/// key lost one while more users still react with it: the caller refills it
/// ([`refill`]).
pub fn apply(
    target: &mut StoredMessage,
    mine: &mut UserReactions,
    seq: u64,
    msg: &StoredMessage,
    change: Change,
) -> bool {
    let key = msg.body.as_str();
    let user = msg.from.as_str();
    match change {
        Change::React(_) => {
            mine.marks.retain(|m| m.key != key);
            mine.marks.push(ReactionMark {
                key: key.to_owned(),
                seq,
                ts: msg.ts,
                id: msg.id.clone(),
                removed: None,
            });
            // Keep the marks bounded: forget the oldest removals first.
            while mine.marks.len() > MAX_KEYS_PER_MESSAGE {
                let Some(i) = mine.marks.iter().position(|m| m.removed.is_some()) else {
                    break;
                };
                mine.marks.remove(i);
            }
            match target.reactions.iter_mut().find(|r| r.key == key) {
                Some(r) => {
                    r.count += 1;
                    if r.users.len() < MAX_USERS_LISTED {
                        r.users.push(user.to_owned());
                    }
                }
                None => target.reactions.push(Reaction {
                    key: key.to_owned(),
                    count: 1,
                    users: vec![user.to_owned()],
                }),
            }
            false
        }
        _ => {
            if let Some(m) = mine
                .marks
                .iter_mut()
                .find(|m| m.key == key && m.removed.is_none())
            {
                m.removed = Some(MarkRemoval {
                    seq,
                    ts: msg.ts,
                    id: msg.id.clone(),
                });
            }
            let Some(i) = target.reactions.iter().position(|r| r.key == key) else {
                return false;
            };
            let r = &mut target.reactions[i];
            r.count = r.count.saturating_sub(1);
            let listed = r.users.len();
            r.users.retain(|u| u != user);
            if r.count == 0 {
                target.reactions.remove(i);
                return false;
            }
            r.users.len() < listed && (r.users.len() as u64) < r.count
        }
    }
}

/// Reaction records a refill reads at most ([`refill`]): on a message with more reacting
/// users, the list is refilled from the first of them by name.
pub const REFILL_READS: usize = 1_024;

/// Refills the list of users of `key` on `target` from users' reactions (`all`, by user
/// name; every user's, or the first [`REFILL_READS`]), the earliest reactions first.
pub fn refill(target: &mut StoredMessage, key: &str, all: &[(String, UserReactions)]) {
    let Some(r) = target.reactions.iter_mut().find(|r| r.key == key) else {
        return;
    };
    let mut more: Vec<(u64, &str)> = all
        .iter()
        .filter(|(u, _)| !r.users.contains(u))
        .filter_map(|(u, mine)| {
            mine.active()
                .find(|m| m.key == key)
                .map(|m| (m.seq, u.as_str()))
        })
        .collect();
    more.sort_unstable();
    for (_, u) in more {
        if r.users.len() >= MAX_USERS_LISTED {
            break;
        }
        r.users.push(u.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmesh_protocol::ErrorCode;

    fn msg(from: &str, id: &str, body: &str) -> StoredMessage {
        StoredMessage {
            id: id.into(),
            from: from.into(),
            ts: 1,
            body: body.into(),
            ..Default::default()
        }
    }

    fn code(r: Result<(), ApiError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    const M: Option<Role> = Some(Role::Member);

    #[test]
    fn a_key_once_per_user_and_only_ones_own_comes_off() {
        let mut t = msg("ann", "m", "hi");
        let mut bob = UserReactions::default();
        let r = Change::React(1);
        assert_eq!(
            code(check(Some(&t), r, "👍", &bob, None)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(code(check(Some(&t), r, "👍", &bob, M)), None);
        assert!(!apply(&mut t, &mut bob, 2, &msg("bob", "r1", "👍"), r));
        assert_eq!(t.reactions[0].count, 1);
        assert_eq!(
            code(check(Some(&t), r, "👍", &bob, M)),
            Some(ErrorCode::BadRequest)
        );
        let u = Change::Unreact(1);
        let cat = UserReactions::default();
        assert_eq!(
            code(check(Some(&t), u, "👍", &cat, M)),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(
            check_send(Some(&t), r, "👍", "r1", &bob, M).unwrap(),
            ChangeCheck::Duplicate { seq: 2, ts: 1 }
        );
        apply(&mut t, &mut bob, 3, &msg("bob", "u1", "👍"), u);
        assert!(t.reactions.is_empty());
        assert_eq!(
            check_send(Some(&t), u, "👍", "u1", &bob, M).unwrap(),
            ChangeCheck::Duplicate { seq: 3, ts: 1 }
        );
        assert_eq!(
            code(check(Some(&t), r, "👍", &bob, M)),
            None,
            "again after removal"
        );
    }

    #[test]
    fn reactions_are_bounded_per_user_and_per_message() {
        let mut t = msg("ann", "m", "hi");
        let mut bob = UserReactions::default();
        for i in 0..MAX_PER_USER {
            let key = format!("k{i}");
            apply(
                &mut t,
                &mut bob,
                10 + i as u64,
                &msg("bob", &key, &key),
                Change::React(1),
            );
        }
        assert_eq!(
            code(check(Some(&t), Change::React(1), "x", &bob, M)),
            Some(ErrorCode::Forbidden)
        );
        let mut cat = UserReactions::default();
        for i in MAX_PER_USER..MAX_KEYS_PER_MESSAGE {
            let key = format!("k{i}");
            apply(
                &mut t,
                &mut cat,
                100 + i as u64,
                &msg("cat", &key, &key),
                Change::React(1),
            );
        }
        let dan = UserReactions::default();
        assert_eq!(
            code(check(Some(&t), Change::React(1), "new", &dan, M)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(code(check(Some(&t), Change::React(1), "k0", &dan, M)), None);
    }

    #[test]
    fn listed_users_are_refilled() {
        let mut t = msg("ann", "m", "hi");
        let mut all = Vec::new();
        for i in 0..=MAX_USERS_LISTED {
            let user = format!("u{i:02}");
            let mut mine = UserReactions::default();
            apply(
                &mut t,
                &mut mine,
                10 + i as u64,
                &msg(&user, "r", "👍"),
                Change::React(1),
            );
            all.push((user, mine));
        }
        assert_eq!(t.reactions[0].count, MAX_USERS_LISTED as u64 + 1);
        assert_eq!(t.reactions[0].users.len(), MAX_USERS_LISTED);
        let (u0, mut mine) = all.remove(0);
        assert!(apply(
            &mut t,
            &mut mine,
            99,
            &msg(&u0, "x", "👍"),
            Change::Unreact(1)
        ));
        refill(&mut t, "👍", &all);
        assert_eq!(t.reactions[0].users.len(), MAX_USERS_LISTED);
        assert!(t.reactions[0]
            .users
            .contains(&format!("u{MAX_USERS_LISTED:02}")));
        let mut del = t.clone();
        del.deleted = Some(crate::model::Deletion {
            seq: 5,
            ts: 1,
            by: "ann".into(),
            id: "d".into(),
        });
        assert_eq!(
            code(check(
                Some(&del),
                Change::React(1),
                "👍",
                &UserReactions::default(),
                M
            )),
            Some(ErrorCode::NotFound)
        );
    }
}
