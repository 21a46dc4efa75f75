//! One token request across replicas: with the Redis store and sessions
//! sealed at rest, an obtained token is shared under a hash of its cache
//! key, so a replica missing it reads it rather than asking the
//! authorization server again. Of the replicas missing
//! the same token at once, the one that takes the store's short lock
//! (`SET NX PX`) asks; the others read its token as soon as it is written
//! (checking every [`POLL`]), and ask themselves only if it never comes.
//! A replica that cannot reach the store falls back to its own
//! single-flight. The writer's renewal point travels with the token (a
//! replica never takes up one the writer would no longer hand out), and a
//! replica whose token an upstream just refused asks anew rather than
//! read a shared copy of the refused one. Signed JWTs are minted where they are needed (no
//! request to save). Without encryption keys nothing is shared: a token
//! is never written to Redis in clear.

#[cfg(feature = "redis")]
use std::time::{Duration, Instant};

#[cfg(feature = "redis")]
use serde_json::json;
#[cfg(feature = "redis")]
use sha2::Digest as _;

#[cfg(feature = "redis")]
use super::LOCK_SLACK;
use super::plan::Plan;
use super::{CredentialError, CredentialsRuntime, Token};
use crate::config::credentials::Credential;
#[cfg(feature = "redis")]
use crate::config::credentials::CredentialKind;

/// How often a replica waiting for another's token looks for it.
#[cfg(feature = "redis")]
const POLL: Duration = Duration::from_millis(20);

/// The longest a token request may take before the waiting replicas stop
/// waiting for it (the token endpoints' own deadline is shorter).
#[cfg(feature = "redis")]
const LONGEST_REQUEST: Duration = Duration::from_secs(10);

impl CredentialsRuntime {
    /// The shared token's name for cache key `key`: a hash (the key holds
    /// rendered subject tokens), `None` when tokens are not shared or
    /// `cred` makes no token request.
    pub(super) fn share_name(&self, cred: &Credential, key: &[u8]) -> Option<String> {
        #[cfg(feature = "redis")]
        {
            self.store.as_ref()?.token_sharing()?;
            if matches!(cred.kind, CredentialKind::Jwt(_)) {
                return None;
            }
            let mut h = sha2::Sha256::new();
            h.update(cred.fingerprint.to_be_bytes());
            h.update(key);
            Some(crate::hex::encode(&h.finalize()))
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = (cred, key);
            None
        }
    }

    /// Stops sharing `token` (the upstream refused it, or its session
    /// ended and it was revoked), in the background.
    pub(super) fn unshare(&self, token: &Token) {
        #[cfg(feature = "redis")]
        if let (Some(name), Some(store)) = (&token.shared, &self.store) {
            let (name, store) = (name.clone(), store.clone());
            tokio::spawn(async move {
                if let Some(redis) = store.token_sharing() {
                    let _ = redis.drop_shared_token(&name).await;
                }
            });
        }
        let _ = token;
    }

    /// [`CredentialsRuntime::fetch`], once across the replicas sharing
    /// token `shared` (see the module doc).
    pub(super) async fn fetch_once(
        &self,
        cred: &Credential,
        sid: &str,
        plan: Plan,
        shared: Option<&str>,
    ) -> Result<Token, CredentialError> {
        #[cfg(feature = "redis")]
        if let (Some(name), Some(store)) = (shared, self.store.as_ref())
            && let Some(redis) = store.token_sharing()
        {
            return self
                .fetch_shared(cred, sid, plan, name, (store, redis))
                .await;
        }
        let _ = shared;
        self.fetch(cred, sid, plan).await
    }

    #[cfg(feature = "redis")]
    async fn fetch_shared(
        &self,
        cred: &Credential,
        sid: &str,
        plan: Plan,
        name: &str,
        (store, redis): (&crate::session::Store, &crate::session::RedisStore),
    ) -> Result<Token, CredentialError> {
        if let Some(t) = read(cred, redis, name).await {
            return Ok(t);
        }
        let lock = format!("token:{name}");
        let hold = LONGEST_REQUEST + LOCK_SLACK;
        match store.try_lock(&lock, hold).await {
            Ok(Some(held)) => {
                // Written between the read and the lock: no request.
                let got = match read(cred, redis, name).await {
                    Some(t) => Ok(t),
                    None => self.fetch(cred, sid, plan).await.map(|mut t| {
                        t.shared = Some(name.into());
                        t
                    }),
                };
                if let Ok(t) = &got {
                    write(cred, redis, name, t).await;
                }
                store.unlock(&lock, &held).await;
                got
            }
            Ok(None) => {
                let deadline = Instant::now() + hold;
                while Instant::now() < deadline {
                    tokio::time::sleep(POLL).await;
                    if let Some(t) = read(cred, redis, name).await {
                        return Ok(t);
                    }
                }
                self.fetch(cred, sid, plan).await
            }
            Err(_) => self.fetch(cred, sid, plan).await,
        }
    }
}

/// The shared token `name`, if one is there and not yet due for renewal
/// (the writer's renewal point travels with it, so a replica never takes
/// up a token the writer would no longer hand out).
#[cfg(feature = "redis")]
async fn read(cred: &Credential, redis: &crate::session::RedisStore, name: &str) -> Option<Token> {
    let (plain, left_ms) = redis.shared_token(name).await.ok()??;
    let v: serde_json::Value = serde_json::from_slice(&plain).ok()?;
    let (access, kind) = (v.get("a")?.as_str()?, v.get("t")?.as_str()?);
    let due_in = v.get("due")?.as_u64()?.checked_sub(unix_ms())?;
    let mut t = Token::new(
        cred,
        access.into(),
        kind.into(),
        Duration::from_millis(left_ms),
    );
    t.refresh_at = t
        .refresh_at
        .min(Instant::now() + Duration::from_millis(due_in));
    t.shared = Some(name.into());
    Some(t)
}

/// Shares `t` as `name` for the time it has left, with its renewal point
/// (a failure is logged: the token still serves this replica).
#[cfg(feature = "redis")]
async fn write(cred: &Credential, redis: &crate::session::RedisStore, name: &str, t: &Token) {
    let Some(access) = t.access_token(&cred.name) else {
        return;
    };
    let kind = t.scoped[&cred.name]["token_type"]
        .as_str()
        .unwrap_or("Bearer");
    let now = Instant::now();
    let due = unix_ms() + t.refresh_at.saturating_duration_since(now).as_millis() as u64;
    let plain = json!({"a": access, "t": kind, "due": due})
        .to_string()
        .into_bytes();
    let left = t.expires_at.saturating_duration_since(now);
    if let Err(e) = redis.share_token(name, plain, left).await {
        tracing::warn!(credential = %cred.name, code = e.code(), "a token was not shared with the other replicas: {e}");
    }
}

/// Milliseconds since the Unix epoch: the renewal point shared between
/// replicas is wall-clock time (replicas' monotonic clocks do not agree).
#[cfg(feature = "redis")]
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
