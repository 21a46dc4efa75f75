//! Session stores: where sessions live between the write (admin API,
//! webhook, resolver) and the requests that render from them.
//!
//! [`MemoryStore`] keeps them in this process; [`RedisStore`] (feature
//! `redis`) shares them between replicas. [`Store`] dispatches statically so
//! the request path pays no boxing.

mod memo;
mod memory;
mod pins;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod seal;
mod tally;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::broadcast;

pub use memory::{HOT_SESSIONS, MemoryStore};
pub use pins::{PinTable, PinWrites};
#[cfg(feature = "redis")]
pub use redis::RedisStore;

use super::{Session, SessionError, Source, check_id, deep_merge, validate};
use crate::config::{Server, StoreKind};

/// What every store does. Implemented by [`MemoryStore`] and `RedisStore`, dispatched
/// statically through [`Store`] (no boxing on the hot path).
pub trait SessionStore: Send + Sync {
    /// The session, if present and not expired.
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Arc<Session>>, SessionError>> + Send;
    /// Creates or replaces.
    fn put(
        &self,
        id: &str,
        session: Session,
    ) -> impl Future<Output = Result<(), SessionError>> + Send;
    /// Deep-merges `patch` into an existing session, keeping its expiry;
    /// `Ok(false)` if there is none.
    fn patch(
        &self,
        id: &str,
        patch: Map<String, Value>,
        max_bytes: usize,
    ) -> impl Future<Output = Result<bool, SessionError>> + Send;
    /// Removes (no error if absent).
    fn delete(&self, id: &str) -> impl Future<Output = Result<(), SessionError>> + Send;
}

/// The store `serve` runs with.
pub enum Store {
    /// In this process.
    Memory(MemoryStore),
    /// Shared through Redis, with a local cache in front.
    #[cfg(feature = "redis")]
    Redis(RedisStore),
}

/// Dispatches one expression over every variant.
macro_rules! each {
    ($store:expr, $s:ident => $e:expr) => {
        match $store {
            Store::Memory($s) => $e,
            #[cfg(feature = "redis")]
            Store::Redis($s) => $e,
        }
    };
}

impl Store {
    /// Opens the store `server` asks for, and keeps its expiry and capacity
    /// timely: maintenance runs every second until the store is dropped.
    pub fn open(server: &Server) -> Result<Arc<Store>, SessionError> {
        let store = Arc::new(match &server.store {
            StoreKind::Memory => Store::Memory(MemoryStore::new(
                server.max_sessions,
                server.max_store_bytes,
            )),
            #[cfg(feature = "redis")]
            StoreKind::Redis(r) => {
                tracing::info!(at = %r.shown(), prefix = %r.prefix, "sessions in redis");
                Store::Redis(RedisStore::connect_bounded(r, server.max_store_bytes)?)
            }
            #[cfg(not(feature = "redis"))]
            StoreKind::Redis(_) => {
                return Err(SessionError::Unavailable(
                    "this build has no Redis store (built without the `redis` feature); use kind = \"memory\"".into(),
                ));
            }
        });
        let maint = Arc::downgrade(&store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(s) = maint.upgrade() else { return };
                s.run_pending_tasks().await;
            }
        });
        Ok(store)
    }

    /// Waits up to `wait` for `id` to be written (webhook racing the tool
    /// call); returns it if it arrived. Writes from other replicas count
    /// too: the Redis store announces what it hears on pub/sub.
    pub async fn wait_for(
        &self,
        id: &str,
        wait: Duration,
    ) -> Result<Option<Arc<Session>>, SessionError> {
        let mut rx = self.changes();
        if let Some(s) = self.get(id).await? {
            return Ok(Some(s));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Ok(None),
                Ok(Ok(k)) if &*k == id => {
                    if let Some(s) = self.get(id).await? {
                        return Ok(Some(s));
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    if let Some(s) = self.get(id).await? {
                        return Ok(Some(s));
                    }
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return Ok(None),
            }
        }
    }

    /// Every session id written or deleted from now on, in this process or
    /// (with Redis) another replica: a receiver that lags skips ahead
    /// ([`broadcast::error::RecvError::Lagged`]) and should look again at
    /// whatever it follows.
    pub fn changes(&self) -> broadcast::Receiver<Arc<str>> {
        each!(self, s => s.writes().subscribe())
    }

    /// Adds one to session `sid`'s counter `name` (a budget's glob),
    /// atomically across replicas (Redis: one `HINCRBY` and `PEXPIRE`), and
    /// returns its count; the counters live `ttl` (the session's) and go
    /// when the session is deleted.
    pub async fn spend(&self, sid: &str, name: &str, ttl: Duration) -> Result<u64, SessionError> {
        match self {
            Store::Memory(s) => Ok(s.tally().spend(sid, name, ttl)),
            #[cfg(feature = "redis")]
            Store::Redis(s) => s.spend(sid, name, ttl).await,
        }
    }

    /// Session `sid`'s budget counters ([`Store::spend`]), by name.
    pub async fn spent(
        &self,
        sid: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>, SessionError> {
        match self {
            Store::Memory(s) => Ok(s.tally().counts(sid)),
            #[cfg(feature = "redis")]
            Store::Redis(s) => s.spent(sid).await,
        }
    }

    /// The store behind shared tokens: the Redis store with sessions
    /// sealed at rest (tokens are never written to Redis in clear).
    #[cfg(feature = "redis")]
    pub fn token_sharing(&self) -> Option<&RedisStore> {
        match self {
            Store::Redis(s) if s.shares_tokens() => Some(s),
            _ => None,
        }
    }

    /// Route `route`'s pinned and held tool definitions (`[mcp] pin_tools`),
    /// as stored now.
    pub async fn pins(&self, route: &str) -> Result<PinTable, SessionError> {
        match self {
            Store::Memory(s) => Ok(s.pins().table(route)),
            #[cfg(feature = "redis")]
            Store::Redis(s) => s.pins(route).await,
        }
    }

    /// Adds what judging a listing found to route `route`'s pins; a name
    /// already pinned keeps its definition (across replicas, the first
    /// to record it wins).
    pub async fn record_pins(&self, route: &str, w: &PinWrites) -> Result<(), SessionError> {
        match self {
            Store::Memory(s) => {
                s.pins().record(route, w);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Store::Redis(s) => s.record_pins(route, w).await,
        }
    }

    /// Pins tool `name`'s held definition on route `route` (atomically);
    /// `Ok(false)` if none is held.
    pub async fn approve_pin(&self, route: &str, name: &str) -> Result<bool, SessionError> {
        match self {
            Store::Memory(s) => Ok(s.pins().approve(route, name)),
            #[cfg(feature = "redis")]
            Store::Redis(s) => s.approve_pin(route, name).await,
        }
    }

    /// Replaces the session with what `f` makes of it (`None`: leave it),
    /// atomically (across replicas too); `Ok(false)` if there is none.
    pub async fn update<F>(&self, id: &str, f: F) -> Result<bool, SessionError>
    where
        F: FnMut(&Session) -> Result<Option<Session>, SessionError> + Send,
    {
        each!(self, s => s.update(id, f).await)
    }

    /// [`SessionStore::get`] for a request that arrived `at` (see
    /// [`MemoryStore::get_at`]); the Redis store reads its own clock.
    pub async fn get_at(
        &self,
        id: &str,
        at: std::time::Instant,
    ) -> Result<Option<Arc<Session>>, SessionError> {
        match self {
            Store::Memory(s) => s.get_at(id, at).await,
            #[cfg(feature = "redis")]
            Store::Redis(s) => s.get(id).await,
        }
    }

    /// The session as stored now, not as cached in front of Redis: for a
    /// value that must not be stale (a refresh token another replica may
    /// have just rotated).
    pub async fn get_fresh(&self, id: &str) -> Result<Option<Arc<Session>>, SessionError> {
        match self {
            Store::Memory(s) => s.get(id).await,
            #[cfg(feature = "redis")]
            Store::Redis(s) => s.get_fresh(id).await,
        }
    }

    /// Takes the lock `name` for at most `hold` across every replica:
    /// `Some(token)` to [`Store::unlock`] with, `None` while another holds
    /// it. The memory store has one process, whose own locks suffice: it
    /// always grants.
    pub async fn try_lock(
        &self,
        name: &str,
        hold: Duration,
    ) -> Result<Option<String>, SessionError> {
        match self {
            Store::Memory(_) => {
                let _ = (name, hold);
                Ok(Some(String::new()))
            }
            #[cfg(feature = "redis")]
            Store::Redis(s) => s.try_lock(name, hold).await,
        }
    }

    /// Releases a lock taken with [`Store::try_lock`], if still ours.
    pub async fn unlock(&self, name: &str, token: &str) {
        #[cfg(feature = "redis")]
        if let Store::Redis(s) = self {
            s.unlock(name, token).await;
        }
        let _ = (name, token);
    }

    /// Sessions this process holds (approximate): every session for the
    /// memory store, the locally cached ones for Redis.
    pub fn len(&self) -> u64 {
        each!(self, s => s.entry_count())
    }

    /// Whether [`Store::len`] is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs cache maintenance (expiry, eviction) now; `serve` calls this
    /// every second so expiry and capacity are timely.
    pub async fn run_pending_tasks(&self) {
        each!(self, s => s.run_pending_tasks().await)
    }
}

impl SessionStore for Store {
    async fn get(&self, id: &str) -> Result<Option<Arc<Session>>, SessionError> {
        each!(self, s => s.get(id).await)
    }
    async fn put(&self, id: &str, session: Session) -> Result<(), SessionError> {
        // Every source writes through here: the one id rule holds for all.
        check_id(id)?;
        each!(self, s => s.put(id, session).await)
    }
    async fn patch(
        &self,
        id: &str,
        patch: Map<String, Value>,
        max_bytes: usize,
    ) -> Result<bool, SessionError> {
        each!(self, s => s.patch(id, patch, max_bytes).await)
    }
    async fn delete(&self, id: &str) -> Result<(), SessionError> {
        each!(self, s => s.delete(id).await)
    }
}

/// How much memory a decoded session holds, estimated: its JSON size
/// times the cost of a `serde_json::Value` tree over its text (a 300-byte
/// call object decodes to ~3.7 KB) and the header values it may keep
/// ([`renders::PER_JSON_BYTE`](crate::session::renders::PER_JSON_BYTE)),
/// plus the cache entry itself. The hot tiers weigh their entries with
/// it, so `max_store_bytes` bounds decoded sessions too.
pub(crate) fn decoded_weight(key: &str, s: &Session) -> u32 {
    const DECODED_PER_JSON_BYTE: usize = 12 + crate::session::renders::PER_JSON_BYTE;
    const ENTRY: usize = 256;
    let w = crate::session::vars_size(&s.vars) * DECODED_PER_JSON_BYTE + key.len() + ENTRY;
    w.min(u32::MAX as usize) as u32
}

/// Announces writes to whoever waits for a session ([`Store::wait_for`]).
#[derive(Clone)]
pub(crate) struct Writes(broadcast::Sender<Arc<str>>);

impl Writes {
    fn new() -> Self {
        Self(broadcast::channel(1024).0)
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.0.subscribe()
    }

    fn announce(&self, id: &str) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(Arc::from(id));
        }
    }
}

/// `old` with `patch` deep-merged in, validated, keeping its expiry: the one
/// PATCH rule every store applies.
fn patched(
    old: &Session,
    patch: Map<String, Value>,
    max_bytes: usize,
) -> Result<Session, SessionError> {
    let mut map = old.vars.as_map().clone();
    deep_merge(&mut map, patch);
    let vars = validate(Value::Object(map), max_bytes)?;
    // Admin-patched data is no longer purely the resolver's (so a 401 from
    // the upstream does not evict it as a stale fetched token).
    let source = if old.source == Source::Resolver {
        Source::Admin
    } else {
        old.source
    };
    Ok(Session::new(vars, source, old.ttl_left()))
}
