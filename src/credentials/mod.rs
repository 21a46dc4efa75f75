//! Credentials headgate obtains itself (docs/credentials.md "Credentials"): OAuth 2.0
//! access tokens from an authorization server, and JWTs it signs.
//!
//! - A token is cached per credential and key (client credentials: the
//!   rendered scope, resource and audience; refresh token: the session;
//!   token exchange: the subject token; jwt: the session and its rendered
//!   claims) until `expires_in − refresh_before` (at most half the
//!   lifetime early).
//! - Each key has one slot; concurrent requests for an expired or missing
//!   token wait on the slot's flight lock, and the first one fetches:
//!   one token request however many ask.
//! - A refresh token is spent under a lock in the session store too (a
//!   Redis `SET NX` with the Redis store), read fresh from the store, and a
//!   rotated one written back by compare-and-set before the lock is let
//!   go: no replica ever sends a spent refresh token.
//! - If the server cannot be reached, a token that has not yet expired is
//!   still served (it was only due for renewal).

mod error;
mod jwt;
pub mod key;
mod life;
mod oauth;
mod plan;
mod revoke;
mod share;
mod slot;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

pub use error::CredentialError;
use plan::{Plan, cache_key, plan};
use slot::{Slot, failed};

use crate::config::credentials::{Credential, CredentialKind, OAuthClient};
use crate::metrics::{CredentialLabel, CredentialOutcome, Metrics};
use crate::net::client::HttpClient;
use crate::session::{Session, SessionError, Store, deep_merge};
use crate::shards::Sharded;
use crate::template::Scope;

/// Token slots a shard sweeps at (only slots with nothing usable go).
const MAX_SLOTS: usize = 100_000;

/// The longest a token is cached, whatever its `expires_in` says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How long a refresh waits for another replica's refresh of the same
/// session to finish, beyond the token request's own deadline.
const LOCK_SLACK: Duration = Duration::from_secs(2);

/// An upstream 401 drops a key's token at most once in this long: a token
/// refused again right after a renewal says the request, not the token,
/// is the problem, and dropping on every 401 let any caller spend a grant
/// (or a refresh token's rotation) per request.
pub const DROP_INTERVAL: Duration = Duration::from_secs(10);

/// An obtained token, as templates read it.
pub struct Token {
    /// `{"NAME": {"access_token": …, "token_type": …}}`: the `credentials`
    /// root of a route that uses this one credential, ready to render from.
    scoped: Value,
    /// The declaration it was obtained under.
    fingerprint: u64,
    refresh_at: Instant,
    expires_at: Instant,
    /// The slot it is cached in, to drop it from.
    slot: std::sync::Weak<Slot>,
    /// Its name among the tokens shared between replicas, if shared.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    shared: Option<String>,
}

impl Token {
    fn new(
        cred: &Credential,
        access_token: String,
        token_type: String,
        lifetime: Duration,
    ) -> Self {
        let now = Instant::now();
        // `expires_in` comes from the server: a huge one must not
        // overflow the clock (and no token is trusted for over a day).
        let lifetime = lifetime.min(MAX_LIFETIME);
        let early = cred.refresh_before.min(lifetime / 2);
        let mut scoped = Map::new();
        let body = json!({"access_token": access_token, "token_type": token_type});
        scoped.insert(cred.name.clone(), body);
        Self {
            scoped: Value::Object(scoped),
            fingerprint: cred.fingerprint,
            refresh_at: now + lifetime - early,
            expires_at: now + lifetime,
            slot: std::sync::Weak::new(),
            shared: None,
        }
    }

    /// `{"NAME": {"access_token", "token_type"}}`.
    pub fn scoped(&self) -> &Value {
        &self.scoped
    }

    /// The access token of credential `name`.
    fn access_token(&self, name: &str) -> Option<&str> {
        self.scoped.get(name)?.get("access_token")?.as_str()
    }

    /// Whether it has run out.
    fn expired(&self) -> bool {
        Instant::now() >= self.expires_at
    }

    /// Takes it out of its slot, if it is still the slot's token: no
    /// request is given it again.
    fn drop_from_slot(self: &Arc<Self>) {
        let Some(slot) = self.slot.upgrade() else {
            return;
        };
        if let Ok(mut g) = slot.token.lock()
            && g.as_ref().is_some_and(|t| Arc::ptr_eq(t, self))
        {
            *g = None;
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The credentials state of a running proxy; it outlives reloads, so a
/// token (and a refresh in flight) is shared by every config generation.
pub struct CredentialsRuntime {
    /// One slot per credential and key (sharded, swept as it grows).
    slots: Sharded<Slot>,
    http: HttpClient,
    store: Option<Arc<Store>>,
    metrics: Arc<Metrics>,
    /// Tokens to revoke when their session ends (`revoke_on_end`).
    held: life::Held,
    /// Revocation endpoints found in metadata.
    endpoints: revoke::Endpoints,
    /// Span export, for fetches outside a request (prefetch).
    telemetry: Option<Arc<crate::telemetry::Exporter>>,
}

/// The session a credential is obtained for.
pub struct ForSession<'a, S: Scope + ?Sized> {
    /// Its id.
    pub id: &'a str,
    /// Its variables (with `session.id` and `env`), for the templates.
    pub scope: &'a S,
}

impl CredentialsRuntime {
    /// `store` is where refresh tokens live and rotated ones are written;
    /// without one (the CLI), `refresh_token` credentials are refused.
    pub fn new(http: HttpClient, store: Option<Arc<Store>>, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Sharded::new(MAX_SLOTS),
            http,
            store,
            metrics,
            held: life::Held::default(),
            endpoints: revoke::Endpoints::default(),
            telemetry: None,
        }
    }

    /// Exports a span for each fetch made outside a request.
    pub fn with_telemetry(mut self, telemetry: Option<Arc<crate::telemetry::Exporter>>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The credential's token for this session if one is cached and not
    /// yet due (the hot path: one key rendered, one cache lookup); else
    /// what [`CredentialsRuntime::obtain`] needs to get one.
    pub fn lookup<S: Scope + ?Sized>(
        &self,
        cred: &Credential,
        session: ForSession<'_, S>,
    ) -> Result<Lookup, CredentialError> {
        let key = cache_key(cred, &session)?;
        if let Some(slot) = self.slots.get(&key)
            && let Some(t) = slot.fresh(cred)
        {
            slot.hits.inc();
            return Ok(Lookup::Hit(t));
        }
        let plan = plan(cred, &session)?;
        Ok(Lookup::Miss(Prepared { key, plan }))
    }

    /// Obtains the token a [`Lookup::Miss`] needs: once, however many
    /// requests ask at the same time (the others wait and share it).
    pub async fn obtain(
        &self,
        cred: &Arc<Credential>,
        sid: &str,
        prepared: Prepared,
    ) -> Result<Arc<Token>, CredentialError> {
        let Prepared { key, plan } = prepared;
        let shared = self.share_name(cred, &key);
        let slot = self.slot(cred, key);
        if let Some(t) = slot.fresh(cred) {
            slot.hits.inc();
            return Ok(t);
        }
        if let Some(e) = slot.recent_failure() {
            return failed(cred, &slot, e);
        }
        let _flight = slot.flight.lock().await;
        if let Some(t) = slot.fresh(cred) {
            slot.hits.inc();
            return Ok(t);
        }
        // The request this one waited on failed: its outcome is shared.
        if let Some(e) = slot.recent_failure() {
            return failed(cred, &slot, e);
        }
        let shared = shared.filter(|_| !slot.dropped_recently());
        let result = self.fetch_once(cred, sid, plan, shared.as_deref()).await;
        let outcome = result
            .as_ref()
            .map_or_else(CredentialError::outcome, |_| "ok");
        let label = CredentialOutcome {
            credential: cred.name.clone(),
            outcome,
        };
        self.metrics.credential_requests.get_or_create(&label).inc();
        match result {
            Ok(mut t) => {
                t.slot = Arc::downgrade(&slot);
                let t = Arc::new(t);
                slot.set(Some(t.clone()));
                slot.set_failure(None);
                if cred.revoke_on_end {
                    self.held.hold(sid, cred, &t);
                }
                Ok(t)
            }
            Err(e) => {
                tracing::warn!(credential = %cred.name, code = e.code(), "{e}");
                slot.set_failure(Some(e.clone()));
                failed(cred, &slot, e)
            }
        }
    }

    /// Drops `token` (the upstream refused it), unless a newer one
    /// already replaced it or its key dropped one less than
    /// [`DROP_INTERVAL`] ago. Whether a retry may get another token.
    pub fn forget(&self, cred: &Credential, token: &Arc<Token>) -> bool {
        let Some(slot) = token.slot.upgrade() else {
            return false;
        };
        let Ok(mut g) = slot.token.lock() else {
            return false;
        };
        if !g.as_ref().is_some_and(|t| Arc::ptr_eq(t, token)) {
            // Replaced already: a retry gets the newer one.
            return true;
        }
        let Ok(mut dropped) = slot.dropped.lock() else {
            return false;
        };
        if dropped.is_some_and(|at| at.elapsed() < DROP_INTERVAL) {
            return false;
        }
        *g = None;
        *dropped = Some(Instant::now());
        self.unshare(token);
        tracing::debug!(credential = %cred.name, "the upstream refused a token; dropped");
        true
    }

    fn slot(&self, cred: &Credential, key: Vec<u8>) -> Arc<Slot> {
        self.slots.get_or_insert(key, || {
            let label = CredentialLabel {
                credential: cred.name.clone(),
            };
            Slot {
                token: Mutex::new(None),
                flight: tokio::sync::Mutex::new(()),
                hits: self
                    .metrics
                    .credential_cache_hits
                    .get_or_create(&label)
                    .clone(),
                failed: Mutex::new(None),
                dropped: Mutex::new(None),
            }
        })
    }

    async fn fetch(
        &self,
        cred: &Credential,
        sid: &str,
        plan: Plan,
    ) -> Result<Token, CredentialError> {
        let name = &cred.name;
        match (&cred.kind, plan) {
            (CredentialKind::Jwt(issuer), Plan::Mint(claims)) => {
                let jwt = jwt::mint(name, issuer, &claims)?;
                Ok(Token::new(cred, jwt, "Bearer".into(), issuer.ttl))
            }
            (CredentialKind::RefreshToken { client, from }, Plan::Refresh(extra)) => {
                self.refresh(cred, client, from, sid, extra).await
            }
            (CredentialKind::ClientCredentials(client), Plan::Form(form)) => {
                let g = oauth::request(&self.http, name, client, form).await?;
                Ok(Token::new(cred, g.access_token, g.token_type, g.lifetime))
            }
            (
                CredentialKind::TokenExchange {
                    client,
                    requested_token_type,
                    ..
                },
                Plan::Form(form),
            ) => {
                let g = oauth::request(&self.http, name, client, form).await?;
                let want = requested_token_type.as_deref();
                match g.issued_token_type.as_deref() {
                    Some(t) if want.is_none_or(|w| w == t) => {}
                    _ => {
                        // The server's value is not quoted: errors never
                        // echo what the server sent.
                        let msg = "the token exchange answer's issued_token_type is missing or not the one requested";
                        return Err(CredentialError::unavailable(name, msg));
                    }
                }
                Ok(Token::new(cred, g.access_token, g.token_type, g.lifetime))
            }
            (CredentialKind::IdJag { idp, client, .. }, Plan::IdJag { exchange, bearer }) => {
                let g = oauth::id_jag(&self.http, name, (idp, client), exchange, bearer).await?;
                Ok(Token::new(cred, g.access_token, g.token_type, g.lifetime))
            }
            _ => Err(CredentialError::unavailable(name, "inconsistent plan")),
        }
    }

    /// Spends the session's refresh token under the store's lock, and
    /// writes a rotated one back before letting go.
    async fn refresh(
        &self,
        cred: &Credential,
        client: &OAuthClient,
        from: &[String],
        sid: &str,
        extra: Vec<(&'static str, String)>,
    ) -> Result<Token, CredentialError> {
        let name = &cred.name;
        let Some(store) = &self.store else {
            return Err(CredentialError::unavailable(
                name,
                "refresh tokens are only spent by `serve` (spending one elsewhere would revoke the live session's grant)",
            ));
        };
        let lock = format!("credential:{name}:{sid}");
        let token = self
            .lock(store, &lock, client.timeout + LOCK_SLACK, name)
            .await?;
        let result = self
            .refresh_locked(cred, client, from, sid, extra, store)
            .await;
        store.unlock(&lock, &token).await;
        result
    }

    async fn lock(
        &self,
        store: &Store,
        lock: &str,
        hold: Duration,
        name: &str,
    ) -> Result<String, CredentialError> {
        let deadline = Instant::now() + hold;
        loop {
            match store.try_lock(lock, hold).await {
                Ok(Some(t)) => return Ok(t),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(None) => {
                    return Err(CredentialError::unavailable(
                        name,
                        "another replica's refresh of this session did not finish",
                    ));
                }
                Err(e) => return Err(store_down(name, &e)),
            }
        }
    }

    async fn refresh_locked(
        &self,
        cred: &Credential,
        client: &OAuthClient,
        from: &[String],
        sid: &str,
        mut form: Vec<(&'static str, String)>,
        store: &Store,
    ) -> Result<Token, CredentialError> {
        let name = &cred.name;
        let session = store
            .get_fresh(sid)
            .await
            .map_err(|e| store_down(name, &e))?;
        let spent = session
            .as_deref()
            .and_then(|s| at_path(s, from))
            .ok_or_else(|| {
                CredentialError::rejected(
                    name,
                    format!("the session has no refresh token at `{}`", from.join(".")),
                )
            })?;
        form.insert(0, ("grant_type", "refresh_token".into()));
        form.insert(1, ("refresh_token", spent.clone()));
        let g = oauth::request(&self.http, name, client, form).await?;
        if let Some(new) = g.refresh_token.as_ref().filter(|n| **n != spent) {
            write_back(store, sid, from, &spent, new, name).await;
        }
        Ok(Token::new(cred, g.access_token, g.token_type, g.lifetime))
    }
}

/// The refresh token at `path` in the session's variables.
fn at_path(s: &Session, path: &[String]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let mut v = s.vars.as_map().get(first)?;
    for k in rest {
        v = v.get(k)?;
    }
    v.as_str().filter(|t| !t.is_empty()).map(str::to_string)
}

/// Writes the rotated refresh token where the spent one was, if the
/// session still holds the spent one (an admin may have linked anew).
/// A failure is logged: the grant must be linked again once the access
/// token expires.
async fn write_back(store: &Store, sid: &str, path: &[String], spent: &str, new: &str, name: &str) {
    let mut patch = Value::String(new.to_string());
    for k in path.iter().rev() {
        let mut m = Map::new();
        m.insert(k.clone(), patch);
        patch = Value::Object(m);
    }
    let Value::Object(patch) = patch else { return };
    let written = store
        .update(sid, |old| {
            if at_path(old, path).as_deref() != Some(spent) {
                return Ok(None);
            }
            let mut map = old.vars.as_map().clone();
            deep_merge(&mut map, patch.clone());
            Ok(Some(Session {
                vars: crate::template::Vars::from_map(map),
                ..old.clone()
            }))
        })
        .await;
    if let Err(e) = written {
        tracing::error!(credential = %name, code = "credentials.write_back_failed", "a rotated refresh token could not be stored ({}); the caller will have to link their account again", e.code());
    }
}

fn store_down(name: &str, e: &SessionError) -> CredentialError {
    CredentialError::unavailable(name, format!("session store: {}", e.code()))
}

/// A credential's token for one request: cached, or what to obtain.
pub enum Lookup {
    /// Cached and not yet due.
    Hit(Arc<Token>),
    /// To obtain with [`CredentialsRuntime::obtain`].
    Miss(Prepared),
}

/// What a request needs of one credential, rendered from its session.
pub struct Prepared {
    key: Vec<u8>,
    plan: Plan,
}

#[cfg(test)]
mod tests;
