//! Random identifiers, secrets and tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};

/// A decimal id of `len` digits, not starting with 0 (Push Kit's project and client ids
/// are such numbers).
pub fn numeric_id(len: usize) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(len);
    s.push(char::from(b'1' + rng.random_range(0..9u8)));
    for _ in 1..len {
        s.push(char::from(b'0' + rng.random_range(0..10u8)));
    }
    s
}

/// A lowercase hex id of `len` characters.
pub fn hex_id(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16usize)]))
        .collect()
}

/// `bytes` random bytes, URL-safe base64 without padding.
pub fn secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A new push token: 96 random bytes → 128 characters, opaque and unguessable.
pub fn push_token() -> String {
    secret(96)
}

/// Hex SHA-256, for secrets that are random enough not to need a slow hash.
pub fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Push Kit style `requestId`: milliseconds followed by random digits.
pub fn request_id(now_ms: i64) -> String {
    format!("{now_ms}{}", numeric_id(7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_url_safe() {
        let t = push_token();
        assert!(t.len() >= 112);
        assert!(herald_core::token::is_well_formed(&t));
        assert_ne!(t, push_token());
    }

    #[test]
    fn numeric_ids() {
        let id = numeric_id(18);
        assert_eq!(id.len(), 18);
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(id.as_bytes()[0], b'0');
    }
}
