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

/// A Push Kit style `requestId`, unique by construction: 20 decimal digits, the
/// millisecond (13 digits), a sequence within it (3) and this process's node number (4).
///
/// The (millisecond, sequence) pair comes from one atomic counter that only moves
/// forward: a request in the same millisecond as the previous one takes the next
/// sequence number, and past 999 in one millisecond the id borrows the next millisecond
/// (the clock catches up). So no two ids of one process are equal, however fast they
/// come or however the clock stands still or steps back; the node number, drawn once
/// per process, keeps two processes (a restart in the same millisecond, two nodes)
/// apart with probability 1 − 10⁻⁴.
pub fn request_id(now_ms: i64) -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    static NODE: OnceLock<u16> = OnceLock::new();
    const PER_MS: i64 = 1000;
    let floor = now_ms.clamp(0, i64::MAX / PER_MS - 1) * PER_MS;
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(floor.max(last.saturating_add(1)))
        })
        .unwrap_or_else(|last| last);
    let stamp = floor.max(previous.saturating_add(1));
    let node = NODE.get_or_init(|| rand::rng().random_range(0..10_000u16));
    format!("{:013}{:03}{node:04}", stamp / PER_MS, stamp % PER_MS)
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
    fn request_ids_are_unique_and_shaped_like_push_kits() {
        // Today's requestId was ms + 7 random digits: at 200 000 ids within a handful of
        // milliseconds, the birthday bound makes a collision near certain.
        let frozen_ms = 1_795_000_000_000;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200_000 {
            let id = request_id(frozen_ms);
            assert_eq!(id.len(), 20, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
            assert!(seen.insert(id), "duplicate request id");
        }
        // A clock that steps back does not repeat an id either.
        assert!(seen.insert(request_id(frozen_ms - 5_000)));
    }

    #[test]
    fn request_ids_are_unique_across_threads() {
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..20_000).map(|_| request_id(1)).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn numeric_ids() {
        let id = numeric_id(18);
        assert_eq!(id.len(), 18);
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(id.as_bytes()[0], b'0');
    }
}
