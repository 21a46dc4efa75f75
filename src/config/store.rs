//! `[store]`: the memory store (default) or Redis for several replicas.

use std::fmt;
use std::time::Duration;

use super::diagnostics::Ctx;
use super::schema::RawStore;

/// Where sessions live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// In this process (default).
    Memory,
    /// Shared through Redis.
    Redis(RedisSettings),
}

/// `[store] kind = "redis"`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db`.
    pub url: String,
    /// Prefix of every key and of the invalidation channel.
    pub prefix: String,
    /// How long a replica serves a session from its own cache before asking
    /// Redis again; bounds how stale a replica can be if an invalidation
    /// message is lost.
    pub cache_ttl: Duration,
    /// How long past `cache_ttl` a cached session is still served while
    /// Redis cannot be reached.
    pub stale_ttl: Duration,
    /// Connect and per-command deadline; a miss while Redis is down fails
    /// after this with `store.unavailable`.
    pub timeout: Duration,
}

impl fmt::Debug for RedisSettings {
    /// The URL may carry a password: only its host part is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_userinfo(&self.url))
            .field("prefix", &self.prefix)
            .field("cache_ttl", &self.cache_ttl)
            .field("stale_ttl", &self.stale_ttl)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `redis://user:pw@host/0` → `redis://***@host/0`.
pub fn redact_userinfo(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) if at > scheme.len() => {
            format!("{scheme}://***{}", &url[at..])
        }
        _ => url.to_string(),
    }
}

/// `[store]`: where sessions live.
pub(super) fn store(ctx: &mut Ctx<'_>, raw: Option<&RawStore>) -> StoreKind {
    let Some(s) = raw else {
        return StoreKind::Memory;
    };
    let kinds = [("memory", false), ("redis", true)];
    if !ctx.choice(Some(&s.kind), "store kind", &kinds, false) {
        return StoreKind::Memory;
    }
    let url = match &s.url {
        None => "redis://127.0.0.1:6379/0".to_string(),
        Some(u) => {
            if !u.get_ref().starts_with("redis://") {
                ctx.err(
                    u.span().start,
                    "config.invalid_value",
                    "store url must be `redis://[user:password@]host:port/db` (TLS and unix sockets are not supported)",
                );
            }
            u.get_ref().clone()
        }
    };
    StoreKind::Redis(RedisSettings {
        url,
        prefix: s.prefix.clone().unwrap_or_else(|| "headgate:".into()),
        cache_ttl: ctx.duration(&s.cache_ttl, Duration::from_secs(5)),
        stale_ttl: ctx.duration(&s.stale_ttl, Duration::from_secs(900)),
        timeout: ctx.duration(&s.timeout, Duration::from_secs(1)),
    })
}
