//! Push tokens as the send API sees them: opaque strings with a checkable shape.

/// Shortest token Herald accepts as well-formed. Herald's own tokens are longer (≥ 112
/// characters, like Push Kit's); shorter strings cannot be anyone's token.
pub const MIN_TOKEN_LEN: usize = 32;
/// Longest token accepted as well-formed.
pub const MAX_TOKEN_LEN: usize = 512;

/// Whether `s` has the shape of a push token (URL-safe base64 alphabet plus the standard
/// one's `+/=`, within the length bounds). A well-formed token may still be unknown.
pub fn is_well_formed(s: &str) -> bool {
    (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        assert!(is_well_formed(&"A".repeat(112)));
        assert!(!is_well_formed("short"));
        assert!(!is_well_formed(&format!("{} ", "A".repeat(112))));
        assert!(!is_well_formed(&"A".repeat(513)));
    }
}
