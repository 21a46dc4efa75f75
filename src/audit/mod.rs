//! Who called what: one record per request, kept per session in the call
//! timeline (every route's requests: the console's call inspector and the
//! admin API's `GET /calls/{id}` read it), and written as a JSON line to
//! the audit file (`[audit] path`) when it came by an MCP route.
//!
//! A record names the session by a keyed hash, never by its id (a call id
//! is bearer-ish: with the route key it acts as that call), and carries no
//! header value, variable or token. Writing happens off the request path:
//! records go through a bounded channel to a writer task; when the channel
//! is full the record is dropped and counted, never waited for. The file
//! is reopened on SIGHUP, so logrotate's `create` works.

mod log;
mod record;
mod timeline;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::Mac as _;

use crate::shards::Hint;

pub use log::AuditLog;
pub use record::{Record, clip, clip_id, format_rfc3339};
pub use timeline::Timeline;

/// The keyed hash that names a session in records: HMAC-SHA256 of the id
/// under the audit key, first 8 bytes in hex. Without the key, a known call
/// id cannot be matched to its records.
#[derive(Clone)]
pub struct SessionHasher {
    key: Arc<[u8]>,
}

impl SessionHasher {
    /// Hashes under `key`.
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.into() }
    }

    /// Hashes under a key made for this process (hashes then match only
    /// within one run of one replica).
    pub fn random() -> Self {
        let key: [u8; 32] = std::array::from_fn(|_| rand_byte());
        Self::new(&key)
    }

    /// The hash of `id`.
    pub fn hash(&self, id: &str) -> String {
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        let out = mac.finalize().into_bytes();
        crate::hex::encode(&out[..8])
    }
}

impl std::fmt::Debug for SessionHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionHasher(<key redacted>)")
    }
}

/// One secret random byte: SipHash under a fresh OS-seeded `RandomState`
/// key. Not `net::tracecontext`'s generator: trace ids are shown to every
/// upstream, and its state could be recovered from them; this key must not.
fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u8
}

/// Where requests are recorded: every session's timeline, and the audit
/// trail (when `[audit]` is set) for MCP requests, under one session
/// hasher.
pub struct Recorder {
    audit: Option<AuditLog>,
    /// The per-session timelines (`GET /calls/{id}`).
    pub timeline: Timeline,
    hasher: SessionHasher,
}

/// Timeline memory, all sessions together.
const TIMELINE_BYTES: u64 = 64 << 20;

impl Recorder {
    /// Records to `audit` (if any) and to timelines kept `ttl` after a
    /// session's last request; sessions named under `hasher`.
    pub fn new(audit: Option<AuditLog>, hasher: SessionHasher, ttl: Duration) -> Self {
        Self {
            audit,
            timeline: Timeline::new(TIMELINE_BYTES, ttl),
            hasher,
        }
    }

    /// The keyed hash a record names session `id` by.
    pub fn session_hash(&self, id: &str) -> String {
        self.hasher.hash(id)
    }

    /// Records one request of session `id` (if it got that far), built by
    /// `build` from the session's keyed hash: to the session's timeline
    /// (found through `hint`, the session's own, when the request found
    /// its session), and to the audit trail when it is an MCP request.
    /// False if the audit queue was full and the line was dropped.
    pub fn record(
        &self,
        (id, hint): (Option<&str>, Option<&Hint>),
        now: Instant,
        build: impl FnOnce(&str) -> Record,
    ) -> bool {
        let entry = id.map(|id| self.timeline.entry(id, hint, &self.hasher));
        let record = build(entry.as_ref().map_or("", |e| e.hash.as_str()));
        let audited = self.audit.as_ref().filter(|_| record.mcp);
        let written = audited.is_none_or(|a| a.record(record.clone()));
        if let Some(e) = entry {
            e.push(record, now);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_hashes_are_keyed() {
        let a = SessionHasher::new(b"key-a");
        let b = SessionHasher::new(b"key-b");
        assert_eq!(a.hash("call-1"), a.hash("call-1"));
        assert_ne!(a.hash("call-1"), b.hash("call-1"));
        assert_eq!(a.hash("call-1").len(), 16);
        assert!(!format!("{a:?}").contains("key-a"));
    }
}
