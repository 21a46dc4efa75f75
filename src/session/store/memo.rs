//! The in-memory store's near lines ([`crate::shards::near`]), in front
//! of its caches. A worker serves one call's requests one after another;
//! a lookup through moka pays its read bookkeeping (read recording, expiry
//! callbacks, housekeeping), two keyed hashes and three clock reads. A
//! memo hit costs one keyed hash, a probe of this thread's lines, one
//! atomic load and one clock read.
//!
//! It never answers with what the store no longer holds:
//! - a line keeps a `Weak` to the session the hot cache holds, so what the
//!   cache dropped is gone here too;
//! - every write, delete and eviction bumps its key's stripe, and a line
//!   is stamped with the stripe's count read *before* the store was, so a
//!   line older than a write never answers;
//! - a session is not answered once its TTL has ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::session::Session;
use crate::shards::near::Near;

/// Stripes of write counts per store: a write to one key only misses the
/// lines of keys that share its stripe. Few enough that the counts (1 KiB,
/// read on every lookup) stay in cache between a session's requests: with
/// 4,096 a lookup's stripe was one more cold line, most often; a session's
/// write (once or twice a call) now sends the lines of 1/256 of the keys
/// back to the store once.
const STRIPES: usize = 256;

/// The memo of one store.
pub(super) struct Memo {
    near: Near,
    stripes: Box<[AtomicU32]>,
}

/// What a lookup that missed needs to be remembered: the key's hash and
/// its stripe count before the store was read.
pub(super) struct Miss {
    hash: u64,
    stripe: u32,
}

impl Memo {
    pub(super) fn new() -> Self {
        Self {
            near: Near::default(),
            stripes: (0..STRIPES).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// The stripe by the hash's high half (the lines' map uses the low
    /// bits).
    fn stripe(&self, hash: u64) -> &AtomicU32 {
        &self.stripes[((hash >> 32) % STRIPES as u64) as usize]
    }

    /// The session remembered for `key`, if it is still the store's and
    /// its TTL had not ended at `now`; otherwise what [`Memo::remember`]
    /// needs, taken before the caller reads the store.
    pub(super) fn get(&self, key: &str, now: Instant) -> Result<Arc<Session>, Miss> {
        let hash = self.near.hash(key.as_bytes());
        let stripe = self.stripe(hash).load(Ordering::Acquire);
        let live = |s: &Arc<Session>| s.stored_at.checked_add(s.ttl).is_some_and(|end| now < end);
        (self.near.get(hash, key.as_bytes(), stripe))
            .filter(live)
            .ok_or(Miss { hash, stripe })
    }

    /// Remembers what the store answered after `miss`.
    pub(super) fn remember(&self, key: &str, miss: Miss, session: &Arc<Session>) {
        (self.near).remember(miss.hash, key.as_bytes(), miss.stripe, session);
    }

    /// After a write, delete or eviction of `key`: no line from before it
    /// answers again, in any thread.
    pub(super) fn forget(&self, key: &str) {
        self.stripe(self.near.hash(key.as_bytes()))
            .fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Source;
    use crate::template::Vars;
    use serde_json::json;
    use std::time::Duration;

    fn session(ttl: Duration) -> Arc<Session> {
        let vars = Vars::from_json(json!({"call": {"id": "1"}})).unwrap();
        Arc::new(Session::new(vars, Source::Admin, ttl))
    }

    fn remembered(memo: &Memo, key: &str, s: &Arc<Session>) {
        let miss = memo.get(key, Instant::now()).err().unwrap();
        memo.remember(key, miss, s);
    }

    #[test]
    fn a_remembered_session_answers_until_its_key_is_written() {
        let memo = Memo::new();
        let s = session(Duration::from_secs(60));
        remembered(&memo, "call-1", &s);
        assert!(Arc::ptr_eq(
            &memo.get("call-1", Instant::now()).ok().unwrap(),
            &s
        ));
        assert!(memo.get("call-2", Instant::now()).is_err());
        memo.forget("call-1");
        assert!(memo.get("call-1", Instant::now()).is_err());
    }

    #[test]
    fn a_write_between_the_miss_and_the_store_read_is_not_hidden() {
        let memo = Memo::new();
        let old = session(Duration::from_secs(60));
        let miss = memo.get("call-1", Instant::now()).err().unwrap();
        // The store answered `old`, but a write landed after the miss.
        memo.forget("call-1");
        memo.remember("call-1", miss, &old);
        assert!(memo.get("call-1", Instant::now()).is_err());
    }

    #[test]
    fn what_the_cache_dropped_or_what_expired_is_gone() {
        let memo = Memo::new();
        let s = session(Duration::from_secs(60));
        remembered(&memo, "dropped", &s);
        drop(s);
        assert!(memo.get("dropped", Instant::now()).is_err());
        let short = session(Duration::from_millis(1));
        remembered(&memo, "short", &short);
        std::thread::sleep(Duration::from_millis(5));
        assert!(memo.get("short", Instant::now()).is_err());
    }

    /// A lookup is judged at the instant it is asked for (the request's
    /// arrival), not at the moment it runs.
    #[test]
    fn a_line_answers_as_of_the_instant_asked_for() {
        let memo = Memo::new();
        let s = session(Duration::from_secs(60));
        remembered(&memo, "call-1", &s);
        let expires = s.stored_at + s.ttl;
        assert!(
            memo.get("call-1", expires - Duration::from_millis(1))
                .is_ok()
        );
        assert!(memo.get("call-1", expires).is_err());
    }

    #[test]
    fn two_stores_never_answer_for_each_other() {
        let (a, b) = (Memo::new(), Memo::new());
        let s = session(Duration::from_secs(60));
        remembered(&a, "call-1", &s);
        assert!(b.get("call-1", Instant::now()).is_err());
        assert!(a.get("call-1", Instant::now()).is_ok());
    }
}
