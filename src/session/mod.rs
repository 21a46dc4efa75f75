//! Sessions: per-call variables, where they come from, and where they live.
//!
//! Every source (admin API, platform webhooks, resolver) writes through
//! [`validate`], so a session is always a bounded JSON object whose top-level
//! keys are valid template roots.

pub mod renders;
pub mod resolver;
pub mod scope;
pub mod store;
pub mod webhooks;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

pub use renders::Renders;
#[cfg(feature = "redis")]
pub use store::RedisStore;
pub use store::{MemoryStore, SessionStore, Store};

use crate::template::Vars;

/// Who wrote a session (resolver entries are evicted on upstream 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `PUT`/`PATCH` on the admin API.
    Admin,
    /// A platform webhook.
    Webhook,
    /// Fetched on a miss.
    Resolver,
}

impl Source {
    /// The name the admin API shows and the Redis store writes.
    pub fn name(self) -> &'static str {
        match self {
            Source::Admin => "admin",
            Source::Webhook => "webhook",
            Source::Resolver => "resolver",
        }
    }

    /// The inverse of [`Source::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Source::Admin, Source::Webhook, Source::Resolver]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// One session's variables and bookkeeping.
#[derive(Clone)]
pub struct Session {
    /// The variables templates render from.
    pub vars: Vars,
    /// Who wrote it.
    pub source: Source,
    /// Time to live it was stored with.
    pub ttl: Duration,
    /// When it was stored.
    pub stored_at: Instant,
    /// Header values rendered from it (empty in a clone).
    pub renders: Renders,
    /// Where its call's timeline entry is (empty in a clone): a request
    /// records itself there without a lookup by id.
    pub timeline: crate::shards::Hint,
}

impl Session {
    /// A new session, stored now.
    pub fn new(vars: Vars, source: Source, ttl: Duration) -> Self {
        Self {
            vars,
            source,
            ttl,
            stored_at: Instant::now(),
            renders: Renders::default(),
            timeline: Default::default(),
        }
    }

    /// Time left before it expires.
    pub fn ttl_left(&self) -> Duration {
        self.ttl.saturating_sub(self.stored_at.elapsed())
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("vars", &self.vars)
            .field("source", &self.source)
            .field("ttl_left", &self.ttl_left())
            .finish()
    }
}

/// Session errors, each with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The body is not what a session must be.
    #[error("{0}")]
    Invalid(String),
    /// Larger than `max_session_bytes`.
    #[error("session is {0} bytes; the limit is {1} (max_session_bytes)")]
    TooLarge(usize, usize),
    /// No such session.
    #[error("no session with that id")]
    NotFound,
    /// The id is not one the admin API could address.
    #[error("session ids are 1-256 characters of letters, digits, `.`, `_`, `:`, `-`")]
    InvalidId,
    /// The store cannot be reached.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

impl SessionError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::Invalid(_) => "session.invalid",
            SessionError::TooLarge(..) => "session.too_large",
            SessionError::NotFound => "session.not_found",
            SessionError::InvalidId => "session.key_invalid",
            SessionError::Unavailable(_) => "store.unavailable",
        }
    }
}

/// Longest session id accepted from any source.
pub const MAX_ID: usize = 256;

/// The one id rule every source of sessions applies (admin API, webhooks,
/// resolver): 1-256 letters, digits, `.`, `_`, `:`, `-`. An id outside it
/// could never be read or deleted through the admin API, and could carry
/// path or control characters into logs and URLs.
pub fn check_id(id: &str) -> Result<(), SessionError> {
    let ok = !is_dot_segment(id)
        && !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SessionError::InvalidId)
    }
}

/// `.` and `..`: ids that would become dot-segments in a resolver's URL
/// (`GET /call/..`), refused wherever an id or session key is read.
pub fn is_dot_segment(id: &str) -> bool {
    id == "." || id == ".."
}

/// Roots templates reserve for the proxy (docs/templates.md "Template language").
pub const RESERVED_ROOTS: &[&str] = &["session", "request", "env", "credentials"];
const MAX_DEPTH: usize = 32;

/// The one validation every session source goes through: a JSON object,
/// bounded in depth and size, whose top-level keys are template identifiers
/// (`call`, `user_1`, …) and not reserved roots.
pub fn validate(value: Value, max_bytes: usize) -> Result<Vars, SessionError> {
    let Value::Object(map) = value else {
        return Err(SessionError::Invalid("session variables must be a JSON object, e.g. {\"call\": {\"metadata\": {\"token\": \"…\"}}}".into()));
    };
    for k in map.keys() {
        let ident = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ident {
            return Err(SessionError::Invalid(format!(
                "top-level key `{}` is not a template identifier (letters, digits, `_`, `-`, not starting with a digit)",
                truncate(k)
            )));
        }
        if RESERVED_ROOTS.contains(&k.as_str()) {
            return Err(SessionError::Invalid(format!(
                "top-level key `{k}` is reserved (session.id, request.*, env.* are set by the proxy)"
            )));
        }
    }
    let v = Value::Object(map);
    if depth(&v) > MAX_DEPTH {
        return Err(SessionError::Invalid(format!(
            "session variables nest deeper than {MAX_DEPTH} levels"
        )));
    }
    let size = approx_size(&v);
    if size > max_bytes {
        return Err(SessionError::TooLarge(size, max_bytes));
    }
    match v {
        Value::Object(m) => Ok(Vars::from_map(m)),
        _ => Err(SessionError::Invalid("not an object".into())),
    }
}

fn truncate(k: &str) -> String {
    k.chars().take(40).collect()
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The size of a session's variables as JSON, estimated.
pub fn vars_size(vars: &Vars) -> usize {
    let members = vars.as_map().iter();
    2 + members
        .map(|(k, v)| k.len() + 4 + approx_size(v))
        .sum::<usize>()
}

/// Serialized size, a good proxy for memory use.
pub fn approx_size(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| approx_size(x) + 1).sum::<usize>(),
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() + 4 + approx_size(x))
                .sum::<usize>()
        }
    }
}

/// JSON merge for PATCH: objects merge key by key, recursively; `null`
/// removes a key (RFC 7396); anything else replaces.
pub fn deep_merge(base: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                base.remove(&k);
            }
            Value::Object(p) => match base.get_mut(&k) {
                Some(Value::Object(b)) => deep_merge(b, p),
                _ => {
                    let mut fresh = Map::new();
                    deep_merge(&mut fresh, p);
                    base.insert(k, Value::Object(fresh));
                }
            },
            other => {
                base.insert(k, other);
            }
        }
    }
}

/// A short, non-reversible tag for a session id in logs (ids are bearer-ish:
/// knowing one lets a caller with the route key act as that call).
pub fn id_hash(id: &str) -> String {
    use sha2::Digest;
    crate::hex::encode(&sha2::Sha256::digest(id.as_bytes())[..4])
}

/// Shared handle to a session store.
pub type SharedStore = Arc<Store>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_accepts_objects_and_rejects_the_rest() {
        assert!(validate(json!({"call": {"id": "x"}}), 1000).is_ok());
        for bad in [
            json!([1]),
            json!("s"),
            json!({"1abc": 1}),
            json!({"a b": 1}),
            json!({"session": {}}),
            json!({"env": 1}),
        ] {
            let e = validate(bad, 1000).unwrap_err();
            assert_eq!(e.code(), "session.invalid");
        }
        let e = validate(json!({"a": "x".repeat(2000)}), 1000).unwrap_err();
        assert_eq!(e.code(), "session.too_large");
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({"a": deep});
        }
        assert_eq!(
            validate(deep, 1 << 20).unwrap_err().code(),
            "session.invalid"
        );
    }

    #[test]
    fn deep_merge_merges_objects_and_removes_nulls() {
        let mut base =
            json!({"call": {"metadata": {"token": "a", "tenant": "t"}, "id": "1"}, "x": 1});
        let patch = json!({"call": {"metadata": {"token": "b", "tenant": null}}, "y": [1]});
        let Value::Object(b) = &mut base else {
            unreachable!()
        };
        let Value::Object(p) = patch else {
            unreachable!()
        };
        deep_merge(b, p);
        assert_eq!(
            base,
            json!({"call": {"metadata": {"token": "b"}, "id": "1"}, "x": 1, "y": [1]})
        );
    }

    #[test]
    fn ids() {
        assert!(check_id("call_8f2a-1:x.y").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "id with space",
            "a\u{2028}b",
            &"a".repeat(300),
        ] {
            assert_eq!(
                check_id(bad).unwrap_err().code(),
                "session.key_invalid",
                "{bad:?}"
            );
        }
        assert!(check_id(&"a".repeat(256)).is_ok());
        assert!(check_id("...").is_ok() && check_id(".a").is_ok());
    }

    #[test]
    fn id_hash_is_short_and_stable() {
        assert_eq!(id_hash("call-1"), id_hash("call-1"));
        assert_eq!(id_hash("call-1").len(), 8);
        assert_ne!(id_hash("call-1"), id_hash("call-2"));
    }
}
