//! The PRECIS OpaqueString profile (RFC 8265 §4.2), which RFC 8489 §9.2.2
//! applies to the realm and the password before a long-term key is derived:
//! non-ASCII spaces become U+0020, then Unicode Normalization Form C. Case
//! is kept and nothing else is mapped, so an ASCII string is unchanged.
//! Control characters are not allowed in an OpaqueString (FreeformClass,
//! RFC 8264 §9.18, §9.11): [`disallowed`] finds them for config checks.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// True for the non-ASCII space characters (Unicode general category Zs
/// other than U+0020) that OpaqueString maps to U+0020 (RFC 8265 §4.2.1).
fn is_non_ascii_space(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// `s` prepared with OpaqueString: borrowed when already prepared (every
/// ASCII string is).
pub fn opaque_string(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        return Cow::Borrowed(s);
    }
    let mapped = s
        .chars()
        .map(|c| if is_non_ascii_space(c) { ' ' } else { c });
    Cow::Owned(mapped.nfc().collect())
}

/// The first character an OpaqueString may not hold, if any: control
/// characters (RFC 8264 §9.11, Cc), which no client can type into a
/// password field either.
pub fn disallowed(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_unchanged_and_borrowed() {
        assert!(matches!(
            opaque_string("TheMatrIX"),
            Cow::Borrowed("TheMatrIX")
        ));
    }

    #[test]
    fn composes_to_nfc_and_maps_spaces() {
        // "é" as e + COMBINING ACUTE ACCENT becomes U+00E9.
        assert_eq!(opaque_string("caf\u{0065}\u{0301}"), "caf\u{00E9}");
        assert_eq!(opaque_string("a\u{00A0}b\u{3000}c"), "a b c");
        // Case and compatibility forms are kept (not NFKC, unlike SASLprep).
        assert_eq!(opaque_string("Ⅸ\u{00AA}"), "Ⅸ\u{00AA}");
        // Hangul jamo compose.
        assert_eq!(opaque_string("\u{1100}\u{1161}"), "\u{AC00}");
    }

    #[test]
    fn control_characters_are_disallowed() {
        assert_eq!(disallowed("pass\tword"), Some('\t'));
        assert_eq!(disallowed("pässwörd"), None);
    }
}
