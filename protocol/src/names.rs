//! Room ids, user names and client message ids. Room ids and user names become NATS subject
//! tokens, so validation here is what keeps `.`, `*` and `>` out of every subject.

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than 64 characters")]
    TooLong { what: &'static str },
    #[error("{what} may contain only A-Z, a-z, 0-9, '_' and '-'")]
    BadChar { what: &'static str },
    #[error("a room's home region (before '~') must be 1-16 of a-z and 0-9, followed by a name")]
    BadHome,
}

/// Longest room id, user name or message id.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a room id or user name: `[A-Za-z0-9_-]{1,64}`. `what` names it in the error. A room
/// id (`what` = `"room"`) may start with its home region and `~` (`us~general`,
/// docs/REGIONS.md): 1–16 of `a-z0-9`, then a name, 64 characters in all.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if what == "room" {
        if let Some((region, rest)) = name.split_once(crate::subjects::HOME_SEP) {
            if !crate::regions::valid_region(region) || rest.is_empty() {
                return Err(NameError::BadHome);
            }
            if name.len() > MAX_NAME_LEN {
                return Err(NameError::TooLong { what });
            }
            return plain_name(what, rest);
        }
    }
    plain_name(what, name)
}

fn plain_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { what });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(NameError::BadChar { what });
    }
    Ok(())
}

/// Checks a client message id: 1–64 printable ASCII characters (space to `~`).
pub fn validate_msg_id(id: &str) -> Result<(), NameError> {
    const WHAT: &str = "message id";
    if id.is_empty() {
        return Err(NameError::Empty { what: WHAT });
    }
    if id.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { what: WHAT });
    }
    if !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(NameError::BadChar { what: WHAT });
    }
    Ok(())
}

/// The JetStream `Nats-Msg-Id` of a client message: unique per (user, room, id), so a resend
/// to the same room dedupes while the same id in another room is another message (an id
/// dedupe across rooms would ack a message with another room's seq and never store it).
/// Users and rooms cannot contain `:`. Ids made only of header-safe characters are used as
/// they are; any other id is hex-encoded behind a `~` (which a plain id cannot contain), so
/// no two ids map to the same header value and header parsing can never trim or split one.
pub fn dedupe_id(user: &str, room: &str, id: &str) -> String {
    let plain = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    let mut out = String::with_capacity(user.len() + room.len() + 3 + id.len() * 2);
    out.push_str(user);
    out.push(':');
    out.push_str(room);
    out.push(':');
    if plain {
        out.push_str(id);
    } else {
        out.push('~');
        for b in id.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_allowed_alphabet() {
        assert!(validate_name("room", "general").is_ok());
        assert!(validate_name("room", "A-z_09").is_ok());
        assert!(validate_name("room", &"a".repeat(64)).is_ok());
    }

    #[test]
    fn names_refuse_subject_syntax_and_bad_lengths() {
        for bad in ["a.b", "*", ">", "a b", "", "é", "a\nb", "a/b"] {
            assert!(validate_name("room", bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            validate_name("room", &"a".repeat(65)),
            Err(NameError::TooLong { what: "room" })
        );
    }

    #[test]
    fn room_ids_may_name_a_home_region() {
        assert!(validate_name("room", "us~general").is_ok());
        assert!(validate_name("room", "eu2~A-b_c").is_ok());
        for bad in ["~general", "US~general", "us~", "us~a~b", "u.s~a", "us~a.b"] {
            assert!(validate_name("room", bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_name("user", "us~bob").is_err());
        assert!(validate_name("room", &format!("us~{}", "a".repeat(62))).is_err());
        assert!(validate_name("room", &format!("us~{}", "a".repeat(61))).is_ok());
    }

    #[test]
    fn msg_ids_are_printable_ascii() {
        assert!(validate_msg_id("m-1 with space~").is_ok());
        assert!(validate_msg_id("").is_err());
        assert!(validate_msg_id("tab\t").is_err());
        assert!(validate_msg_id(&"x".repeat(65)).is_err());
    }

    #[test]
    fn dedupe_ids_do_not_collide() {
        assert_eq!(dedupe_id("bob", "r", "m1"), "bob:r:m1");
        assert_ne!(dedupe_id("bob", "r", " a"), dedupe_id("bob", "r", "a"));
        assert_ne!(dedupe_id("bob", "r", "~61"), dedupe_id("bob", "r", "a"));
        assert_ne!(dedupe_id("bob", "r", "a b"), dedupe_id("bob", "r", "a_b"));
        assert_ne!(dedupe_id("bob", "r1", "a"), dedupe_id("bob", "r2", "a"));
    }
}
