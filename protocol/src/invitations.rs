//! Invitations (extension, docs/PROTOCOL.md "Invitations"): a user who chose to be added to
//! rooms only by invitation (`adds: "invitations"`) is not made a member when an owner or
//! admin adds it; an invitation is kept instead, which the user accepts (then it is added
//! with the role it was invited with, if the inviter may still add members) or declines.
//! Invitations live with the accounts (the user's partition, the primary region's workers);
//! the room's worker decides, as for any add, whether the inviter may add the user.

use serde::{Deserialize, Serialize};

use crate::service::{op, AddMemberRequest, Done, Op, Role, UserRequest};

/// Most invitations one user holds at once; one more is refused `conflict` until the user
/// accepts or declines one.
pub const MAX_PENDING: usize = 200;
/// Most invitations on one page of `GET /v1/users/me/invitations`.
pub const MAX_INVITATIONS_PAGE: u32 = 200;
/// Header of a `chat.user.<user>` event that tells the user's sessions of a new invitation
/// (its body an [`Invitation`]), not of an account change.
pub const INVITATION_EVENT: &str = "Chatmesh-Invitation";

/// Who may add a user to rooms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Adds {
    /// Any owner or admin of a room (protocol v1).
    #[default]
    Anyone,
    /// Nobody: an add is an invitation the user accepts or declines.
    Invitations,
}

/// A user's choice of [`Adds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddsSetting {
    pub adds: Adds,
}

/// Sets `user`'s [`Adds`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAddsRequest {
    pub user: String,
    pub adds: Adds,
}

/// The room worker's answer to an add that may become an invitation (`member_invite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteCheck {
    /// The user is not a member yet: nothing changed, and an invitation is to be kept.
    /// `false`: the user was a member already, and its role is now the one asked for.
    pub invite: bool,
}

/// Keeps an invitation of `user` to `room` by `by` with `role` (replacing one to the same
/// room).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRequest {
    pub user: String,
    pub room: String,
    pub by: String,
    pub role: Role,
}

/// `user`'s invitation to `room`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationQuery {
    pub user: String,
    pub room: String,
}

/// One invitation: to `room`, by `by`, with `role`, kept at `ts` (ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub room: String,
    pub by: String,
    pub role: Role,
    pub ts: u64,
}

/// A page of `user`'s invitations, by room after `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationsRequest {
    pub user: String,
    pub after: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationPage {
    pub invitations: Vec<Invitation>,
    /// More invitations follow the last one of this page.
    pub more: bool,
}

op!(GetAdds, "adds_get", UserRequest, AddsSetting);
op!(SetAdds, "adds_set", SetAddsRequest, AddsSetting);
op!(InviteMember, "member_invite", AddMemberRequest, InviteCheck);
op!(PutInvitation, "invitation_put", InviteRequest, Invitation);
op!(GetInvitation, "invitation_get", InvitationQuery, Invitation);
op!(DeleteInvitation, "invitation_delete", InvitationQuery, Done);
op!(
    ListInvitations,
    "invitations_list",
    InvitationsRequest,
    InvitationPage
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_read_as_their_names() {
        let on: AddsSetting = serde_json::from_str(r#"{"adds":"invitations"}"#).unwrap();
        assert_eq!(on.adds, Adds::Invitations);
        assert_eq!(
            serde_json::to_string(&AddsSetting { adds: Adds::Anyone }).unwrap(),
            r#"{"adds":"anyone"}"#
        );
        assert!(serde_json::from_str::<AddsSetting>(r#"{"adds":"nobody"}"#).is_err());
    }
}
