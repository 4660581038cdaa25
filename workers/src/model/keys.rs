//! The key layout of the chat model: one tag byte, then fixed-width big-endian fields, so byte
//! order is the order scans need. Room- and user-keyed records start with `hash16` (the top
//! two bytes of FNV-1a 32 of the name) so that, on TiKV, rooms spread over regions instead of
//! piling up in alphabetical order. Names are `[A-Za-z0-9_-]{1,64}`, so the `0x00` written
//! after a name that is followed by more fields can never be part of the name.
//!
//! | record | key | value |
//! | --- | --- | --- |
//! | message | `m h16(room) room 00 be64(u64::MAX - seq)` | [`StoredMessage`](super::records::StoredMessage) |
//! | room | `r h16(room) room` | [`RoomMeta`](super::records::RoomMeta) |
//! | room topic | `t h16(room) room` | the topic, UTF-8 (absent: none) |
//! | room stats | `s h16(room) room` | [`RoomStats`](super::records::RoomStats) (store writer only) |
//! | member | `b h16(room) room 00 user` | [`Role`](chatmesh_protocol::service::Role) |
//! | rooms of a user | `j h16(user) user 00 room` | `Role` (mirror of member) |
//! | read cursor | `c h16(user) user 00 room` | [`Cursor`](super::records::Cursor) |
//! | user | `u h16(user) user` | [`UserRecord`](super::records::UserRecord) |
//! | rooms created by a user | `o h16(user) user` | be64(count) |
//! | public directory | `p room` | empty |
//! | checkpoint | `k be32(partition)` | be64(last stream seq stored) |
//! | file | `f h16(room) room 00 id` | [`FileRecord`](super::records::FileRecord) |
//! | file reference | `g h16(room) room 00 id 00 be64(seq)` | empty: message `seq` carries the file |
//! | detached file | `F h16(room) room 00 id` | empty: a delete took the file's last carrying message (store writer only) |
//! | file bytes of a room | `q h16(room) room` | be64(bytes) |
//! | file bytes of a user in a room | `v h16(room) room 00 user` | be64(bytes) |
//! | push target | `n h16(user) user 00 id` | [`PushTargetRecord`](super::records::PushTargetRecord) |
//! | push settings | `e h16(user) user` | [`PushSettings`](chatmesh_protocol::push::PushSettings) |
//! | push delivery mark | `d h16(user) user 00 id 00 room` | be64(last seq of `room` pushed to target `id`) |
//! | mention of a member | `x h16(room) room 00 user 00 be64(seq)` | empty: message `seq` mentions `user` |
//! | `@room` mention | `y h16(room) room 00 be64(seq)` | the sender's name |
//! | reactions of a user on a message | `a h16(room) room 00 be64(seq) user` | [`UserReactions`](super::records::UserReactions) |
//! | reply in a thread | `h h16(room) room 00 be64(root) be64(seq)` | the sender's name |
//! | thread read cursor | `l h16(user) user 00 room 00 be64(root)` | be64(last reply seq read) |
//! | ban | `w h16(room) room 00 user` | [`BanRecord`](super::records::BanRecord) |
//! | bans of a room | `W h16(room) room` | be64(count) |
//! | mute | `i h16(room) room 00 user` | [`MuteRecord`](super::records::MuteRecord) |
//! | removal by another | `K h16(room) room 00 user` | be64(unix ms of the last time someone else removed `user` from `room`): invitations made before it are void |
//! | room display name | `z h16(room) room` | the name, UTF-8 (absent: none) |
//! | audit entry | `Z be64(u64::MAX - ts) be64(node) be64(n)` | [`AuditEntry`](chatmesh_protocol::admin::AuditEntry) (`super::admin`) |
//! | room being deleted | `D h16(room) room` | [`RoomDeletion`](super::admin::RoomDeletion) (`super::admin`) |
//! | identity key (e2ee) | `I h16(user) user` | [`IdentityRecord`](super::e2ee::IdentityRecord) |
//! | device (e2ee) | `V h16(user) user 00 device` | [`DeviceRecord`](super::e2ee::DeviceRecord) |
//! | KeyPackage (e2ee) | `P h16(user) user 00 device 00 be64(n)` | the package's bytes |
//! | block | `B h16(user) user 00 other` | [`BlockRecord`](super::records::BlockRecord): `user` blocked `other` |
//! | closed DM | `C h16(user) user 00 room` | be64(the DM's last seq when `user` closed it) |
//! | invitation | `N h16(user) user 00 room` | [`InvitationRecord`](super::records::InvitationRecord): `user` is invited to `room` |
//! | MLS group of an e2ee room | `G h16(room) room` | its public state ([`crate::groups::Tracked::save`]) |
//! | room to index for search | `R h16(room) room` | empty: its messages came by import ([`crate::search::reindex`]) |
//!
//! Messages are newest first (`u64::MAX - seq`), so "the latest N" is a forward scan.

use std::ops::Range;

use chatmesh_protocol::subjects::fnv1a32;

const MESSAGE: u8 = b'm';
const ROOM: u8 = b'r';
const TOPIC: u8 = b't';
const STATS: u8 = b's';
const MEMBER: u8 = b'b';
const USER_ROOM: u8 = b'j';
const CURSOR: u8 = b'c';
const USER: u8 = b'u';
const CREATED: u8 = b'o';
const PUBLIC: u8 = b'p';
const CHECKPOINT: u8 = b'k';
const FILE: u8 = b'f';
const FILE_REF: u8 = b'g';
const FILE_DETACHED: u8 = b'F';
const ROOM_FILE_BYTES: u8 = b'q';
const USER_FILE_BYTES: u8 = b'v';
const PUSH_TARGET: u8 = b'n';
const PUSH_SETTINGS: u8 = b'e';
/// A push address's (a target id's) current user.
const PUSH_OWNER: u8 = b'O';
const PUSH_MARK: u8 = b'd';
const MENTION: u8 = b'x';
const ROOM_MENTION: u8 = b'y';
const REACTIONS: u8 = b'a';
const REPLY: u8 = b'h';
const THREAD_CURSOR: u8 = b'l';
const BAN: u8 = b'w';
const BAN_COUNT: u8 = b'W';
const MUTE: u8 = b'i';
const REMOVED: u8 = b'K';
const ROOM_NAME: u8 = b'z';
const IDENTITY: u8 = b'I';
const DEVICE: u8 = b'V';
const KEY_PACKAGE: u8 = b'P';
const BLOCK: u8 = b'B';
const DM_CLOSED: u8 = b'C';
const INVITATION: u8 = b'N';
const MLS_GROUP: u8 = b'G';
const REINDEX: u8 = b'R';
/// A group state a commit was checked to lead to (see [`mls_next`]).
const MLS_NEXT: u8 = b'E';

/// The first two bytes of FNV-1a 32 of `name`.
pub fn hash16(name: &str) -> [u8; 2] {
    let h = fnv1a32(name.as_bytes()).to_be_bytes();
    [h[0], h[1]]
}

pub(super) fn named(tag: u8, name: &str, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + name.len() + extra);
    k.push(tag);
    k.extend_from_slice(&hash16(name));
    k.extend_from_slice(name.as_bytes());
    k
}

pub(super) fn pair_prefix(tag: u8, a: &str, extra: usize) -> Vec<u8> {
    let mut k = named(tag, a, 1 + extra);
    k.push(0);
    k
}

fn pair(tag: u8, a: &str, b: &str) -> Vec<u8> {
    let mut k = pair_prefix(tag, a, b.len());
    k.extend_from_slice(b.as_bytes());
    k
}

/// The smallest key greater than every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    // Only an all-0xFF prefix gets here; none of ours is.
    vec![u8::MAX; prefix.len() + 1]
}

pub(super) fn prefix_range(prefix: Vec<u8>) -> Range<Vec<u8>> {
    let end = prefix_end(&prefix);
    prefix..end
}

pub fn message(room: &str, seq: u64) -> Vec<u8> {
    let mut k = pair_prefix(MESSAGE, room, 8);
    k.extend_from_slice(&(u64::MAX - seq).to_be_bytes());
    k
}

/// Every message key of `room`.
pub fn messages_of(room: &str) -> Range<Vec<u8>> {
    prefix_range(pair_prefix(MESSAGE, room, 0))
}

/// The seq in a message key.
pub fn seq_of_message(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::MAX - u64::from_be_bytes(tail))
}

pub fn room(room: &str) -> Vec<u8> {
    named(ROOM, room, 0)
}

/// The mark of a room whose messages the search index has yet to take in.
pub fn reindex(room: &str) -> Vec<u8> {
    named(REINDEX, room, 0)
}

/// Every room's [`reindex`] mark.
pub fn reindex_all() -> Range<Vec<u8>> {
    prefix_range(vec![REINDEX])
}

/// The room of a [`reindex`] mark.
pub fn room_of_reindex(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(3..)?).ok()
}

/// A room's topic: apart from [`room`], whose record never changes and is cached as such.
pub fn topic(room: &str) -> Vec<u8> {
    named(TOPIC, room, 0)
}

pub fn stats(room: &str) -> Vec<u8> {
    named(STATS, room, 0)
}

/// Every room stats key (one per room that has stored messages).
pub fn stats_all() -> Range<Vec<u8>> {
    prefix_range(vec![STATS])
}

/// The room of a room stats key.
pub fn room_of_stats(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(3..)?).ok()
}

pub fn member(room: &str, user: &str) -> Vec<u8> {
    pair(MEMBER, room, user)
}

pub fn user_room(user: &str, room: &str) -> Vec<u8> {
    pair(USER_ROOM, user, room)
}

/// Every `user_room` key of `user`.
pub fn rooms_of(user: &str) -> Range<Vec<u8>> {
    prefix_range(pair_prefix(USER_ROOM, user, 0))
}

pub fn cursor(user: &str, room: &str) -> Vec<u8> {
    pair(CURSOR, user, room)
}

/// Every cursor key of `user`.
pub fn cursors_of(user: &str) -> Range<Vec<u8>> {
    prefix_range(pair_prefix(CURSOR, user, 0))
}

/// The name after the `00` of a two-name key (`user_room`, `cursor`, `member`).
pub fn second_name(key: &[u8]) -> Option<&str> {
    // Skip the tag and hash16: a hash byte may be 0.
    let at = 3 + key.get(3..)?.iter().position(|b| *b == 0)?;
    std::str::from_utf8(key.get(at + 1..)?).ok()
}

pub fn user(user: &str) -> Vec<u8> {
    named(USER, user, 0)
}

/// How many rooms a user created (its room quota).
pub fn rooms_created(user: &str) -> Vec<u8> {
    named(CREATED, user, 0)
}

pub fn public(room: &str) -> Vec<u8> {
    let mut k = vec![PUBLIC];
    k.extend_from_slice(room.as_bytes());
    k
}

/// Every public directory key.
pub fn public_all() -> Range<Vec<u8>> {
    prefix_range(vec![PUBLIC])
}

/// The room of a public directory key.
pub fn room_of_public(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(1..)?).ok()
}

pub fn checkpoint(partition: u32) -> Vec<u8> {
    let mut k = vec![CHECKPOINT];
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

pub fn file(room: &str, id: &str) -> Vec<u8> {
    pair(FILE, room, id)
}

/// Every file key of `room`.
pub fn files_of(room: &str) -> Range<Vec<u8>> {
    prefix_range(pair_prefix(FILE, room, 0))
}

/// File `id` of `room` lost its last carrying message to a delete.
pub fn file_detached(room: &str, id: &str) -> Vec<u8> {
    pair(FILE_DETACHED, room, id)
}

/// Every file key, all rooms.
pub fn files_all() -> Range<Vec<u8>> {
    prefix_range(vec![FILE])
}

/// The (room, file id) of a file key.
pub fn room_and_file(key: &[u8]) -> Option<(&str, &str)> {
    let at = 3 + key.get(3..)?.iter().position(|b| *b == 0)?;
    let room = std::str::from_utf8(key.get(3..at)?).ok()?;
    let id = std::str::from_utf8(key.get(at + 1..)?).ok()?;
    Some((room, id))
}

/// Message `seq` carries file `id` of `room`.
pub fn file_ref(room: &str, id: &str, seq: u64) -> Vec<u8> {
    let mut k = pair(FILE_REF, room, id);
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Every reference to file `id` of `room`, by seq.
pub fn file_refs(room: &str, id: &str) -> Range<Vec<u8>> {
    let mut k = pair(FILE_REF, room, id);
    k.push(0);
    prefix_range(k)
}

/// The seq of a file reference key.
pub fn seq_of_file_ref(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

pub fn room_file_bytes(room: &str) -> Vec<u8> {
    named(ROOM_FILE_BYTES, room, 0)
}

pub fn user_file_bytes(room: &str, user: &str) -> Vec<u8> {
    pair(USER_FILE_BYTES, room, user)
}

/// The file bytes of every user in `room`.
pub fn user_file_bytes_of(room: &str) -> Range<Vec<u8>> {
    prefix_range(pair_prefix(USER_FILE_BYTES, room, 0))
}

pub fn push_target(user: &str, id: &str) -> Vec<u8> {
    pair(PUSH_TARGET, user, id)
}

/// Every push target key, all users.
pub fn push_targets_all() -> Range<Vec<u8>> {
    prefix_range(vec![PUSH_TARGET])
}

/// Every push target key of `user`.
pub fn push_targets_of(user: &str) -> Range<Vec<u8>> {
    prefix_range(pair_prefix(PUSH_TARGET, user, 0))
}

/// The user a push target id (one device's address) was last registered by.
pub fn push_owner(id: &str) -> Vec<u8> {
    named(PUSH_OWNER, id, 0)
}

pub fn push_settings(user: &str) -> Vec<u8> {
    named(PUSH_SETTINGS, user, 0)
}

/// The last seq of `room` claimed for target `id` of `user` (at most one push per message
/// and target, across restarts).
pub fn push_mark(user: &str, id: &str, room: &str) -> Vec<u8> {
    let mut k = pair(PUSH_MARK, user, id);
    k.push(0);
    k.extend_from_slice(room.as_bytes());
    k
}

/// Every delivery mark of target `id` of `user`.
pub fn push_marks_of(user: &str, id: &str) -> Range<Vec<u8>> {
    let mut k = pair(PUSH_MARK, user, id);
    k.push(0);
    prefix_range(k)
}

/// Message `seq` of `room` mentions member `user`.
pub fn mention(room: &str, user: &str, seq: u64) -> Vec<u8> {
    let mut k = pair(MENTION, room, user);
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The mentions of `user` in `room` after `seq`.
pub fn mentions_after(room: &str, user: &str, seq: u64) -> Range<Vec<u8>> {
    let mut prefix = pair(MENTION, room, user);
    prefix.push(0);
    let end = prefix_end(&prefix);
    prefix.extend_from_slice(&seq.saturating_add(1).to_be_bytes());
    prefix..end
}

/// Message `seq` of `room` mentions `@room`.
pub fn room_mention(room: &str, seq: u64) -> Vec<u8> {
    let mut k = pair_prefix(ROOM_MENTION, room, 8);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The `@room` mentions of `room` after `seq`.
pub fn room_mentions_after(room: &str, seq: u64) -> Range<Vec<u8>> {
    let mut prefix = pair_prefix(ROOM_MENTION, room, 8);
    let end = prefix_end(&prefix);
    prefix.extend_from_slice(&seq.saturating_add(1).to_be_bytes());
    prefix..end
}

/// The reactions of `user` on message `seq` of `room`.
pub fn reactions(room: &str, seq: u64, user: &str) -> Vec<u8> {
    let mut k = pair_prefix(REACTIONS, room, 8 + user.len());
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(user.as_bytes());
    k
}

/// Every user's reactions on message `seq` of `room`.
pub fn reactions_of(room: &str, seq: u64) -> Range<Vec<u8>> {
    let mut k = pair_prefix(REACTIONS, room, 8);
    k.extend_from_slice(&seq.to_be_bytes());
    prefix_range(k)
}

/// Every reaction record of `room`.
pub fn reactions_all(room: &str) -> Range<Vec<u8>> {
    prefix_range(pair_prefix(REACTIONS, room, 0))
}

/// The (seq, user) of a reaction key of `room`.
pub fn seq_and_user_of_reactions<'k>(room: &str, key: &'k [u8]) -> Option<(u64, &'k str)> {
    let at = 3 + room.len() + 1;
    let seq: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
    let user = std::str::from_utf8(key.get(at + 8..)?).ok()?;
    Some((u64::from_be_bytes(seq), user))
}

/// Reply `seq` in the thread of `root` in `room`.
pub fn reply(room: &str, root: u64, seq: u64) -> Vec<u8> {
    let mut k = pair_prefix(REPLY, room, 16);
    k.extend_from_slice(&root.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The replies in the thread of `root` with a seq above `after`.
pub fn replies_after(room: &str, root: u64, after: u64) -> Range<Vec<u8>> {
    let mut prefix = pair_prefix(REPLY, room, 16);
    prefix.extend_from_slice(&root.to_be_bytes());
    let end = prefix_end(&prefix);
    prefix.extend_from_slice(&after.saturating_add(1).to_be_bytes());
    prefix..end
}

/// Every reply record of `room`.
pub fn replies_all(room: &str) -> Range<Vec<u8>> {
    prefix_range(pair_prefix(REPLY, room, 0))
}

/// The seq of a reply key.
pub fn seq_of_reply(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// `user`'s read cursor in the thread of `root` in `room`.
pub fn thread_cursor(user: &str, room: &str, root: u64) -> Vec<u8> {
    let mut k = pair(THREAD_CURSOR, user, room);
    k.push(0);
    k.extend_from_slice(&root.to_be_bytes());
    k
}

/// `user`'s ban from `room`.
pub fn ban(room: &str, user: &str) -> Vec<u8> {
    pair(BAN, room, user)
}

/// The bans of `room` whose users sort after `after` (all with `None`).
pub fn bans_after(room: &str, after: Option<&str>) -> Range<Vec<u8>> {
    let prefix = pair_prefix(BAN, room, 0);
    let end = prefix_end(&prefix);
    let start = match after {
        // The smallest key above `after`'s own: names never contain a 0 byte.
        Some(user) => {
            let mut k = ban(room, user);
            k.push(0);
            k
        }
        None => prefix,
    };
    start..end
}

/// `user`'s block of `other`.
pub fn block(user: &str, other: &str) -> Vec<u8> {
    pair(BLOCK, user, other)
}

/// The blocks of `user` whose users sort after `after` (all with `None`).
pub fn blocks_after(user: &str, after: Option<&str>) -> Range<Vec<u8>> {
    pairs_after(BLOCK, user, after)
}

/// `user`'s invitation to `room`.
pub fn invitation(user: &str, room: &str) -> Vec<u8> {
    pair(INVITATION, user, room)
}

/// The invitations of `user` to rooms that sort after `after` (all with `None`).
pub fn invitations_after(user: &str, after: Option<&str>) -> Range<Vec<u8>> {
    pairs_after(INVITATION, user, after)
}

/// The keys `tag a 00 b` of `a` whose `b` sorts after `after` (all with `None`).
fn pairs_after(tag: u8, a: &str, after: Option<&str>) -> Range<Vec<u8>> {
    let prefix = pair_prefix(tag, a, 0);
    let end = prefix_end(&prefix);
    let start = match after {
        // The smallest key above `after`'s own: names never contain a 0 byte.
        Some(b) => {
            let mut k = pair(tag, a, b);
            k.push(0);
            k
        }
        None => prefix,
    };
    start..end
}

/// `user`'s close of DM `room`.
pub fn dm_closed(user: &str, room: &str) -> Vec<u8> {
    pair(DM_CLOSED, user, room)
}

/// How many bans `room` holds.
pub fn ban_count(room: &str) -> Vec<u8> {
    named(BAN_COUNT, room, 0)
}

/// `user`'s mute in `room`.
pub fn mute(room: &str, user: &str) -> Vec<u8> {
    pair(MUTE, room, user)
}

/// Every mute of `room`.
pub fn mutes_of(room: &str) -> Range<Vec<u8>> {
    let prefix = pair_prefix(MUTE, room, 0);
    let end = prefix_end(&prefix);
    prefix..end
}

/// When someone else last removed `user` from `room`.
pub fn removed(room: &str, user: &str) -> Vec<u8> {
    pair(REMOVED, room, user)
}

/// Every removal record of `room`.
pub fn removals_of(room: &str) -> Range<Vec<u8>> {
    let prefix = pair_prefix(REMOVED, room, 0);
    let end = prefix_end(&prefix);
    prefix..end
}

/// A room's display name: apart from [`room`], like the topic.
pub fn room_name(room: &str) -> Vec<u8> {
    named(ROOM_NAME, room, 0)
}

pub fn mls_group(room: &str) -> Vec<u8> {
    named(MLS_GROUP, room, 0)
}

/// The group state of `room` that a checked commit leads to, under the SHA-256 of the state
/// it was checked on and the commit's bytes.
pub fn mls_next(room: &str, hash: &[u8; 32]) -> Vec<u8> {
    let mut k = pair_prefix(MLS_NEXT, room, hash.len());
    k.extend_from_slice(hash);
    k
}

/// Every [`mls_next`] key of `room`.
pub fn mls_nexts_of(room: &str) -> Range<Vec<u8>> {
    prefix_range(pair_prefix(MLS_NEXT, room, 0))
}

/// A user's identity key (e2ee).
pub fn identity(user: &str) -> Vec<u8> {
    named(IDENTITY, user, 0)
}

pub fn device(user: &str, device: &str) -> Vec<u8> {
    pair(DEVICE, user, device)
}

/// Every device key of `user`.
pub fn devices_of(user: &str) -> Range<Vec<u8>> {
    prefix_range(pair_prefix(DEVICE, user, 0))
}

/// KeyPackage number `n` of `device` of `user`.
pub fn key_package(user: &str, device: &str, n: u64) -> Vec<u8> {
    let mut k = pair(KEY_PACKAGE, user, device);
    k.push(0);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// Every KeyPackage key of `device` of `user`, oldest first.
pub fn key_packages_of(user: &str, device: &str) -> Range<Vec<u8>> {
    let mut k = pair(KEY_PACKAGE, user, device);
    k.push(0);
    prefix_range(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_give_back_room_and_id_and_seq() {
        let k = file("r-1", "f0123");
        assert_eq!(room_and_file(&k), Some(("r-1", "f0123")));
        assert!(files_all().contains(&k));
        let refs = file_refs("r-1", "f0123");
        let (a, b) = (file_ref("r-1", "f0123", 5), file_ref("r-1", "f0123", 300));
        assert!(refs.contains(&a) && refs.contains(&b) && a < b);
        assert!(!refs.contains(&file_ref("r-1", "f01234", 5)));
        assert_eq!(seq_of_file_ref(&b), Some(300));
    }

    #[test]
    fn newer_messages_sort_first_and_stay_inside_the_room() {
        let range = messages_of("r1");
        let (a, b) = (message("r1", 1), message("r1", 2));
        assert!(b < a);
        assert!(range.contains(&a) && range.contains(&b));
        assert!(range.contains(&message("r1", u64::MAX)) && range.contains(&message("r1", 0)));
        assert!(!range.contains(&message("r10", 5)));
        assert_eq!(seq_of_message(&a), Some(1));
    }

    #[test]
    fn push_keys_stay_inside_their_user_and_target() {
        assert_eq!(second_name(&push_target("ann", "t1")), Some("t1"));
        assert!(push_targets_of("ann").contains(&push_target("ann", "t1")));
        assert!(!push_targets_of("ann").contains(&push_target("anna", "t1")));
        let marks = push_marks_of("ann", "t1");
        assert!(marks.contains(&push_mark("ann", "t1", "r")));
        assert!(!marks.contains(&push_mark("ann", "t10", "r")));
    }

    #[test]
    fn ban_keys_stay_inside_their_room_and_page_after_a_name() {
        let k = ban("r1", "bob");
        assert_eq!(second_name(&k), Some("bob"));
        assert!(bans_after("r1", None).contains(&k));
        assert!(!bans_after("r10", None).contains(&k));
        assert!(!bans_after("r1", Some("bob")).contains(&k));
        assert!(bans_after("r1", Some("bo")).contains(&k));
        assert!(bans_after("r1", Some("bob")).contains(&ban("r1", "bobby")));
    }

    #[test]
    fn index_keys_give_back_the_second_name() {
        assert_eq!(second_name(&user_room("ann", "r-1")), Some("r-1"));
        assert!(rooms_of("ann").contains(&user_room("ann", "zz")));
        assert!(!rooms_of("ann").contains(&user_room("anna", "zz")));
        assert_eq!(room_of_public(&public("lobby")), Some("lobby"));
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
    }

    #[test]
    fn reaction_and_reply_keys_stay_inside_their_message_and_thread() {
        let k = reactions("r1", 7, "ann");
        assert!(reactions_of("r1", 7).contains(&k));
        assert!(!reactions_of("r1", 8).contains(&k));
        assert!(reactions_all("r1").contains(&k) && !reactions_all("r10").contains(&k));
        assert_eq!(seq_and_user_of_reactions("r1", &k), Some((7, "ann")));
        let (a, b) = (reply("r1", 3, 4), reply("r1", 3, 300));
        assert!(a < b && replies_after("r1", 3, 0).contains(&a));
        assert!(!replies_after("r1", 3, 4).contains(&a) && replies_after("r1", 3, 4).contains(&b));
        assert!(!replies_after("r1", 4, 0).contains(&a));
        assert_eq!(seq_of_reply(&b), Some(300));
    }
}
