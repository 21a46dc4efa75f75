//! A secret read from the environment (route keys, signing keys, the admin
//! token): compared in constant time, never shown by `Debug`.

use std::fmt;
use std::sync::Arc;

/// A secret read from the environment: `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(v: impl Into<Arc<str>>) -> Self {
        Self(v.into())
    }

    /// The value, for comparison or signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison; an empty secret matches nothing.
    pub fn matches(&self, other: &[u8]) -> bool {
        !self.0.is_empty() && ct_eq(self.0.as_bytes(), other)
    }
}

/// Whether `given` equals `expected`, in time that depends on `given`'s
/// length only: every word of `given` is compared (against zeros past
/// `expected`'s end), and the lengths in constant time, so neither where
/// they differ nor `expected`'s length shows in the time a wrong guess
/// takes. Eight bytes at a time through `subtle`'s `u64` compare rather
/// than its byte compare, on every request of a route with a key.
pub fn ct_eq(expected: &[u8], given: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    // Zeros past the slice's end: no comparison stops early on them.
    let word = |c: &[u8], at: usize| {
        let mut w = [0u8; 8];
        let end = (at + 8).min(c.len());
        if let Some(part) = c.get(at..end) {
            w[..part.len()].copy_from_slice(part);
        }
        u64::from_le_bytes(w)
    };
    let lengths = (expected.len() as u64).ct_eq(&(given.len() as u64));
    let same = (0..given.len().div_ceil(8)).fold(lengths, |acc, i| {
        acc & word(given, i * 8).ct_eq(&word(expected, i * 8))
    });
    same.into()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_bytes() {
        let secret = Secret::new("bench-route-key-0123");
        assert!(secret.matches(b"bench-route-key-0123"));
        // Each byte changed in turn, in every word and the short last one.
        let good = b"bench-route-key-0123";
        for i in 0..good.len() {
            let mut bad = *good;
            bad[i] ^= 0x20;
            assert!(!secret.matches(&bad), "byte {i}");
        }
        for other in [&b""[..], b"bench-route-key-012", b"bench-route-key-01234"] {
            assert!(!secret.matches(other));
        }
        assert!(!Secret::new("").matches(b""));
        // Lengths of whole words, and of none.
        assert!(Secret::new("12345678").matches(b"12345678"));
        assert!(!Secret::new("12345678").matches(b"12345679"));
        assert!(Secret::new("x").matches(b"x"));
        // A prefix of the secret padded with zeros is not the secret.
        assert!(!Secret::new("ab").matches(b"ab\0"));
        assert!(!ct_eq(b"ab\0", b"ab"));
    }
}
