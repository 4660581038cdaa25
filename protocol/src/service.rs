//! Request-reply messages between gateways and workers over NATS.
//!
//! A request goes to `chat.svc.<p>.<op>` where `p` is the partition of its key (the room, or
//! the user for user-keyed operations), so the worker that owns the partition answers it and
//! its caches stay the only writer's caches. Replies are [`Reply`]: `{"ok":..}` or
//! `{"error":{"code","message"}}`. Authorisation of membership changes is decided by the
//! worker (the `actor` field), in one place for every gateway.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::message::Message;

/// The reply to any service request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    Ok(T),
    Error(ApiError),
}

impl<T> From<Result<T, ApiError>> for Reply<T> {
    fn from(r: Result<T, ApiError>) -> Self {
        match r {
            Ok(v) => Reply::Ok(v),
            Err(e) => Reply::Error(e),
        }
    }
}

impl<T> Reply<T> {
    pub fn into_result(self) -> Result<T, ApiError> {
        match self {
            Reply::Ok(v) => Ok(v),
            Reply::Error(e) => Err(e),
        }
    }
}

/// A service operation: its subject token, request and response types.
pub trait Op {
    /// Last token of the request subject.
    const NAME: &'static str;
    type Request: Serialize + for<'de> Deserialize<'de>;
    type Response: Serialize + for<'de> Deserialize<'de>;
}

macro_rules! op {
    ($ty:ident, $name:literal, $req:ty, $resp:ty) => {
        #[doc = concat!("The `", $name, "` operation.")]
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;
        impl Op for $ty {
            const NAME: &'static str = $name;
            type Request = $req;
            type Response = $resp;
        }
    };
}
pub(crate) use op;

/// Kind of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    Public,
    Private,
    Dm,
    /// End-to-end encrypted (extension): members only, like a private room, and every
    /// message carries an MLS message instead of a body.
    E2ee,
}

/// A member's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

/// A user name and password (`register`, `login`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// `register` of a name listed in `[admin] users` only (extension): the deployment's
    /// admin bootstrap token (`[admin] bootstrap_token`), without which such a name cannot
    /// be registered, so nobody else takes a server admin's name first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// The client address the gateway saw (set by the gateway, never taken from a client):
    /// the audit log's record of a server admin's registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `login` (extension): the device token an earlier login of this account on this
    /// device was given. With a valid one the login is a known device's: it is not held by
    /// the lockouts and limits that guessing from elsewhere set off (docs/SECURITY.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Set by the gateway, never taken from a client: the id of the known device the login
    /// comes from (it brought a valid, unrevoked device token of this account). The worker
    /// admits it to a hashing place kept for known devices (one per account at a time), and
    /// refuses it on the device's count of wrong passwords over every gateway rather than
    /// the account's (its wrong passwords count toward both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_device: Option<String>,
}

impl Credentials {
    /// A user name and password, without an admin bootstrap token.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            admin_token: None,
            ip: None,
            device: None,
            known_device: None,
        }
    }
}

/// The secrets are not printed.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("ip", &self.ip)
            .field("device", &self.device.as_ref().map(|_| "<redacted>"))
            .field("known_device", &self.known_device)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub user: String,
}

/// A successful login: the user and its token generation, which the gateway writes into the
/// token (`gen` claim) so that `logout_all` can revoke every token issued before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginInfo {
    pub user: String,
    #[serde(default)]
    pub gen: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRequest {
    pub user: String,
}

/// A user's token generation: tokens carrying a lower `gen` are revoked. 0 for users with no
/// record (external issuers' users).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserGen {
    pub gen: u64,
    /// The account was disabled by a server admin: every token of it is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// A user's token generation moved (`logout_all`), published on `chat.user.<user>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    pub user: String,
    pub gen: u64,
    /// Set when the account was disabled (admin API).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRoomRequest {
    pub room: String,
    pub kind: RoomKind,
    /// The creator; becomes owner.
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub room: String,
    pub kind: RoomKind,
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomUserRequest {
    pub room: String,
    pub user: String,
}

/// What a user may do in a room. Gateways cache it, keyed by (room, user), and drop it when
/// a membership event for the room arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub kind: RoomKind,
    /// The user's role, `None` if not a member.
    pub role: Option<Role>,
    /// Last seq the worker has stored for the room.
    pub last_seq: u64,
    /// The user is banned from the room (moderation extension): it reads nothing there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub banned: bool,
    /// The user is muted until then (unix seconds; `u64::MAX`: until unmuted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<u64>,
    /// A DM whose other member has blocked the user (blocks extension): it reads, but sends
    /// nothing there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
}

impl Access {
    /// May the user read the room (join live, history)?
    pub fn can_read(&self) -> bool {
        !self.banned && (self.role.is_some() || self.kind == RoomKind::Public)
    }
    /// Is the user a member (may type, read receipts; sends also need [`Access::muted`])?
    pub fn can_post(&self) -> bool {
        self.role.is_some()
    }
    /// Is the user muted at `now` (unix seconds)?
    pub fn muted(&self, now: u64) -> bool {
        self.muted_until.is_some_and(|until| now < until)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMemberRequest {
    pub room: String,
    pub user: String,
    pub role: Role,
    pub actor: String,
    /// Set when the add accepts an invitation: the invitation's `ts` (unix ms). The add is
    /// refused (`forbidden`) when someone else removed the user from the room since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveMemberRequest {
    pub room: String,
    pub user: String,
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRoomsRequest {
    pub user: String,
    /// The next page of the user's rooms: those whose names sort after this one (no public
    /// rooms on such a page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Unread mentions are counted up to this (clients show "99+").
pub const MAX_MENTION_COUNT: u64 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomListing {
    pub room: String,
    pub kind: RoomKind,
    pub role: Option<Role>,
    pub last_seq: u64,
    pub unread: u64,
    /// Unread messages that mention the user, by name or `@room` (extension; counted up to
    /// `MAX_MENTION_COUNT`).
    #[serde(default)]
    pub mentions: u64,
    /// For a DM: the other user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The room's topic, if one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The room's display name, if one is set (moderation extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A DM the user closed with nothing sent there since (closing-DMs extension): clients
    /// leave it out of what they show until a newer message arrives. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomList {
    pub rooms: Vec<RoomListing>,
    /// More of the user's rooms follow: ask again with `after` the last of them.
    #[serde(default)]
    pub more: bool,
    /// Regions with workers of their own that did not answer (cut off): the user's rooms
    /// homed there are missing from `rooms` (docs/REGIONS.md section 12). Absent when every
    /// region answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmRequest {
    pub a: String,
    pub b: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmRoom {
    pub room: String,
}

/// A page of stored messages, oldest first. With `after`, the page starts just above it
/// and holds what the store has (used to resume from the store; the caller reads anything
/// newer from the stream); otherwise it ends just below `before` (or the latest) and
/// includes every message the stream held when asked (the worker waits, bounded, for its
/// store, else answers `unavailable`). Either way the page may hold fewer than `limit`
/// messages to stay under the bus's payload limit (then `more` is set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRequest {
    pub room: String,
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    /// More messages exist beyond this page in the direction read.
    pub more: bool,
}

/// May `user` send `change` (an edit, a delete or a reaction) with client id `id` in
/// `room`? Asked by a gateway before it publishes one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCheckRequest {
    pub room: String,
    pub user: String,
    pub id: String,
    pub change: crate::message::Change,
    /// A reaction's key (its body); empty for an edit or a delete.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
}

/// The answer to a [`ChangeCheckRequest`] that is not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeCheck {
    /// Publish it.
    Allowed,
    /// The same user already sent this change with this id and it was stored: ack this.
    Duplicate { seq: u64, ts: u64 },
}

/// Was a message with client id `id` sent by `user` to `room` and stored after seq `after`?
/// Asked for a `send` with `resend_after`; answered [`ChangeCheck::Duplicate`] with its seq
/// and ts, or [`ChangeCheck::Allowed`] (publish it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentCheckRequest {
    pub room: String,
    pub user: String,
    pub id: String,
    pub after: u64,
}

/// The versions of one message (`GET /v1/rooms/{room}/messages/{seq}/edits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditsRequest {
    pub room: String,
    pub seq: u64,
}

/// One version of a message: the original (its own seq and ts) or an edit's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub seq: u64,
    pub ts: u64,
    pub body: String,
}

/// Every version of a message, oldest first; the last one is its current body. `more`:
/// the oldest versions were left out to keep the reply within its byte budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditHistory {
    pub room: String,
    pub seq: u64,
    pub versions: Vec<Version>,
    #[serde(default)]
    pub more: bool,
}

/// May `user` reply to message `reply_to` of `room`? Asked by a gateway before it publishes
/// a reply; the answer names the thread's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyCheckRequest {
    pub room: String,
    pub user: String,
    pub reply_to: u64,
}

/// The thread a reply joins: `reply_to`'s own root if it is a reply, else `reply_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyCheck {
    pub root: u64,
}

/// A page of the replies to `root` (`GET /v1/rooms/{room}/messages/{root}/thread`), oldest
/// first, above `after`; `user` is the reader whose unread replies are counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadRequest {
    pub room: String,
    pub root: u64,
    pub user: String,
    pub after: Option<u64>,
    pub limit: u32,
}

/// One page of a thread: the root in its current version (absent once retention trimmed
/// it), the replies, whether more follow, and the reader's unread replies (above its thread
/// read cursor, not its own, counted up to 100) with that cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadPage {
    pub room: String,
    pub root: Option<Message>,
    pub messages: Vec<Message>,
    pub more: bool,
    pub unread: u64,
    pub read: u64,
}

/// Moves `user`'s read cursor in the thread of `root` forward to `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadReadRequest {
    pub room: String,
    pub root: u64,
    pub user: String,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetCursorRequest {
    pub room: String,
    pub user: String,
    pub seq: u64,
}

/// A membership change, published on `chat.mem.<room>` after it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEvent {
    pub room: String,
    pub user: String,
    /// The new role, `None` if removed.
    pub role: Option<Role>,
    /// Only the user's access changed (a ban lifted, a mute; moderation extension), not its
    /// membership: gateways drop cached access and tell no session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
}

/// A page of a room's members, by user name, after `after` (exclusive). Members only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersRequest {
    pub room: String,
    /// Who asks; must be a member.
    pub actor: String,
    pub after: Option<String>,
    pub limit: u32,
    /// Leave display names out (the push notifier needs user names only; with
    /// `mesh.regional_workers` each name costs an ask of the primary region).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub without_names: bool,
}

/// One member of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub user: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The member is muted (moderation extension).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
    /// When its mute ends (unix seconds); absent for a mute until unmuted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPage {
    pub members: Vec<MemberInfo>,
    /// More members follow the last one of this page.
    pub more: bool,
}

/// The stream refused a message of `room`: its subject is at the cap
/// (`stream_max_msgs_per_room`). The room's worker purges from the stream what it has stored
/// of the room, so the gateway's retry can land.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrimRequest {
    pub room: String,
}

/// What a [`TrimRequest`] did: the room's messages below `below` are out of the stream
/// (`purged` of them just now; 0 when an earlier trim had done it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trimmed {
    pub below: u64,
    pub purged: u64,
}

/// Sets (or, with `None`, clears) a room's topic. Owner or admin only; the topic is checked
/// by [`crate::text::clean_topic`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetTopicRequest {
    pub room: String,
    pub actor: String,
    pub topic: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomTopic {
    pub room: String,
    pub topic: Option<String>,
}

/// A user's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub user: String,
    pub display_name: Option<String>,
}

/// Sets (or, with `None`, clears) the user's display name, checked by
/// [`crate::text::clean_display_name`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetProfileRequest {
    pub user: String,
    pub display_name: Option<String>,
}

/// Changes a password: `unauthorized` if `old_password` is wrong. On success every token
/// issued so far is revoked (the generation moves, as for `logout_all`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePasswordRequest {
    pub user: String,
    pub old_password: String,
    pub new_password: String,
}

impl std::fmt::Debug for ChangePasswordRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangePasswordRequest")
            .field("user", &self.user)
            .field("old_password", &"<redacted>")
            .field("new_password", &"<redacted>")
            .finish()
    }
}

/// An empty response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

op!(Register, "register", Credentials, UserInfo);
op!(Login, "login", Credentials, LoginInfo);
op!(CreateRoom, "room_create", CreateRoomRequest, RoomInfo);
op!(GetAccess, "access", RoomUserRequest, Access);
op!(JoinRoom, "join", RoomUserRequest, Access);
op!(AddMember, "member_add", AddMemberRequest, Done);
op!(RemoveMember, "member_remove", RemoveMemberRequest, Done);
op!(ListRooms, "rooms_list", ListRoomsRequest, RoomList);
op!(OpenDm, "dm", DmRequest, DmRoom);
op!(CloseDm, "dm_close", DmRequest, Done);
op!(History, "history", HistoryRequest, HistoryPage);
op!(SetCursor, "cursor", SetCursorRequest, Done);
op!(CheckChange, "change_check", ChangeCheckRequest, ChangeCheck);
op!(CheckSent, "sent_check", SentCheckRequest, ChangeCheck);
op!(GetEdits, "edits", EditsRequest, EditHistory);
op!(
    Search,
    "search",
    crate::search::SearchRequest,
    crate::search::SearchResults
);
op!(CheckReply, "reply_check", ReplyCheckRequest, ReplyCheck);
op!(GetThread, "thread", ThreadRequest, ThreadPage);
op!(ReadThread, "thread_read", ThreadReadRequest, Done);
op!(GetUserGen, "user_gen", UserRequest, UserGen);
op!(LogoutAll, "logout_all", UserRequest, UserGen);
op!(ListMembers, "members_list", MembersRequest, MemberPage);
op!(SetTopic, "room_topic", SetTopicRequest, RoomTopic);
op!(TrimRoom, "room_trim", TrimRequest, Trimmed);
op!(GetProfile, "profile_get", UserRequest, Profile);
op!(SetProfile, "profile_set", SetProfileRequest, Profile);
op!(
    FileBegin,
    "file_begin",
    crate::files::FileBeginRequest,
    Done
);
op!(
    FileCommit,
    "file_commit",
    crate::files::FileCommitRequest,
    crate::files::FileInfo
);
op!(FileAbort, "file_abort", crate::files::FileRequest, Done);
op!(
    FileGet,
    "file_get",
    crate::files::FileRequest,
    crate::files::FileInfo
);
op!(
    FileAttach,
    "file_attach",
    crate::files::AttachRequest,
    crate::files::Attachments
);
op!(
    PushTargetAdd,
    "push_target_add",
    crate::push::AddTargetRequest,
    crate::push::TargetInfo
);
op!(
    PushTargets,
    "push_targets",
    UserRequest,
    crate::push::TargetList
);
op!(
    PushTargetRemove,
    "push_target_remove",
    crate::push::TargetRequest,
    Done
);
op!(
    PushSettingsGet,
    "push_settings_get",
    UserRequest,
    crate::push::PushSettings
);
op!(
    PushSettingsSet,
    "push_settings_set",
    crate::push::SetSettingsRequest,
    crate::push::PushSettings
);
op!(PushVapid, "push_vapid", UserRequest, crate::push::VapidKey);
op!(
    ChangePassword,
    "password_change",
    ChangePasswordRequest,
    UserGen
);

// Room moderation (extension): each answers the room event for the gateway to publish.
use crate::moderation as md;
op!(Ban, "ban", md::BanRequest, md::RoomEvent);
op!(Unban, "unban", md::LiftRequest, md::RoomEvent);
op!(Mute, "mute", md::MuteRequest, md::RoomEvent);
op!(Unmute, "unmute", md::LiftRequest, md::RoomEvent);
op!(ListBans, "bans_list", md::BansRequest, md::BanPage);
op!(SetName, "room_name", md::SetNameRequest, md::RoomName);

// End-to-end encrypted rooms (extension): the key-package directory (keyed by the user whose
// keys they are) and a room's epoch.
use crate::e2ee as mls;
op!(
    IdentitySet,
    "e2ee_identity",
    mls::SetIdentityRequest,
    mls::Identity
);
op!(
    IdentityReplace,
    "e2ee_identity_replace",
    mls::ReplaceIdentityRequest,
    mls::Identity
);
op!(
    DevicePut,
    "e2ee_device_put",
    mls::PutDeviceRequest,
    mls::DeviceInfo
);
op!(DeviceDelete, "e2ee_device_delete", mls::DeviceRequest, Done);
op!(
    Devices,
    "e2ee_devices",
    mls::DeviceRequest,
    mls::UserDevices
);
op!(
    KeyPackagesAdd,
    "e2ee_key_packages",
    mls::AddKeyPackagesRequest,
    mls::KeyPackageCount
);
op!(Claim, "e2ee_claim", mls::DeviceRequest, mls::Claimed);
op!(
    RoomEpochGet,
    "room_epoch",
    mls::RoomEpochRequest,
    mls::RoomEpoch
);
op!(
    GroupPut,
    "e2ee_group_put",
    mls::GroupPutRequest,
    mls::RoomGroup
);
op!(GroupGet, "e2ee_group_get", RoomUserRequest, mls::RoomGroup);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn reply_wire_shape() {
        let ok: Reply<UserInfo> = Reply::Ok(UserInfo { user: "a".into() });
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"ok":{"user":"a"}}"#
        );
        let err: Reply<Done> = Reply::Error(ApiError::conflict("taken"));
        let s = serde_json::to_string(&err).unwrap();
        assert_eq!(s, r#"{"error":{"code":"conflict","message":"taken"}}"#);
        let back: Reply<Done> = serde_json::from_str(&s).unwrap();
        assert_eq!(back.into_result().unwrap_err().code, ErrorCode::Conflict);
    }

    #[test]
    fn access_rules() {
        let a = Access {
            kind: RoomKind::Public,
            role: None,
            last_seq: 0,
            banned: false,
            muted_until: None,
            blocked: false,
        };
        assert!(a.can_read() && !a.can_post());
        let p = Access {
            kind: RoomKind::Private,
            ..a.clone()
        };
        assert!(!p.can_read());
        let banned = Access {
            banned: true,
            ..a.clone()
        };
        assert!(!banned.can_read());
        let muted = Access {
            role: Some(Role::Member),
            muted_until: Some(100),
            ..a
        };
        assert!(muted.can_post() && muted.muted(99) && !muted.muted(100));
    }
}
