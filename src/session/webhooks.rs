//! Webhook delivery: a platform's signed message (verified with
//! [`crate::platform::signature`], read with [`crate::platform::payload`])
//! stores or purges the call's session.
//!
//! A delivery seen before within the tolerance window is answered 2xx and
//! changes nothing (platforms retry).

use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;

use super::{Session, SessionError, SessionStore, Source, Store, check_id, validate};
use crate::config::Webhook;
use crate::platform::{self, Action, Fingerprint, PayloadError};

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// A session was written, under this id.
    Stored(String),
    /// A session was removed.
    Purged,
    /// Valid, but nothing to do for this event type.
    Ignored,
    /// Seen before: nothing changed.
    Replayed,
}

impl HookOutcome {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            HookOutcome::Stored(_) => "stored",
            HookOutcome::Purged => "purged",
            HookOutcome::Ignored => "ignored",
            HookOutcome::Replayed => "replayed",
        }
    }
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Missing, wrong or stale signature.
    #[error("webhook signature missing, invalid or outside the time window")]
    Unauthorized,
    /// Not the platform's payload shape.
    #[error("{0}")]
    InvalidPayload(String),
    /// The session could not be stored.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl HookError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            HookError::Unauthorized => "webhook.unauthorized",
            HookError::InvalidPayload(_) => "webhook.invalid_payload",
            HookError::Session(e) => e.code(),
        }
    }
}

/// Remembers recent deliveries for replay protection. With the Redis store
/// the memory is Redis itself (`SET NX` with the window as its TTL), so a
/// delivery replayed to another replica is recognised too.
#[derive(Clone)]
pub struct ReplayGuard {
    seen: moka::sync::Cache<Fingerprint, ()>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    window: Duration,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(Duration::from_secs(3600))
    }
}

impl ReplayGuard {
    /// Keeps delivery fingerprints for `window`.
    pub fn new(window: Duration) -> Self {
        Self::holding(window, 200_000)
    }

    /// Keeps at most `most` fingerprints.
    fn holding(window: Duration, most: u64) -> Self {
        Self {
            seen: moka::sync::Cache::builder()
                .max_capacity(most)
                .time_to_live(window)
                // The newest deliveries are the ones a replay repeats: at
                // capacity the oldest fingerprint goes, a new one always
                // gets in (TinyLFU could refuse it).
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
            window,
        }
    }

    /// True the first time a fingerprint is offered within the window, on
    /// this replica or (with the Redis store) on any.
    pub async fn first_time(&self, fp: Fingerprint, store: &Store) -> Result<bool, SessionError> {
        match store {
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.claim(&crate::hex::encode(&fp), self.window).await,
            Store::Memory(_) => Ok(self.seen.entry(fp).or_insert(()).is_fresh()),
        }
    }
}

/// Verifies a delivery for `hook`'s platform; the fingerprint on success.
pub fn verify(hook: &Webhook, headers: &HeaderMap, body: &[u8]) -> Option<Fingerprint> {
    let secret = hook.secret.as_ref()?;
    let p = hook.platform;
    platform::verify(
        p,
        &hook.hmac,
        secret,
        headers,
        body,
        hook.tolerance,
        platform::now_unix(),
    )
}

/// Handles one verified-or-not delivery end to end.
pub async fn deliver(
    hook: &Webhook,
    headers: &HeaderMap,
    body: &[u8],
    store: &Store,
    replay: &ReplayGuard,
    max_session_bytes: usize,
) -> Result<HookOutcome, HookError> {
    let fp = verify(hook, headers, body).ok_or(HookError::Unauthorized)?;
    let payload: Value = serde_json::from_slice(body)
        .map_err(|_| HookError::InvalidPayload("body is not JSON".into()))?;
    let action = platform::interpret(hook.platform, &payload)
        .map_err(|PayloadError(m)| HookError::InvalidPayload(m))?;
    if let Action::Store(id, _) | Action::Purge(id) = &action {
        check_id(id)?;
    }
    if !replay.first_time(fp, store).await? {
        return Ok(HookOutcome::Replayed);
    }
    match action {
        Action::Ignore => Ok(HookOutcome::Ignored),
        Action::Purge(id) => {
            store.delete(&id).await?;
            Ok(HookOutcome::Purged)
        }
        Action::Store(id, vars) => {
            let vars = validate(vars, max_session_bytes)?;
            store
                .put(&id, Session::new(vars, Source::Webhook, hook.ttl))
                .await?;
            Ok(HookOutcome::Stored(id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::store::MemoryStore;

    /// With the guard full of deliveries seen more than once, a new one
    /// is still remembered: its replay is refused.
    #[tokio::test]
    async fn at_capacity_a_new_delivery_is_remembered() {
        let guard = ReplayGuard::holding(Duration::from_secs(60), 100);
        let store = Store::Memory(MemoryStore::new(10, 1 << 20));
        for _ in 0..5 {
            for i in 0..100u8 {
                guard.first_time([i; 32], &store).await.unwrap();
            }
            guard.seen.run_pending_tasks();
        }
        let fresh = [200; 32];
        assert!(guard.first_time(fresh, &store).await.unwrap());
        guard.seen.run_pending_tasks();
        assert!(!guard.first_time(fresh, &store).await.unwrap());
    }
}
