//! Free text a user sets once and others see next to names: display names and room topics.
//! Unlike names they are Unicode, so the checks here are about what a screen shows: bounded
//! length (characters and bytes), no control characters, and no invisible direction or
//! format characters that would let one text disguise itself as another (a display name
//! reading as someone else's, "Trojan Source" reordering). Leading and trailing whitespace is
//! trimmed by [`clean_display_name`] and [`clean_topic`]; an empty result means "none".

/// Longest display name, in characters (Unicode scalar values).
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Longest display name, in bytes of UTF-8.
pub const MAX_DISPLAY_NAME_BYTES: usize = 256;
/// Longest room topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 256;
/// Longest room topic, in bytes of UTF-8.
pub const MAX_TOPIC_BYTES: usize = 1024;

/// Why a display name or topic was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{what} is longer than {max} characters")]
    TooManyChars { what: &'static str, max: usize },
    #[error("{what} is longer than {max} bytes")]
    TooManyBytes { what: &'static str, max: usize },
    #[error("{what} may not contain control, line break or invisible formatting characters (found U+{code:04X})")]
    BadChar { what: &'static str, code: u32 },
}

/// Characters refused anywhere in a display name, topic or file name: C0/C1 controls (line breaks
/// included), bidirectional embeddings, overrides, isolates and marks, zero-width spaces and
/// joiners other than ZWJ (emoji sequences need it), line/paragraph separators, the BOM.
pub fn refused(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}' | '\u{200C}' | '\u{200E}' | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2028}' | '\u{2029}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

fn clean(
    what: &'static str,
    text: &str,
    max_chars: usize,
    max_bytes: usize,
) -> Result<Option<String>, TextError> {
    let text = text.trim();
    if text.len() > max_bytes {
        return Err(TextError::TooManyBytes {
            what,
            max: max_bytes,
        });
    }
    if text.chars().count() > max_chars {
        return Err(TextError::TooManyChars {
            what,
            max: max_chars,
        });
    }
    if let Some(c) = text.chars().find(|c| refused(*c)) {
        return Err(TextError::BadChar {
            what,
            code: u32::from(c),
        });
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// A display name as stored: trimmed, 1–64 characters, at most 256 bytes; `None` for an empty
/// one (which clears it).
pub fn clean_display_name(text: &str) -> Result<Option<String>, TextError> {
    clean(
        "display name",
        text,
        MAX_DISPLAY_NAME_CHARS,
        MAX_DISPLAY_NAME_BYTES,
    )
}

/// A room topic as stored: trimmed, at most 256 characters and 1024 bytes, one line; `None`
/// for an empty one (which clears it).
pub fn clean_topic(text: &str) -> Result<Option<String>, TextError> {
    clean("topic", text, MAX_TOPIC_CHARS, MAX_TOPIC_BYTES)
}

/// A room's display name (extension) as stored: the rules of a display name.
pub fn clean_room_name(text: &str) -> Result<Option<String>, TextError> {
    clean(
        "room name",
        text,
        MAX_DISPLAY_NAME_CHARS,
        MAX_DISPLAY_NAME_BYTES,
    )
}

/// The reason given for a ban (extension) as stored: the rules of a topic.
pub fn clean_reason(text: &str) -> Result<Option<String>, TextError> {
    clean("reason", text, MAX_TOPIC_CHARS, MAX_TOPIC_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_names_are_counted_in_characters_and_trimmed() {
        assert_eq!(
            clean_display_name("  Zoë 🦀  ").unwrap().as_deref(),
            Some("Zoë 🦀")
        );
        assert_eq!(clean_display_name("   ").unwrap(), None);
        // 64 CJK characters are 192 bytes: within both bounds.
        assert!(clean_display_name(&"名".repeat(64)).unwrap().is_some());
        assert!(matches!(
            clean_display_name(&"名".repeat(65)),
            Err(TextError::TooManyChars { .. })
        ));
        // 64 characters of 4 bytes each are over 256 bytes once combined with more.
        assert!(matches!(
            clean_display_name(&"🦀".repeat(65)),
            Err(TextError::TooManyBytes { .. })
        ));
        // A family emoji joined with ZWJ stays allowed.
        assert!(clean_display_name("👩\u{200D}👩\u{200D}👧").is_ok());
    }

    #[test]
    fn controls_and_invisible_formatting_are_refused() {
        for bad in [
            "a\nb",
            "a\u{0}b",
            "evil\u{202E}gnp",
            "a\u{2066}b",
            "a\u{200B}b",
            "\u{FEFF}x",
        ] {
            assert!(
                matches!(clean_display_name(bad), Err(TextError::BadChar { .. })),
                "{bad:?}"
            );
            assert!(clean_topic(bad).is_err(), "{bad:?}");
        }
        assert!(clean_topic(&"x".repeat(256)).unwrap().is_some());
        assert!(clean_reason(&"x".repeat(257)).is_err());
        assert!(clean_room_name(&"x".repeat(65)).is_err());
        assert!(clean_room_name("a\u{202E}b").is_err());
        assert!(clean_topic(&"x".repeat(257)).is_err());
    }
}
