//! Per-session counters of the memory store (`[mcp] budgets`): one map
//! of counts per session, living as long as the session would (its TTL
//! when first counted) and dropped with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// One session's counts, and how long they live.
struct Counts {
    ttl: Duration,
    by: Mutex<HashMap<Box<str>, u64>>,
}

struct Ttl;

impl moka::Expiry<Arc<str>, Arc<Counts>> for Ttl {
    fn expire_after_create(&self, _: &Arc<str>, v: &Arc<Counts>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The counters of every session.
#[derive(Clone)]
pub(crate) struct Tally(Cache<Arc<str>, Arc<Counts>>);

impl Tally {
    /// Counters for at most `sessions` sessions.
    pub(crate) fn new(sessions: u64) -> Self {
        Self(
            Cache::builder()
                .max_capacity(sessions.max(1))
                .expire_after(Ttl)
                // A new call's counts always get in (TinyLFU could refuse
                // them, and each spend would then count from zero).
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
        )
    }

    /// Adds one to session `sid`'s counter `name` (made to live `ttl`
    /// when the session's first one): its count now. Atomic: one map lock.
    pub(crate) fn spend(&self, sid: &str, name: &str, ttl: Duration) -> u64 {
        let counts = self.0.get_with(Arc::from(sid), || {
            Arc::new(Counts {
                ttl,
                by: Mutex::new(HashMap::new()),
            })
        });
        let Ok(mut by) = counts.by.lock() else {
            return u64::MAX;
        };
        let n = by.entry(Box::from(name)).or_insert(0);
        *n += 1;
        *n
    }

    /// Session `sid`'s counters, by name.
    pub(crate) fn counts(&self, sid: &str) -> BTreeMap<String, u64> {
        let Some(counts) = self.0.get(sid) else {
            return BTreeMap::new();
        };
        let by = counts.by.lock().unwrap_or_else(|p| p.into_inner());
        by.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    /// Drops session `sid`'s counters (the session was deleted).
    pub(crate) fn forget(&self, sid: &str) {
        self.0.invalidate(sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_session_and_name_and_forgets_with_the_session() {
        let t = Tally::new(10);
        let ttl = Duration::from_secs(60);
        assert_eq!(t.spend("a", "send_*", ttl), 1);
        assert_eq!(t.spend("a", "send_*", ttl), 2);
        assert_eq!(t.spend("a", "*", ttl), 1);
        assert_eq!(t.spend("b", "send_*", ttl), 1);
        let a = t.counts("a");
        assert_eq!((a["send_*"], a["*"], a.len()), (2, 1, 2));
        t.forget("a");
        assert!(t.counts("a").is_empty());
        assert_eq!(t.spend("a", "send_*", ttl), 1);
    }

    /// With every session's counters held, a new call's still count up
    /// (the least recently used go): a budget is never reset by capacity
    /// for the call that is spending.
    #[test]
    fn at_capacity_a_new_calls_counts_still_add_up() {
        let t = Tally::new(100);
        let ttl = Duration::from_secs(60);
        for _ in 0..5 {
            for i in 0..100 {
                t.spend(&format!("old{i}"), "x", ttl);
            }
            t.0.run_pending_tasks();
        }
        // The cache's upkeep between the call's requests, as in service.
        let spent: Vec<u64> = (0..5)
            .map(|_| {
                t.0.run_pending_tasks();
                t.spend("new", "x", ttl)
            })
            .collect();
        assert_eq!(spent, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn counts_expire_with_their_ttl() {
        let t = Tally::new(10);
        assert_eq!(t.spend("a", "x", Duration::from_millis(50)), 1);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(t.spend("a", "x", Duration::from_millis(50)), 1);
    }
}
