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
        use subtle::ConstantTimeEq;
        !self.0.is_empty() && bool::from(self.0.as_bytes().ct_eq(other))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
