//! Mentions (extension, docs/PROTOCOL.md "Mentions"): `@name` and `@room` in a message's
//! body, found by the gateway that accepts the send and carried with the message, so live
//! frames, replays and history agree. The list is what the body says: a name that is not a
//! member of the room is listed, but only members' mentions are counted (the worker counts
//! them per user and room, beside unread counts) and only members are notified.

use serde::{Deserialize, Serialize};

use crate::names::MAX_NAME_LEN;

/// Most users one message mentions (further `@names` are not listed).
pub const MAX_MENTIONS: usize = 20;

/// Who a message mentions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mentions {
    /// Users named `@name`, in order of first appearance, without repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// `@room`: everyone in the room.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub room: bool,
}

impl Mentions {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && !self.room
    }

    /// Whether `user` is mentioned, by name or by `@room`.
    pub fn concern(&self, user: &str) -> bool {
        self.room || self.users.iter().any(|u| u == user)
    }

    /// The mentions in `body`: `@` at the start or after a character that cannot be part of
    /// a name, then a user name (`[A-Za-z0-9_-]`, at most the name length). `@room` is the
    /// whole room (a user called `room` cannot be mentioned by name).
    pub fn parse(body: &str) -> Self {
        let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        let bytes = body.as_bytes();
        let mut out = Self::default();
        let mut i = 0;
        while let Some(at) = bytes[i..].iter().position(|&b| b == b'@').map(|p| p + i) {
            i = at + 1;
            if at > 0 && (name_byte(bytes[at - 1]) || bytes[at - 1] == b'@') {
                continue; // an e-mail address or `@@`
            }
            let len = bytes[i..].iter().take_while(|&&b| name_byte(b)).count();
            if len == 0 || len > MAX_NAME_LEN {
                i += len;
                continue;
            }
            let name = &body[i..i + len];
            i += len;
            if name == "room" {
                out.room = true;
            } else if out.users.len() < MAX_MENTIONS && !out.users.iter().any(|u| u == name) {
                out.users.push(name.to_owned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_room_are_found_once_each() {
        let m = Mentions::parse("@bob hi @carol, @bob again; @room! (@dave-2)");
        assert_eq!(m.users, ["bob", "carol", "dave-2"]);
        assert!(m.room);
        assert!(m.concern("eve"), "@room concerns everyone");
    }

    #[test]
    fn addresses_and_lone_signs_are_not_mentions() {
        let m = Mentions::parse("mail ann@example.com or @ or @@bob or @-");
        assert_eq!(m.users, ["-"]);
        assert!(!m.room);
        let none = Mentions::parse("no mention here");
        assert!(none.is_empty() && !none.concern("bob"));
    }

    #[test]
    fn too_long_names_and_too_many_are_dropped() {
        let long = format!("@{} @ok", "a".repeat(MAX_NAME_LEN + 1));
        assert_eq!(Mentions::parse(&long).users, ["ok"]);
        let many: String = (0..30).map(|i| format!("@u{i} ")).collect();
        assert_eq!(Mentions::parse(&many).users.len(), MAX_MENTIONS);
    }

    #[test]
    fn non_ascii_around_a_mention_is_fine() {
        let m = Mentions::parse("héllo @bob…ça va? 😀@carol");
        assert_eq!(m.users, ["bob", "carol"]);
    }
}
