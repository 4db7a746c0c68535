//! The validation rules for what participants send: usernames and chat text.
//!
//! Kept apart from the hub so that they read as the specification they are, and are tested
//! on their own.
//!
//! **Names are compared in one form, [`fold`]:** the Unicode Standard's *compatibility caseless*
//! form (chapter 3.13, definition D146: `NFKD(toCasefold(NFKD(toCasefold(NFD(X)))))`, with full
//! case folding), kept in NFC. Two names are the same name when their folded forms are equal:
//! `bob`, `Bob`, `BOB` and the fullwidth `ｂｏｂ` are one name, and so are `straße` and `STRASSE`.
//! It is what NFKC_Casefold does for the characters a username may hold (the default ignorable
//! characters that NFKC_Casefold also removes are refused in names altogether). The folded form
//! is the key of the name table and of the bans; the name as its owner typed it is what everyone
//! sees.

use caseless::Caseless;
use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

/// Usernames are 1 to this many characters.
pub const MAX_USERNAME_CHARS: usize = 16;
/// Chat messages are 1 to this many characters (Unicode scalar values, not bytes).
pub const MAX_MESSAGE_CHARS: usize = 128;
/// The name notices come from; no participant may take it, in any letter case.
pub const SERVER_NAME: &str = "SERVER";

/// Why a username is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// Empty.
    #[error("a username needs at least one character")]
    Empty,
    /// Over the limit.
    #[error("a username has at most {MAX_USERNAME_CHARS} characters, this one has {0}")]
    TooLong(usize),
    /// Contains whitespace, a control character, or an invisible formatting character.
    #[error("a username cannot contain whitespace, control or invisible formatting characters")]
    BadCharacter,
    /// `SERVER` is reserved.
    #[error("{SERVER_NAME} is reserved for the server")]
    Reserved,
}

/// Why a chat message is refused (the sender's session continues).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TextError {
    /// Empty.
    #[error("message is empty")]
    Empty,
    /// Over the limit.
    #[error("message is too long: {0} characters, at most {MAX_MESSAGE_CHARS} are allowed")]
    TooLong(usize),
    /// Contains a control character (which could be a terminal escape sequence) or a
    /// bidirectional override (which could make text display as something else).
    #[error("message contains a control character (U+{0:04X}); only printable text is allowed")]
    ControlCharacter(u32),
}

/// Unicode format characters (general category Cf): invisible, yet they change what a name
/// looks like ("SERVER" followed by a zero-width space displays as "SERVER").
pub fn is_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// Bidirectional embedding, override and isolate controls: they can make text display in a
/// different order from what was sent. (Other format characters, such as the zero-width
/// joiner inside emoji, are fine in text.)
pub fn is_bidi_control(c: char) -> bool {
    matches!(c as u32, 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)
}

/// Checks a username against the rules.
pub fn check_username(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    // Names arrive inside frames capped by --max-frame, so counting them is cheap.
    let chars = name.chars().count();
    if chars > MAX_USERNAME_CHARS {
        return Err(NameError::TooLong(chars));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_format(c))
    {
        return Err(NameError::BadCharacter);
    }
    if fold(name) == fold(SERVER_NAME) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// The form in which names are compared (see the module's documentation): two names are the same
/// name exactly when their folded forms are equal. ASCII, the common case, is only lowercased,
/// which is what the full algorithm gives for it.
pub fn fold(name: &str) -> String {
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    name.nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkd()
        .nfc()
        .collect()
}

/// Whether `a` and `b` are the same name (equal once folded).
pub fn same_name(a: &str, b: &str) -> bool {
    a == b || fold(a) == fold(b)
}

/// Checks chat text against the rules.
pub fn check_text(text: &str) -> Result<(), TextError> {
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    // Printable ASCII, the common case, needs no per-character decoding.
    if text.len() <= MAX_MESSAGE_CHARS && text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    let mut chars = 0;
    for c in text.chars() {
        if c.is_control() || is_bidi_control(c) {
            return Err(TextError::ControlCharacter(c as u32));
        }
        chars += 1;
    }
    if chars > MAX_MESSAGE_CHARS {
        return Err(TextError::TooLong(chars));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(check_username("alice"), Ok(()));
        assert_eq!(check_username("élodie_42"), Ok(()));
        assert_eq!(check_username(&"x".repeat(16)), Ok(()));
        assert_eq!(
            check_username("日本語の名前"),
            Ok(()),
            "characters, not bytes"
        );
        assert_eq!(check_username(""), Err(NameError::Empty));
        assert_eq!(check_username(&"x".repeat(17)), Err(NameError::TooLong(17)));
        assert_eq!(check_username("a b"), Err(NameError::BadCharacter));
        assert_eq!(check_username("a\tb"), Err(NameError::BadCharacter));
        assert_eq!(check_username("a\u{1b}[2J"), Err(NameError::BadCharacter));
        assert_eq!(check_username("bob\u{a0}"), Err(NameError::BadCharacter));
        for reserved in [
            "SERVER",
            "server",
            "Server",
            "sErVeR",
            "ＳＥＲＶＥＲ",
            "ſerver",
        ] {
            assert_eq!(check_username(reserved), Err(NameError::Reserved));
        }
        assert_eq!(check_username("SERVER2"), Ok(()));
        for lookalike in [
            "SERVER\u{200b}",
            "\u{2060}SERVER",
            "SER\u{ad}VER",
            "\u{feff}server",
            "al\u{202e}ice",
        ] {
            assert_eq!(
                check_username(lookalike),
                Err(NameError::BadCharacter),
                "{lookalike:?}"
            );
        }
    }

    #[test]
    fn names_are_compared_folded() {
        for (a, b) in [
            ("bob", "BOB"),
            ("bob", "Bob"),
            ("bob", "ｂｏｂ"),
            ("straße", "STRASSE"),
            ("Ǆemal", "džemal"),
            ("ΣΊΣΥΦΟΣ", "σίσυφος"),
            ("ς", "σ"),
            ("ﬁx", "FIX"),
            ("e\u{301}", "É"),
            ("Å", "\u{212b}"),
            ("①", "1"),
        ] {
            assert!(same_name(a, b), "{a:?} and {b:?} are one name");
            assert_eq!(fold(a), fold(b), "{a:?} {b:?}");
        }
        for (a, b) in [
            ("bob", "bobby"),
            ("bob", "böb"),
            ("ı", "i"),
            ("alice", "аlice"),
        ] {
            assert!(!same_name(a, b), "{a:?} and {b:?} are different names");
        }
        assert_eq!(fold("Bob"), "bob");
        assert_eq!(fold("ÉLODIE"), "élodie", "kept in NFC");
        assert_eq!(fold("ÉLODIE").chars().count(), 6);
    }

    #[test]
    fn texts() {
        assert_eq!(check_text("hello, world"), Ok(()));
        assert_eq!(
            check_text(&"é".repeat(128)),
            Ok(()),
            "128 characters of 2 bytes each"
        );
        assert_eq!(check_text(""), Err(TextError::Empty));
        assert_eq!(check_text(&"a".repeat(129)), Err(TextError::TooLong(129)));
        assert_eq!(
            check_text("red \u{1b}[31m"),
            Err(TextError::ControlCharacter(0x1b))
        );
        assert_eq!(
            check_text("line\nbreak"),
            Err(TextError::ControlCharacter(0x0a))
        );
        assert_eq!(
            check_text("\u{9b}2J"),
            Err(TextError::ControlCharacter(0x9b))
        );
        assert_eq!(
            check_text("tabs\tare control"),
            Err(TextError::ControlCharacter(9))
        );
    }
}
