//! The in-memory store: a `moka` cache with lock-free reads on the hot path,
//! per-entry TTL, bounded by count and by bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;
use serde_json::{Map, Value};

use super::memo::Memo;
use super::{SessionStore, Writes};
use crate::session::{Session, SessionError, Source};

/// A session as the cold store keeps it: compact JSON text (a 300-byte call
/// object costs ~300 bytes, not the ~3.7 KB of a `serde_json::Value` tree).
struct Stored {
    json: Box<[u8]>,
    source: Source,
    ttl: Duration,
    stored_at: Instant,
}

impl Stored {
    fn ttl_left(&self) -> Duration {
        self.ttl.saturating_sub(self.stored_at.elapsed())
    }

    fn encode(s: &Session) -> Self {
        let json = serde_json::to_vec(s.vars.as_map())
            .unwrap_or_default()
            .into_boxed_slice();
        Self {
            json,
            source: s.source,
            ttl: s.ttl,
            stored_at: s.stored_at,
        }
    }

    fn decode(&self) -> Option<Session> {
        let map: serde_json::Map<String, Value> = serde_json::from_slice(&self.json).ok()?;
        Some(Session {
            vars: crate::template::Vars::from_map(map),
            source: self.source,
            ttl: self.ttl,
            stored_at: self.stored_at,
            renders: Default::default(),
            timeline: Default::default(),
        })
    }
}

struct ColdTtl;

impl moka::Expiry<Arc<str>, Arc<Stored>> for ColdTtl {
    fn expire_after_create(
        &self,
        _k: &Arc<str>,
        v: &Arc<Stored>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(v.ttl_left())
    }
    fn expire_after_update(
        &self,
        _k: &Arc<str>,
        v: &Arc<Stored>,
        _now: Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl_left())
    }
}

/// Decoded sessions of active calls live at most this long without use.
const HOT_IDLE: Duration = Duration::from_secs(300);

struct HotTtl;

impl moka::Expiry<Arc<str>, Arc<Session>> for HotTtl {
    fn expire_after_create(
        &self,
        _k: &Arc<str>,
        v: &Arc<Session>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(v.ttl_left().min(HOT_IDLE))
    }
    fn expire_after_read(
        &self,
        _k: &Arc<str>,
        v: &Arc<Session>,
        _now: Instant,
        _d: Option<Duration>,
        _t: Instant,
    ) -> Option<Duration> {
        Some(v.ttl_left().min(HOT_IDLE))
    }
    fn expire_after_update(
        &self,
        _k: &Arc<str>,
        v: &Arc<Session>,
        _now: Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl_left().min(HOT_IDLE))
    }
}

/// In-memory sessions: a cold store of compact JSON (bounded by count and
/// bytes, TTL per entry) and a small hot cache of decoded sessions for the
/// calls in progress, so the request path reads a ready `Vars` lock-free;
/// in front of both, each worker's memo of its recent lookups.
#[derive(Clone)]
pub struct MemoryStore {
    cold: Cache<Arc<str>, Arc<Stored>>,
    hot: Cache<Arc<str>, Arc<Session>>,
    memo: Arc<Memo>,
    written: Writes,
    /// Boxed: the store stays small enough to pass by value.
    tally: Arc<super::tally::Tally>,
    pins: Arc<super::pins::MemoryPins>,
}

/// Decoded sessions kept hot (calls in progress); the rest stay compact.
pub const HOT_SESSIONS: u64 = 20_000;

impl MemoryStore {
    /// At most `max_sessions` entries and about `max_bytes` of data: every
    /// entry weighs at least `max_bytes / max_sessions`, so both bounds hold.
    pub fn new(max_sessions: u64, max_bytes: u64) -> Self {
        Self::with_hot(max_sessions, max_bytes, HOT_SESSIONS)
    }

    /// As [`MemoryStore::new`], with at most `hot` decoded sessions kept
    /// ready. A quarter of `max_bytes` goes to them (weighed by
    /// [`decoded_weight`](super::decoded_weight)), the rest to the compact
    /// store, so the two together stay within `max_bytes`.
    pub fn with_hot(max_sessions: u64, max_bytes: u64, hot: u64) -> Self {
        let hot_bytes = (max_bytes / 4).max(1);
        let cold_bytes = (max_bytes - max_bytes / 4).max(1);
        let floor = (cold_bytes / max_sessions.max(1)).clamp(1, u32::MAX as u64) as u32;
        let memo = Arc::new(Memo::new());
        let evicted = memo.clone();
        let cold = Cache::builder()
            .max_capacity(cold_bytes)
            .weigher(move |k: &Arc<str>, v: &Arc<Stored>| -> u32 {
                let w = (k.len() + v.json.len() + 96).min(u32::MAX as usize) as u32;
                w.max(floor)
            })
            .expire_after(ColdTtl)
            // At capacity the least recently used session goes and a new
            // one always gets in: moka's default admission (TinyLFU) could
            // refuse a call that just started in favour of older ones.
            .eviction_policy(EvictionPolicy::lru())
            // The compact store is the record: what it evicts, the memo
            // forgets at once (the hot cache learns it at its next read).
            .eviction_listener(move |k: Arc<Arc<str>>, _, _| evicted.forget(&k))
            .build();
        let hot_count = hot.min(max_sessions).max(1);
        let hot_floor = (hot_bytes / hot_count).clamp(1, u32::MAX as u64) as u32;
        let hot = Cache::builder()
            .max_capacity(hot_bytes)
            .weigher(move |k: &Arc<str>, v: &Arc<Session>| -> u32 {
                super::decoded_weight(k, v).max(hot_floor)
            })
            .expire_after(HotTtl)
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self {
            cold,
            hot,
            memo,
            written: Writes::new(),
            tally: Arc::new(super::tally::Tally::new(max_sessions)),
            pins: Arc::default(),
        }
    }

    /// Runs moka's maintenance (expiry, eviction) now; `serve` calls this on
    /// an interval so expiry and capacity are timely.
    pub async fn run_pending_tasks(&self) {
        self.cold.run_pending_tasks().await;
        self.hot.run_pending_tasks().await;
    }

    /// Sessions held (approximate).
    pub fn entry_count(&self) -> u64 {
        self.cold.entry_count()
    }

    /// The sessions' budget counters.
    pub(super) fn tally(&self) -> &super::tally::Tally {
        &self.tally
    }

    /// Every route's pinned tool definitions.
    pub(super) fn pins(&self) -> &super::pins::MemoryPins {
        &self.pins
    }

    pub(super) fn writes(&self) -> &Writes {
        &self.written
    }
}

impl MemoryStore {
    /// Replaces the session with what `f` makes of it (`None`: leave it),
    /// atomically; `Ok(false)` if there is none.
    pub(super) async fn update<F>(&self, id: &str, mut f: F) -> Result<bool, SessionError>
    where
        F: FnMut(&Session) -> Result<Option<Session>, SessionError> + Send,
    {
        let mut failure = None;
        let mut written = None;
        let result = self
            .cold
            .entry(Arc::from(id))
            .and_compute_with(|existing| {
                let op = match existing.and_then(|e| e.into_value().decode()) {
                    None => Op::Nop,
                    Some(old) => match f(&old) {
                        Ok(Some(s)) => {
                            let stored = Stored::encode(&s);
                            written = Some(s);
                            Op::Put(Arc::new(stored))
                        }
                        Ok(None) => Op::Nop,
                        Err(e) => {
                            failure = Some(e);
                            Op::Nop
                        }
                    },
                };
                std::future::ready(op)
            })
            .await;
        if let Some(e) = failure {
            return Err(e);
        }
        let existed = !matches!(result, moka::ops::compute::CompResult::StillNone(_));
        if let Some(s) = written {
            self.hot.insert(Arc::from(id), Arc::new(s)).await;
            self.memo.forget(id);
            self.written.announce(id);
        }
        Ok(existed)
    }
}

impl MemoryStore {
    /// The session through the caches, behind the memo.
    async fn lookup(&self, id: &str) -> Option<Arc<Session>> {
        if let Some(s) = self.hot.get(id).await {
            // The compact store is the record: what it evicted (bytes,
            // count) or expired is gone, even if still decoded here.
            if self.cold.contains_key(id) {
                return Some(s);
            }
            self.hot.invalidate(id).await;
            return None;
        }
        let stored = self.cold.get(id).await?;
        let session = stored.decode()?;
        let session = Arc::new(session);
        let key: Arc<str> = Arc::from(id);
        self.hot.insert(key.clone(), session.clone()).await;
        // A delete may have run since we read the cold entry: never let the
        // hot cache resurrect it.
        if !self.cold.contains_key(id) {
            self.hot.invalidate(&key).await;
            return None;
        }
        Some(session)
    }
}

impl MemoryStore {
    /// [`SessionStore::get`] for a request that arrived `at`: a session
    /// whose TTL had not ended then is still its session. The forwarding
    /// core passes the clock read its request began with, one read fewer
    /// per request.
    pub async fn get_at(
        &self,
        id: &str,
        at: Instant,
    ) -> Result<Option<Arc<Session>>, SessionError> {
        let miss = match self.memo.get(id, at) {
            Ok(s) => return Ok(Some(s)),
            Err(miss) => miss,
        };
        let found = self.lookup(id).await;
        if let Some(s) = &found {
            self.memo.remember(id, miss, s);
        }
        Ok(found)
    }
}

impl SessionStore for MemoryStore {
    async fn get(&self, id: &str) -> Result<Option<Arc<Session>>, SessionError> {
        self.get_at(id, Instant::now()).await
    }

    async fn put(&self, id: &str, session: Session) -> Result<(), SessionError> {
        let key: Arc<str> = Arc::from(id);
        self.cold
            .insert(key.clone(), Arc::new(Stored::encode(&session)))
            .await;
        self.hot.insert(key, Arc::new(session)).await;
        self.memo.forget(id);
        self.written.announce(id);
        Ok(())
    }

    async fn patch(
        &self,
        id: &str,
        patch: Map<String, Value>,
        max_bytes: usize,
    ) -> Result<bool, SessionError> {
        self.update(id, |old| {
            super::patched(old, patch.clone(), max_bytes).map(Some)
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<(), SessionError> {
        self.cold.invalidate(id).await;
        self.hot.invalidate(id).await;
        self.memo.forget(id);
        self.tally.forget(id);
        // Heard by whoever follows the session's end (call-scoped tokens).
        self.written.announce(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Store;
    use crate::template::Vars;
    use serde_json::json;

    fn sess(ttl: Duration) -> Session {
        Session::new(
            Vars::from_json(json!({"call": {"metadata": {"token": "t"}}})).unwrap(),
            Source::Admin,
            ttl,
        )
    }

    #[tokio::test]
    async fn put_get_delete() {
        let s = MemoryStore::new(100, 1 << 20);
        s.put("a", sess(Duration::from_secs(60))).await.unwrap();
        assert!(s.get("a").await.unwrap().is_some());
        s.delete("a").await.unwrap();
        assert!(s.get("a").await.unwrap().is_none());
        s.delete("never").await.unwrap();
    }

    #[tokio::test]
    async fn entries_expire_after_their_own_ttl() {
        let s = MemoryStore::new(100, 1 << 20);
        s.put("short", sess(Duration::from_millis(50)))
            .await
            .unwrap();
        s.put("long", sess(Duration::from_secs(60))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        s.run_pending_tasks().await;
        assert!(s.get("short").await.unwrap().is_none());
        assert!(s.get("long").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn capacity_evicts_instead_of_growing() {
        let s = MemoryStore::new(50, 1 << 20);
        for i in 0..500 {
            s.put(&format!("k{i}"), sess(Duration::from_secs(60)))
                .await
                .unwrap();
        }
        s.run_pending_tasks().await;
        let n = s.entry_count();
        assert!(n <= 50, "{n} entries kept with max_sessions = 50");
        assert!(n > 0);
    }

    /// At capacity a new session always gets in, and the least recently
    /// used goes (a call that just started must find its session): with
    /// moka's default admission (TinyLFU) a new key lost to entries read
    /// more often, and a call registered after a flood got 403.
    #[tokio::test]
    async fn at_capacity_a_new_session_is_kept_and_the_oldest_goes() {
        let s = MemoryStore::new(50, 1 << 20);
        for i in 0..50 {
            let id = format!("k{i}");
            s.put(&id, sess(Duration::from_secs(60))).await.unwrap();
            for _ in 0..3 {
                s.lookup(&id).await;
            }
        }
        s.run_pending_tasks().await;
        for i in 0..20 {
            let id = format!("new{i}");
            s.put(&id, sess(Duration::from_secs(60))).await.unwrap();
            s.run_pending_tasks().await;
            assert!(s.lookup(&id).await.is_some(), "{id} was not kept");
        }
        assert!(s.entry_count() <= 50);
        assert!(s.lookup("k0").await.is_none(), "the oldest stayed");
    }

    #[tokio::test]
    async fn patch_merges_and_keeps_expiry() {
        let s = MemoryStore::new(100, 1 << 20);
        assert!(!s.patch("none", Map::new(), 1000).await.unwrap());
        s.put("a", sess(Duration::from_secs(60))).await.unwrap();
        let Value::Object(p) = json!({"call": {"metadata": {"tenant": "acme"}}}) else {
            unreachable!()
        };
        assert!(s.patch("a", p, 1000).await.unwrap());
        let got = s.get("a").await.unwrap().unwrap();
        assert_eq!(
            Value::Object(got.vars.as_map().clone()),
            json!({"call": {"metadata": {"token": "t", "tenant": "acme"}}})
        );
        assert!(got.ttl_left() <= Duration::from_secs(60));
        let Value::Object(big) = json!({"x": "y".repeat(2000)}) else {
            unreachable!()
        };
        assert_eq!(
            s.patch("a", big, 1000).await.unwrap_err().code(),
            "session.too_large"
        );
    }

    /// `max_store_bytes` bounds what memory holds: 1,500 sessions of 64 KiB
    /// into a 50 MiB store leave at most 50 MiB of them readable (the hot
    /// tier of decoded sessions used to keep what the store had evicted).
    #[tokio::test]
    async fn max_bytes_bounds_every_tier() {
        let max: u64 = 50 << 20;
        let s = MemoryStore::new(1_000_000, max);
        let blob = "x".repeat(64 << 10);
        for i in 0..1500 {
            let vars = Vars::from_json(json!({"call": {"blob": blob}})).unwrap();
            let session = Session::new(vars, Source::Admin, Duration::from_secs(600));
            s.put(&format!("k{i}"), session).await.unwrap();
        }
        s.run_pending_tasks().await;
        let mut readable = 0u64;
        for i in 0..1500 {
            if s.get(&format!("k{i}")).await.unwrap().is_some() {
                readable += 1;
            }
        }
        assert!(
            readable * (64 << 10) <= max,
            "{readable} sessions of 64 KiB readable"
        );
        assert!(
            readable >= 400,
            "the bound is not far below the figure: {readable}"
        );
        let hot_weight = s.hot.weighted_size();
        assert!(hot_weight <= max / 4, "decoded tier weighs {hot_weight}");
    }

    #[tokio::test]
    async fn sessions_decode_from_the_compact_store_when_not_hot() {
        let s = MemoryStore::with_hot(1000, 1 << 20, 2);
        for i in 0..50 {
            let vars =
                Vars::from_json(json!({"call": {"metadata": {"token": format!("t{i}")}, "n": i}}))
                    .unwrap();
            s.put(
                &format!("k{i}"),
                Session::new(vars, Source::Webhook, Duration::from_secs(60)),
            )
            .await
            .unwrap();
        }
        s.run_pending_tasks().await;
        assert!(s.hot.entry_count() <= 2);
        for i in [0, 17, 49] {
            let got = s.get(&format!("k{i}")).await.unwrap().unwrap();
            assert_eq!(
                got.vars.as_map()["call"]["metadata"]["token"],
                format!("t{i}")
            );
            assert_eq!(got.source, Source::Webhook);
            assert!(
                got.ttl_left() <= Duration::from_secs(60)
                    && got.ttl_left() > Duration::from_secs(50)
            );
        }
        s.delete("k17").await.unwrap();
        assert!(
            s.get("k17").await.unwrap().is_none(),
            "deleted from both tiers"
        );
    }

    /// A worker's memo never answers with what a write replaced or the
    /// store evicted, even while a request still holds the old session.
    #[tokio::test]
    async fn a_read_session_is_never_served_after_a_write_or_an_eviction() {
        let s = MemoryStore::new(50, 1 << 20);
        s.put("a", sess(Duration::from_secs(60))).await.unwrap();
        let held = s.get("a").await.unwrap().unwrap();
        let Value::Object(p) = json!({"call": {"metadata": {"token": "new"}}}) else {
            unreachable!()
        };
        assert!(s.patch("a", p, 1000).await.unwrap());
        let got = s.get("a").await.unwrap().unwrap();
        assert_eq!(got.vars.as_map()["call"]["metadata"]["token"], "new");
        assert!(!Arc::ptr_eq(&held, &got));

        let held = s.get("a").await.unwrap().unwrap();
        // Dropped by the compact store alone, as an eviction for room does.
        s.cold.invalidate("a").await;
        assert!(s.get("a").await.unwrap().is_none(), "evicted, still served");
        drop(held);
    }

    #[tokio::test]
    async fn wait_for_sees_a_late_write() {
        let s = MemoryStore::new(100, 1 << 20);
        let s2 = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s2.put("late", sess(Duration::from_secs(60))).await.unwrap();
        });
        let s = Store::Memory(s);
        let got = s.wait_for("late", Duration::from_secs(2)).await.unwrap();
        assert!(got.is_some());
        let none = s
            .wait_for("never", Duration::from_millis(30))
            .await
            .unwrap();
        assert!(none.is_none());
    }
}
