//! Name and message-id validation agree with their definitions in PROTOCOL.md on every
//! string: names are `[A-Za-z0-9_-]{1,64}`, ids 1–64 printable ASCII characters
//! (space included, as in C `isprint`).
#![no_main]

use chatmesh_protocol::{validate_msg_id, validate_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let name_ok = (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    assert_eq!(validate_name("user", s).is_ok(), name_ok, "name {s:?}");
    // A room id may also be `<region>~<name>`: region 1-16 of a-z0-9, 64 characters in all.
    let plain = |n: &str| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let room_ok = name_ok
        || (s.len() <= 64
            && s.split_once('~').is_some_and(|(r, n)| {
                (1..=16).contains(&r.len())
                    && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    && plain(n)
            }));
    assert_eq!(validate_name("room", s).is_ok(), room_ok, "room {s:?}");
    let id_ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| (0x20..=0x7e).contains(&b));
    assert_eq!(validate_msg_id(s).is_ok(), id_ok, "id {s:?}");
});
