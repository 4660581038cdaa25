//! The values stored under the keys of [`super::keys`]: small JSON documents (readable with
//! any tool, and new optional fields need no migration), except the checkpoint, a bare
//! big-endian u64.

use chatmesh_protocol::e2ee::Mls;
use chatmesh_protocol::files::{Attachment, FileInfo, Thumbnail};
use chatmesh_protocol::mentions::Mentions;
use chatmesh_protocol::message::{change_of, Change, Edited, Message};
use chatmesh_protocol::moderation::RoomEvent;
use chatmesh_protocol::reactions::Reaction;
use chatmesh_protocol::service::RoomKind;
use chatmesh_protocol::threads::ThreadSummary;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// A message as stored; its room and seq are in the key. A message that was edited holds its
/// latest body (and its first in `original`); one that was deleted is a tombstone: body,
/// original and attachments gone, `deleted` set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Seq of the room's previous message (0 for the first).
    pub prev: u64,
    /// 1-based position of the message in its room (the room's count once it was stored);
    /// unread counts are differences of these.
    pub n: u64,
    /// How many of the room's messages up to this one are reactions (or their removals):
    /// they are not unread, so unread counts subtract differences of these.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quiet: u64,
    pub id: String,
    pub from: String,
    pub ts: u64,
    pub body: String,
    /// Files the message carries (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Who the body mentions (absent when nobody).
    #[serde(default, skip_serializing_if = "Mentions::is_empty")]
    pub mentions: Mentions,
    /// This message is an edit of that seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_of: Option<u64>,
    /// This message is a delete of that seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_of: Option<u64>,
    /// This message adds the reaction `body` to that seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub react_to: Option<u64>,
    /// This message takes the sender's reaction `body` off that seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreact_to: Option<u64>,
    /// This message replies to that seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// The root of the thread this reply belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_root: Option<u64>,
    /// This edit, delete or reaction was refused when stored: it changed nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub void: bool,
    /// The reactions on this message, by key in order of first use (at most
    /// `reactions::MAX_KEYS_PER_MESSAGE`; who reacted how is in the reaction records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// The replies to this message when it is the root of a thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadSummary>,
    /// The edits applied to this message, oldest first (at most `edits::MAX_EDITS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<EditRef>,
    /// The body before the first edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    /// Set when the message was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Deletion>,
    /// This message is a room event (moderation, topic, name): quiet, never a target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<RoomEvent>,
    /// The MLS message of an `e2ee` room (a commit for another epoch than the room's is
    /// stored `void`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mls: Option<Mls>,
}

/// One edit applied to a message: the edit's seq, ts and client id (its author is the
/// message's). The edit's body is in the edit's own record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditRef {
    pub seq: u64,
    pub ts: u64,
    pub id: String,
}

/// Who deleted a message, with which message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    pub seq: u64,
    pub ts: u64,
    pub by: String,
    pub id: String,
}

impl StoredMessage {
    /// What this message does to an earlier one, if it is an edit, a delete or a reaction.
    pub fn change(&self) -> Option<Change> {
        change_of(self.edit_of, self.delete_of, self.react_to, self.unreact_to)
    }

    /// A message others may edit, delete, react or reply to: not a change, not void, not a
    /// room event.
    pub fn is_normal(&self) -> bool {
        self.change().is_none() && !self.void && self.event.is_none()
    }

    /// Whether this message itself counts in [`StoredMessage::quiet`] (not unread): a
    /// reaction or its removal, a room event, an MLS handshake message. The store writer
    /// counts it so ([`crate::writer`]).
    pub fn is_quiet(&self) -> bool {
        let handshake = self
            .mls
            .as_ref()
            .is_some_and(|m| m.kind != chatmesh_protocol::e2ee::MlsKind::App);
        self.react_to.is_some() || self.unreact_to.is_some() || self.event.is_some() || handshake
    }

    /// A message search may find: not a change, not void, not deleted (room events are
    /// never indexed).
    pub fn is_searchable(&self) -> bool {
        self.change().is_none() && !self.void && self.deleted.is_none()
    }

    pub fn into_message(self, room: &str, seq: u64) -> Message {
        let edited = self.edits.last().map(|e| Edited {
            seq: e.seq,
            ts: e.ts,
        });
        Message {
            room: room.to_owned(),
            seq,
            prev: self.prev,
            id: self.id,
            from: self.from,
            ts: self.ts,
            body: self.body,
            attachments: self.attachments,
            mentions: self.mentions,
            edit_of: self.edit_of,
            delete_of: self.delete_of,
            react_to: self.react_to,
            unreact_to: self.unreact_to,
            reply_to: self.reply_to,
            thread_root: self.thread_root,
            edited: if self.deleted.is_some() { None } else { edited },
            deleted: self.deleted.is_some(),
            void: self.void,
            reactions: self.reactions,
            thread: self.thread,
            event: self.event,
            mls: self.mls,
        }
    }
}

/// A ban of a user from a room (moderation extension); room and user are in the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    /// Who banned.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// The user was an admin when banned: only the owner lifts it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

/// A user's block of another user (`blocks` extension); both names are in the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// When, in milliseconds since the Unix epoch.
    pub ts: u64,
}

/// An invitation of a user to a room (invitations extension); both names are in the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationRecord {
    pub by: String,
    pub role: chatmesh_protocol::service::Role,
    /// When, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// It replaced one made less than a minute before it: the next replacement waits until
    /// a minute after it (the service's bound on invitation frames).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quick: bool,
}

/// A mute of a member (moderation extension); room and user are in the key. It outlives a
/// leave and a re-join (so leaving is no way out of it) and is lifted by an unmute, a ban,
/// or its end.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuteRecord {
    pub by: String,
    /// When it ends, in unix seconds; absent: until unmuted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    pub ts: u64,
    /// The user was an admin when muted: only the owner lifts it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

impl MuteRecord {
    /// Whether it holds at `now` (unix seconds).
    pub fn holds(&self, now: u64) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// One user's reactions on one message; the room, the message's seq and the user are in
/// the key. One mark per key the user used there (at most
/// `reactions::MAX_KEYS_PER_MESSAGE`), in use or taken off (kept so that a resent removal
/// is recognised).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReactions {
    pub marks: Vec<ReactionMark>,
}

/// One reaction key of one user on one message: the reaction that added it and, once taken
/// off, the one that did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionMark {
    pub key: String,
    pub seq: u64,
    pub ts: u64,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<MarkRemoval>,
}

/// The removal of a reaction: the `unreact_to` message's seq, ts and client id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkRemoval {
    pub seq: u64,
    pub ts: u64,
    pub id: String,
}

impl UserReactions {
    /// The keys in use (not taken off).
    pub fn active(&self) -> impl Iterator<Item = &ReactionMark> {
        self.marks.iter().filter(|m| m.removed.is_none())
    }
}

/// A shared file of a room; its room and id are in the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: String,
    pub size: u64,
    /// The uploader.
    pub by: String,
    /// When the upload started, milliseconds since the Unix epoch.
    pub ts: u64,
    /// False while the bytes are being uploaded.
    pub complete: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    pub thumbnail: Thumbnail,
    /// When a message last had it attached (`file_attach`), ms since the Unix epoch; 0:
    /// never. The message is stored a moment after the attach: the sweeper's grace counts
    /// from here too, so it never deletes a file a message is on its way to carry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attached: u64,
}

impl FileRecord {
    pub fn info(&self, room: &str, id: &str) -> FileInfo {
        FileInfo {
            id: id.to_owned(),
            room: room.to_owned(),
            name: self.name.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            width: self.width,
            height: self.height,
            thumbnail: self.thumbnail,
            by: self.by.clone(),
            ts: self.ts,
        }
    }
}

/// What a room is. Written once, when the room is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMeta {
    pub kind: RoomKind,
    /// The creator of a public or private room; `None` for a DM (both users are members).
    pub owner: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created: u64,
}

/// How far the store writer got in a room. Kept apart from [`RoomMeta`] so that the store
/// writer is its only writer and never races a service request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomStats {
    pub last_seq: u64,
    pub count: u64,
    /// How many of the `count` messages are reactions ([`StoredMessage::quiet`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quiet: u64,
    /// The MLS epoch of an `e2ee` room: commits stored for the epoch they ended
    /// ([`chatmesh_protocol::e2ee::next_epoch`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
    /// The seq of the commit that started `epoch` (0: none yet).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub commit: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// An account of the built-in identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// argon2id hash in PHC string format.
    pub hash: String,
    pub created: u64,
    /// Token generation: tokens issued with a lower one are revoked (`logout_all` bumps it).
    /// Records written before it existed read as 0.
    #[serde(default)]
    pub gen: u64,
    /// Shown instead of the user name where set ([`chatmesh_protocol::text`] checks it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Disabled by a server admin: login refused, every token refused (admin API).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Added to rooms only by invitation (invitations extension): an add keeps an
    /// invitation instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invitations_only: bool,
}

/// A registered push target; its user and id are in the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushTargetRecord {
    pub target: chatmesh_protocol::push::NewTarget,
    /// When it was (last) registered, ms since the Unix epoch.
    pub created: u64,
}

/// A user's read position in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub seq: u64,
    /// Position (`StoredMessage::n`) of the newest stored message with seq <= `seq`.
    pub n: u64,
    /// Its `StoredMessage::quiet` (0 in cursors written before reactions existed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quiet: u64,
    /// False if the room had not stored `seq` yet when the cursor was set, so messages
    /// stored since may sit below the cursor and `n` must be looked up again.
    pub exact: bool,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and integers always serialise.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        detail: e.to_string(),
    })
}

pub fn encode_u64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn decode_u64(key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        detail: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}
