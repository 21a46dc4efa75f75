//! Sessions shared between replicas through Redis.
//!
//! Each session is one Redis string, `<prefix>session:<id>`, holding
//! `{"s": source, "t": ttl_ms, "v": variables}` with a Redis expiry (`PX`),
//! so TTL is per entry and Redis does the expiring. In front sits a small
//! `moka` cache so the request path rarely leaves the process:
//!
//! - an entry is *fresh* for `cache_ttl` (default 5 s) and served without
//!   asking Redis; after that the next request reads Redis again. Only
//!   while the invalidation subscription is up: without it every read asks
//!   Redis;
//! - every write publishes the id on `<prefix>invalidate`; the other
//!   replicas drop their copy at once (and wake anyone in `wait_for`), so a
//!   PATCH or DELETE reaches every replica within a pub/sub hop, and within
//!   `cache_ttl` even if the message is lost (a copy read within that hop
//!   after the write goes too: a message names the session, no version);
//! - while Redis cannot be reached, a cached entry is still served up to
//!   `stale_ttl` past its freshness (calls in progress keep working); a miss
//!   is `store.unavailable` (503). The connection and the subscription come
//!   back on their own.
//!
//! PATCH is atomic across replicas: read, merge and validate here, then a
//! Lua compare-and-set writes only if the value is still the one read
//! (`KEEPTTL` keeps the expiry), retrying on conflict.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::seal::{Opened, Sealer};
use super::{HOT_SESSIONS, SessionStore, Writes};
use crate::config::{RedisSettings, RedisTopology, redact_userinfo};
use crate::session::{Session, SessionError, Source};
use crate::template::Vars;

/// Compare-and-set for PATCH: 1 written, 0 gone, -1 changed since read.
const CAS: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cur ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
redis.call('PUBLISH', ARGV[4], ARGV[3])
return 1
";

/// Deletes a lock only if it still holds the token it was taken with.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// PATCH attempts before giving up on a session that keeps changing. Each
/// conflict means another write landed, so every round makes progress; the
/// jittered pause spreads contenders out.
const CAS_ATTEMPTS: u32 = 64;

/// A pause of 0 to `attempt` ms (capped at 20), jittered per call.
fn jitter(attempt: u32) -> Duration {
    let r = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    Duration::from_micros(r % (u64::from(attempt.min(20)) * 1000 + 1))
}

/// Sessions in Redis, cached in this process. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    link: conn::Link,
    /// Keys carry the id in braces (a hash tag): a cluster keeps every
    /// key of one session in one slot.
    tagged: bool,
    cache: Cache<Arc<str>, Cached>,
    prefix: String,
    channel: String,
    /// This replica's tag on the messages it publishes, so it skips its own.
    origin: String,
    cache_ttl: Duration,
    timeout: Duration,
    cas: redis::Script,
    /// Seals values at rest (`encryption_keys_env`).
    sealer: Option<Sealer>,
    /// Bumped by every invalidation: a read from Redis that raced one is
    /// not cached (it may be the value the invalidation replaced).
    generation: AtomicU64,
    /// Counts subscriptions made and lost: odd while invalidations are
    /// being heard. An entry is fresh only under the subscription it was
    /// cached in; otherwise it may have missed a message and is only a
    /// fallback for outages, and reads ask Redis.
    subscription: AtomicU64,
    written: Writes,
    _listener: AbortOnDrop,
}

#[derive(Clone)]
struct Cached {
    session: Arc<Session>,
    fresh_until: Instant,
    subscription: u64,
}

struct CacheTtl {
    longest: Duration,
}

impl moka::Expiry<Arc<str>, Cached> for CacheTtl {
    fn expire_after_create(&self, _k: &Arc<str>, v: &Cached, _now: Instant) -> Option<Duration> {
        Some(v.session.ttl_left().min(self.longest))
    }
    fn expire_after_update(
        &self,
        _k: &Arc<str>,
        v: &Cached,
        _now: Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.session.ttl_left().min(self.longest))
    }
}

struct AbortOnDrop(std::sync::OnceLock<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.get() {
            h.abort();
        }
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    s: &'static str,
    t: u64,
    v: &'a Map<String, Value>,
}

#[derive(Deserialize)]
struct WireIn {
    s: String,
    t: u64,
    v: Map<String, Value>,
}

fn encode(s: &Session) -> Vec<u8> {
    let wire = WireOut {
        s: s.source.name(),
        t: s.ttl.as_millis().min(u64::MAX as u128) as u64,
        v: s.vars.as_map(),
    };
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// `pttl_ms` is what Redis says is left (negative: no expiry).
fn decode(raw: &[u8], pttl_ms: i64) -> Option<Session> {
    let w: WireIn = serde_json::from_slice(raw).ok()?;
    let ttl = Duration::from_millis(w.t);
    let left = if pttl_ms < 0 {
        ttl
    } else {
        Duration::from_millis(pttl_ms as u64).min(ttl)
    };
    let now = Instant::now();
    Some(Session {
        vars: Vars::from_map(w.v),
        source: Source::from_name(&w.s)?,
        ttl,
        stored_at: now.checked_sub(ttl - left).unwrap_or(now),
        renders: Default::default(),
        timeline: Default::default(),
    })
}

fn unavailable(e: impl std::fmt::Display) -> SessionError {
    SessionError::Unavailable(format!("redis: {e}"))
}

impl RedisStore {
    /// Connects lazily (a Redis that is down at start is retried, not
    /// fatal) and starts listening for invalidations. Must be called
    /// inside a tokio runtime.
    pub fn connect(settings: &RedisSettings) -> Result<Self, SessionError> {
        Self::connect_bounded(settings, 1 << 30)
    }

    /// As [`RedisStore::connect`], with the local cache of decoded
    /// sessions bounded by `max_bytes` (`max_store_bytes`) as well as by
    /// count.
    pub fn connect_bounded(settings: &RedisSettings, max_bytes: u64) -> Result<Self, SessionError> {
        let link = conn::Link::open(settings)?;
        let max_bytes = max_bytes.max(1);
        let floor = (max_bytes / HOT_SESSIONS).clamp(1, u32::MAX as u64) as u32;
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |k: &Arc<str>, v: &Cached| -> u32 {
                super::decoded_weight(k, &v.session).max(floor)
            })
            .expire_after(CacheTtl {
                longest: settings.cache_ttl + settings.stale_ttl,
            })
            // A new call's copy always gets in (its outage fallback too).
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build();
        let origin = format!(
            "{:016x}",
            std::collections::hash_map::RandomState::new().hash_one(std::process::id())
        );
        let inner = Arc::new(Inner {
            link,
            tagged: matches!(settings.topology, RedisTopology::Cluster(_)),
            cache,
            channel: format!("{}invalidate", settings.prefix),
            prefix: settings.prefix.clone(),
            origin,
            cache_ttl: settings.cache_ttl,
            timeout: settings.timeout,
            cas: redis::Script::new(CAS),
            sealer: Sealer::new(&settings.encryption_keys),
            generation: AtomicU64::new(0),
            subscription: AtomicU64::new(0),
            written: Writes::new(),
            _listener: AbortOnDrop(std::sync::OnceLock::new()),
        });
        let task = tokio::spawn(listen(Arc::downgrade(&inner), settings.timeout));
        let _ = inner._listener.0.set(task.abort_handle());
        Ok(Self { inner })
    }

    /// Sessions cached in this process.
    pub fn entry_count(&self) -> u64 {
        self.inner.cache.entry_count()
    }

    /// Runs the cache's expiry and eviction now.
    pub async fn run_pending_tasks(&self) {
        self.inner.cache.run_pending_tasks().await;
    }

    pub(super) fn writes(&self) -> &Writes {
        &self.inner.written
    }

    fn key(&self, id: &str) -> String {
        self.keyed("session", id)
    }

    /// `<prefix><kind>:<id>`, the id in braces on a cluster (so a
    /// session's keys share a slot).
    fn keyed(&self, kind: &str, id: &str) -> String {
        match self.inner.tagged {
            true => format!("{}{kind}:{{{id}}}", self.inner.prefix),
            false => format!("{}{kind}:{id}", self.inner.prefix),
        }
    }

    /// Runs `pipe` (commands on session `id`'s keys), then announces `id`
    /// on the invalidation channel: in the same round trip on one
    /// endpoint; after it on a cluster, where `PUBLISH` is routed by the
    /// channel's slot, not the session's (and reaches every node).
    async fn then_announce(&self, mut pipe: redis::Pipeline, id: &str) -> Result<(), SessionError> {
        let mut conn = self.inner.link.conn().await?;
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.inner.channel).arg(self.message(id));
        if !self.inner.tagged {
            pipe.add_command(publish).ignore();
            return self.io(pipe.query_async::<()>(&mut conn)).await;
        }
        self.io(pipe.query_async::<()>(&mut conn)).await?;
        self.io(publish.query_async::<()>(&mut conn)).await
    }

    fn message(&self, id: &str) -> String {
        format!("{}:{id}", self.inner.origin)
    }

    /// Claims `name` for `window` across every replica (`SET NX PX`): true
    /// for the first claim, false while an earlier one lives.
    pub async fn claim(&self, name: &str, window: Duration) -> Result<bool, SessionError> {
        let key = format!("{}replay:{name}", self.inner.prefix);
        let mut conn = self.inner.link.conn().await?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(window.as_millis().max(1) as u64);
        let set: Option<String> = self.io(cmd.query_async(&mut conn)).await?;
        Ok(set.is_some())
    }

    /// The bytes stored for `session` at `id`: sealed when keys are set.
    fn wire(&self, id: &str, session: &Session) -> Result<Vec<u8>, SessionError> {
        let plain = encode(session);
        match &self.inner.sealer {
            None => Ok(plain),
            Some(s) => s
                .seal(&self.key(id), plain)
                .ok_or_else(|| unavailable("the system random source failed; nothing was written")),
        }
    }

    /// The session stored at `id`, opened and decoded; `None` (and a
    /// warning) for a value headgate cannot read.
    fn unwire(&self, id: &str, raw: &[u8], pttl: i64) -> Option<Session> {
        let opened = match &self.inner.sealer {
            None => Some(decode(raw, pttl)),
            Some(s) => match s.open(&self.key(id), raw) {
                Opened::Plain(p) => Some(decode(&p, pttl)),
                Opened::Unreadable => None,
            },
        };
        match opened {
            Some(Some(s)) => Some(s),
            Some(None) => {
                tracing::warn!(
                    code = "store.invalid_entry",
                    "a Redis session entry is not in headgate's format; treated as absent"
                );
                None
            }
            None => {
                tracing::warn!(
                    code = "store.invalid_entry",
                    "a Redis session entry is sealed with a key not in encryption_keys_env (or was altered); treated as absent"
                );
                None
            }
        }
    }

    /// `SET <prefix>lock:<name> <token> NX PX hold`: the token if taken.
    pub async fn try_lock(
        &self,
        name: &str,
        hold: Duration,
    ) -> Result<Option<String>, SessionError> {
        let key = format!("{}lock:{name}", self.inner.prefix);
        let token = format!("{}:{}", self.inner.origin, jitter(20).as_nanos());
        let mut conn = self.inner.link.conn().await?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(hold.as_millis().max(1) as u64);
        let set: Option<String> = self.io(cmd.query_async(&mut conn)).await?;
        Ok(set.map(|_| token))
    }

    /// Releases `name` if `token` still holds it (it expires anyway).
    pub async fn unlock(&self, name: &str, token: &str) {
        let key = format!("{}lock:{name}", self.inner.prefix);
        let script = redis::Script::new(UNLOCK);
        let done: Result<i64, _> = match self.inner.link.conn().await {
            Ok(mut conn) => {
                self.io(script.key(&key).arg(token).invoke_async(&mut conn))
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            tracing::warn!("a Redis lock was not released (it expires on its own): {e}");
        }
    }

    /// The session as Redis holds it now, bypassing the local cache.
    pub async fn get_fresh(&self, id: &str) -> Result<Option<Arc<Session>>, SessionError> {
        let generation = self.inner.generation.load(Ordering::Acquire);
        let Some((raw, pttl)) = self.fetch_raw(id).await? else {
            return Ok(None);
        };
        let Some(session) = self.unwire(id, &raw, pttl) else {
            return Ok(None);
        };
        let session = Arc::new(session);
        self.remember(id, session.clone(), generation).await;
        Ok(Some(session))
    }

    /// Runs one Redis exchange under the store's deadline.
    async fn io<T>(
        &self,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SessionError> {
        match tokio::time::timeout(self.inner.timeout, f).await {
            Ok(r) => r.map_err(|e| {
                self.inner.link.failed(&e);
                unavailable(e)
            }),
            Err(_) => Err(unavailable(format!(
                "no answer within {:?}",
                self.inner.timeout
            ))),
        }
    }

    /// The stored bytes and the expiry left, in one round trip.
    async fn fetch_raw(&self, id: &str) -> Result<Option<(Vec<u8>, i64)>, SessionError> {
        let key = self.key(id);
        let mut conn = self.inner.link.conn().await?;
        let (raw, pttl): (Option<Vec<u8>>, i64) = self
            .io(redis::pipe().get(&key).pttl(&key).query_async(&mut conn))
            .await?;
        Ok(raw.map(|r| (r, pttl)))
    }

    /// Caches `session` unless an invalidation ran since `generation` was
    /// read (the value may be the one it replaced).
    async fn remember(&self, id: &str, session: Arc<Session>, generation: u64) {
        let entry = Cached {
            session,
            fresh_until: Instant::now() + self.inner.cache_ttl,
            subscription: self.inner.subscription.load(Ordering::Acquire),
        };
        let key: Arc<str> = Arc::from(id);
        self.inner.cache.insert(key.clone(), entry).await;
        if self.inner.generation.load(Ordering::Acquire) != generation {
            self.inner.cache.invalidate(&key).await;
        }
    }

    async fn forget(&self, id: &str) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.cache.invalidate(id).await;
    }
}

impl RedisStore {
    /// Replaces the session with what `f` makes of it (`None`: leave it),
    /// atomically across replicas: read, apply `f`, then a Lua
    /// compare-and-set writes only if the value is still the one read
    /// (`KEEPTTL` keeps the expiry), retrying on conflict. `Ok(false)` if
    /// there is none.
    pub(super) async fn update<F>(&self, id: &str, mut f: F) -> Result<bool, SessionError>
    where
        F: FnMut(&Session) -> Result<Option<Session>, SessionError> + Send,
    {
        let key = self.key(id);
        for attempt in 0..CAS_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(jitter(attempt)).await;
            }
            let generation = self.inner.generation.load(Ordering::Acquire);
            let Some((raw, pttl)) = self.fetch_raw(id).await? else {
                self.forget(id).await;
                return Ok(false);
            };
            let Some(old) = self.unwire(id, &raw, pttl) else {
                return Ok(false);
            };
            let Some(new) = f(&old)? else {
                return Ok(true);
            };
            let mut conn = self.inner.link.conn().await?;
            let written: i64 = self
                .io(self
                    .inner
                    .cas
                    .key(&key)
                    .arg(&raw)
                    .arg(self.wire(id, &new)?)
                    .arg(self.message(id))
                    .arg(&self.inner.channel)
                    .invoke_async(&mut conn))
                .await?;
            match written {
                1 => {
                    self.remember(id, Arc::new(new), generation).await;
                    self.inner.written.announce(id);
                    return Ok(true);
                }
                0 => {
                    self.forget(id).await;
                    return Ok(false);
                }
                _ => continue,
            }
        }
        Err(SessionError::Unavailable(format!(
            "the session changed under {CAS_ATTEMPTS} writes in a row; retry"
        )))
    }
}

impl SessionStore for RedisStore {
    async fn get(&self, id: &str) -> Result<Option<Arc<Session>>, SessionError> {
        let cached = self.inner.cache.get(id).await;
        if let Some(c) = &cached
            && Instant::now() < c.fresh_until
            && c.subscription % 2 == 1
            && c.subscription == self.inner.subscription.load(Ordering::Acquire)
        {
            return Ok(Some(c.session.clone()));
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        match self.fetch_raw(id).await {
            Ok(Some((raw, pttl))) => {
                let Some(session) = self.unwire(id, &raw, pttl) else {
                    return Ok(None);
                };
                let session = Arc::new(session);
                self.remember(id, session.clone(), generation).await;
                Ok(Some(session))
            }
            Ok(None) => {
                if cached.is_some() {
                    self.inner.cache.invalidate(id).await;
                }
                Ok(None)
            }
            // Redis is unreachable: a call in progress keeps its session.
            Err(e) => match cached {
                Some(c) => {
                    tracing::debug!("serving a cached session while redis is unreachable: {e}");
                    Ok(Some(c.session))
                }
                None => Err(e),
            },
        }
    }

    async fn put(&self, id: &str, session: Session) -> Result<(), SessionError> {
        let ttl_ms = session.ttl.as_millis().clamp(1, u64::MAX as u128) as u64;
        let generation = self.inner.generation.load(Ordering::Acquire);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.key(id))
            .arg(self.wire(id, &session)?)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
        self.then_announce(pipe, id).await?;
        self.remember(id, Arc::new(session), generation).await;
        self.inner.written.announce(id);
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
        let mut pipe = redis::pipe();
        pipe.del(self.key(id))
            .ignore()
            .del(self.budget_key(id))
            .ignore();
        let result = self.then_announce(pipe, id).await;
        // Forget locally even if Redis failed: never serve what was asked gone.
        self.forget(id).await;
        self.inner.written.announce(id);
        result
    }
}

mod conn;
mod link;
mod pins;
mod tally;
mod tokens;

use link::listen;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_format_round_trips_with_the_expiry_redis_reports() {
        let vars = Vars::from_json(json!({"call": {"metadata": {"token": "t"}}})).unwrap();
        let s = Session::new(vars, Source::Webhook, Duration::from_secs(60));
        let raw = encode(&s);
        let back = decode(&raw, 30_000).unwrap();
        assert_eq!(back.source, Source::Webhook);
        assert_eq!(back.ttl, Duration::from_secs(60));
        assert!(back.ttl_left() <= Duration::from_secs(30));
        assert!(back.ttl_left() > Duration::from_secs(29));
        assert_eq!(back.vars.as_map()["call"]["metadata"]["token"], "t");
        assert!(decode(b"{\"not\":\"ours\"}", 10).is_none());
        assert!(decode(b"garbage", 10).is_none());
    }
}
