//! Fetch-on-miss: when a route says `on_unknown_session = "resolve"`, an
//! unknown session is fetched from an HTTP API described by templates (e.g.
//! Vapi's `GET /call/{id}`), stored with the resolver TTL, and served.
//!
//! - Concurrent misses for one id make one request (single-flight, through
//!   `moka`'s `try_get_with`), across replicas too: a short lock in the
//!   store (`SET NX PX` with Redis) lets one replica fetch while the
//!   others wait for its write.
//! - A failure is remembered for `negative_ttl`: callers get 503
//!   `resolver.unavailable` without hammering the API.
//! - Each fetch has a deadline (`timeout`).
//! - An entry close to expiry (`refresh_before`) is served and refreshed in
//!   the background (stale-while-revalidate).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Uri, header};
use serde_json::Value;

use super::scope::CallScope;
use super::{Session, SessionError, SessionStore, Source, Store, validate};
use crate::config::Resolver;
use crate::net::client::HttpClient;
use crate::net::response::{empty, read_limited};
use crate::platform::views;

/// Why a fetch failed (never includes response bodies or credentials).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// Remembered failure, network error, timeout, non-2xx or bad JSON.
    #[error("resolver unavailable: {0}")]
    Unavailable(String),
    /// The API answered 404: the session does not exist there either.
    #[error("the resolver API does not know this session")]
    NotFound,
}

impl ResolveError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ResolveError::Unavailable(_) => "resolver.unavailable",
            ResolveError::NotFound => "session.not_found",
        }
    }
}

/// Resolver state that outlives config reloads.
pub struct ResolverRuntime {
    inflight: moka::future::Cache<Arc<str>, Arc<Session>>,
    negative: moka::sync::Cache<Arc<str>, (Instant, bool)>,
    client: HttpClient,
    fetches: AtomicU64,
}

/// Ids each of the resolver's caches holds at most.
const ENTRIES: u64 = 100_000;

/// Failures remembered (until when, and whether the API said 404), at
/// most `entries` of them.
fn negative_cache(entries: u64) -> moka::sync::Cache<Arc<str>, (Instant, bool)> {
    moka::sync::Cache::builder()
        .max_capacity(entries)
        .time_to_live(Duration::from_secs(3600))
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .build()
}

/// How long past a fetch's own deadline the cross-replica lock is held.
const LOCK_SLACK: Duration = Duration::from_secs(1);

/// Largest resolver response read.
const MAX_RESPONSE: usize = 1 << 20;

impl ResolverRuntime {
    /// A runtime using `client` for fetches.
    pub fn new(client: HttpClient) -> Self {
        Self {
            // Entries live only long enough to coalesce concurrent misses;
            // the session itself goes to the store. Both caches admit every
            // new entry (the least recently used goes at capacity): TinyLFU,
            // moka's default, could refuse a new call's and fetch it again.
            inflight: moka::future::Cache::builder()
                .time_to_live(Duration::from_millis(500))
                .max_capacity(ENTRIES)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
            negative: negative_cache(ENTRIES),
            client,
            fetches: AtomicU64::new(0),
        }
    }

    /// Requests sent to resolver APIs so far.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches `id` (once, however many callers ask at the same time) and
    /// stores it.
    pub async fn resolve(
        &self,
        cfg: &Resolver,
        env: &Value,
        id: &str,
        store: &Store,
        max_bytes: usize,
    ) -> Result<Arc<Session>, ResolveError> {
        if let Some((until, not_found)) = self.negative.get(id) {
            if until > Instant::now() {
                return Err(if not_found {
                    ResolveError::NotFound
                } else {
                    ResolveError::Unavailable(
                        "recent fetch failed; retrying after negative_ttl".into(),
                    )
                });
            }
            self.negative.invalidate(id);
        }
        let key: Arc<str> = Arc::from(id);
        let result = self
            .inflight
            .try_get_with(
                key.clone(),
                self.across_replicas(cfg, env, id, store, max_bytes),
            )
            .await;
        match result {
            Ok(s) => Ok(s),
            Err(e) => {
                let e = (*e).clone();
                self.negative.insert(
                    key,
                    (
                        Instant::now() + cfg.negative_ttl,
                        matches!(e, ResolveError::NotFound),
                    ),
                );
                Err(e)
            }
        }
    }

    /// One fetch of `id` across every replica sharing `store`: the replica
    /// that takes the store's short lock fetches and stores it; the others
    /// wait for that write (woken by it, as [`Store::wait_for`] is) and
    /// serve what it stored. A replica that cannot take or wait on the lock
    /// (the store unreachable, the fetching replica gone) fetches itself.
    async fn across_replicas(
        &self,
        cfg: &Resolver,
        env: &Value,
        id: &str,
        store: &Store,
        max_bytes: usize,
    ) -> Result<Arc<Session>, ResolveError> {
        let lock = format!("resolve:{id}");
        let hold = cfg.timeout + LOCK_SLACK;
        let token = match store.try_lock(&lock, hold).await {
            Ok(None) => match store.wait_for(id, hold).await {
                Ok(Some(s)) => return Ok(s),
                _ => None,
            },
            Ok(Some(token)) => Some(token),
            Err(_) => None,
        };
        let fetched = self.fetch_and_store(cfg, env, id, store, max_bytes).await;
        if let Some(token) = token {
            store.unlock(&lock, &token).await;
        }
        fetched
    }

    async fn fetch_and_store(
        &self,
        cfg: &Resolver,
        env: &Value,
        id: &str,
        store: &Store,
        max_bytes: usize,
    ) -> Result<Arc<Session>, ResolveError> {
        let s = Arc::new(self.fetch(cfg, env, id, max_bytes).await?);
        store
            .put(id, (*s).clone())
            .await
            .map_err(|e| ResolveError::Unavailable(e.to_string()))?;
        Ok(s)
    }

    /// Refreshes `id` in the background if `session` came from the resolver
    /// and is within `refresh_before` of expiring.
    pub fn maybe_refresh(
        self: &Arc<Self>,
        cfg: Arc<Resolver>,
        env: Arc<Value>,
        id: &str,
        session: &Session,
        store: Arc<Store>,
        max_bytes: usize,
    ) {
        if session.source != Source::Resolver || session.ttl_left() > cfg.refresh_before {
            return;
        }
        let me = Arc::clone(self);
        let id = id.to_string();
        tokio::spawn(async move {
            // A failed refresh leaves the current entry to expire naturally.
            let _ = me.resolve(&cfg, &env, &id, &store, max_bytes).await;
        });
    }

    async fn fetch(
        &self,
        cfg: &Resolver,
        env: &Value,
        id: &str,
        max_bytes: usize,
    ) -> Result<Session, ResolveError> {
        let scope = CallScope::new(id, env);
        let url = cfg
            .url
            .render_string(&scope)
            .map_err(|e| ResolveError::Unavailable(format!("url template: {}", e.code())))?;
        let uri: Uri = url.parse().map_err(|_| {
            ResolveError::Unavailable("the rendered resolver url is not a URL".into())
        })?;
        if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.authority().is_none() {
            return Err(ResolveError::Unavailable(
                "the rendered resolver url is not http(s)".into(),
            ));
        }
        let mut req = Request::builder().method(cfg.method.clone()).uri(uri);
        for (name, t) in &cfg.headers {
            let v = t
                .render(&scope)
                .map_err(|e| ResolveError::Unavailable(format!("header `{name}`: {}", e.code())))?;
            req = req.header(name, v);
        }
        let req = req
            .header(header::ACCEPT, "application/json")
            .body(empty())
            .map_err(|_| ResolveError::Unavailable("could not build the request".into()))?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let resp = tokio::time::timeout(cfg.timeout, self.client.request(req))
            .await
            .map_err(|_| ResolveError::Unavailable(format!("no answer within {:?}", cfg.timeout)))?
            .map_err(|_| ResolveError::Unavailable("could not connect".into()))?;
        let status = resp.status();
        if status == http::StatusCode::NOT_FOUND {
            return Err(ResolveError::NotFound);
        }
        if !status.is_success() {
            return Err(ResolveError::Unavailable(format!(
                "the API answered {}",
                status.as_u16()
            )));
        }
        let body = tokio::time::timeout(cfg.timeout, read_limited(resp.into_body(), MAX_RESPONSE))
            .await
            .map_err(|_| ResolveError::Unavailable("response body too slow".into()))?
            .map_err(|_| {
                ResolveError::Unavailable("response body too large or cut short".into())
            })?;
        let mut doc: Value = serde_json::from_slice(&body).map_err(|_| {
            ResolveError::Unavailable("the API answered something that is not JSON".into())
        })?;
        if let Some(p) = &cfg.pointer {
            doc = doc.pointer(p).cloned().ok_or_else(|| {
                ResolveError::Unavailable(format!("the response has nothing at `{p}`"))
            })?;
        }
        if !doc.is_object() {
            return Err(ResolveError::Unavailable(
                "the API answered JSON that is not an object".into(),
            ));
        }
        if let Some(platform) = cfg.platform {
            views::apply(platform, &mut doc);
        }
        let mut vars = serde_json::Map::new();
        vars.insert(cfg.bind.clone(), doc);
        let vars = validate(Value::Object(vars), max_bytes)
            .map_err(|e: SessionError| ResolveError::Unavailable(e.to_string()))?;
        Ok(Session::new(vars, Source::Resolver, cfg.ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full negative cache still remembers a new failure (the least
    /// recently used goes). Refused, as moka's default admission refuses
    /// a key read less often than the ones it would evict, the unknown id
    /// would be fetched from the platform's API on every request.
    #[test]
    fn a_full_negative_cache_remembers_a_new_failure() {
        let cache = negative_cache(8);
        let failed = (Instant::now() + Duration::from_secs(60), true);
        for i in 0..8 {
            let id: Arc<str> = Arc::from(format!("old{i}"));
            cache.insert(id.clone(), failed);
            for _ in 0..5 {
                assert!(cache.get(&id).is_some());
            }
        }
        cache.run_pending_tasks();
        cache.insert(Arc::from("new"), failed);
        cache.run_pending_tasks();
        assert!(cache.get("new").is_some(), "the new failure is remembered");
        assert!(cache.entry_count() <= 8, "within its bound");
    }
}
