//! Credentials that live as long as the call (docs/credentials.md, the
//! section of that name):
//!
//! - `prefetch`: when a session is stored, each prefetching credential
//!   whose key the session can render is obtained in the background, so
//!   the call's first tool call finds its token cached. It goes through
//!   the same slot as a request's obtain: a prefetch and the requests
//!   racing it cause one token request.
//! - `revoke_on_end`: access tokens obtained for a session are held here,
//!   by session, and revoked (RFC 7009) when the session ends. An end is
//!   seen by following the store's changes (a delete here or, with Redis,
//!   on another replica) and by looking at the session again when its TTL
//!   should have run out. The caller's own refresh token is never revoked.
//!
//! Failures are logged and counted (`headgate_credential_requests_total`
//! with outcomes `revoked` / `revocation_failed`), never fatal, and never
//! name a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast::error::RecvError;

use super::{CredentialError, CredentialsRuntime, ForSession, Lookup, Token, at_path, revoke};
use crate::config::Config;
use crate::config::credentials::{Credential, CredentialKind};
use crate::metrics::CredentialOutcome;
use crate::session::scope::CallScope;
use crate::session::{Session, SessionStore, Store};

/// How often held sessions are looked at for an expiry.
const SWEEP: Duration = Duration::from_secs(1);

/// Tokens to revoke when their session ends, by session id.
#[derive(Default)]
pub(super) struct Held(Mutex<HashMap<Arc<str>, Holding>>);

struct Holding {
    /// When to look at the session again (its TTL's end, as last seen).
    look_at: Instant,
    tokens: Vec<(Arc<Credential>, Arc<Token>)>,
}

impl Held {
    /// Holds `token`, obtained for session `sid`, until the session ends.
    pub(super) fn hold(&self, sid: &str, cred: &Arc<Credential>, token: &Arc<Token>) {
        let Ok(mut held) = self.0.lock() else { return };
        let h = held.entry(Arc::from(sid)).or_insert_with(|| Holding {
            // Looked at on the next sweep, which learns the session's TTL.
            look_at: Instant::now(),
            tokens: Vec::new(),
        });
        // A renewed token replaces the one it renews (still revoked:
        // it may not have expired).
        h.tokens.push((cred.clone(), token.clone()));
    }

    fn holds(&self, sid: &str) -> bool {
        self.0.lock().is_ok_and(|h| h.contains_key(sid))
    }

    /// The sessions due for a look at `now`.
    fn due(&self, now: Instant) -> Vec<Arc<str>> {
        let Ok(held) = self.0.lock() else {
            return Vec::new();
        };
        (held.iter())
            .filter(|(_, h)| h.look_at <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn all(&self) -> Vec<Arc<str>> {
        self.0
            .lock()
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn look_again(&self, sid: &str, at: Instant) {
        if let Ok(mut held) = self.0.lock()
            && let Some(h) = held.get_mut(sid)
        {
            h.look_at = at;
        }
    }

    fn take(&self, sid: &str) -> Vec<(Arc<Credential>, Arc<Token>)> {
        let Ok(mut held) = self.0.lock() else {
            return Vec::new();
        };
        held.remove(sid).map(|h| h.tokens).unwrap_or_default()
    }
}

impl CredentialsRuntime {
    /// After session `id` was stored (admin API, webhook): its prefetching
    /// credentials obtained in the background. Costs nothing when no
    /// credential prefetches.
    pub fn prefetch_stored(self: &Arc<Self>, cfg: &Arc<Config>, store: &Arc<Store>, id: &str) {
        if !cfg.credentials.values().any(|c| c.prefetch) {
            return;
        }
        let (me, cfg, store, id) = (self.clone(), cfg.clone(), store.clone(), id.to_string());
        tokio::spawn(async move {
            if let Ok(Some(s)) = store.get(&id).await {
                me.prefetch(cfg.credentials.values(), &cfg.env, &id, &s);
            }
        });
    }

    /// Obtains, in the background, every credential in `creds` that says
    /// `prefetch` and whose key `session` (stored as `id`) can render.
    pub fn prefetch<'c>(
        self: &Arc<Self>,
        creds: impl IntoIterator<Item = &'c Arc<Credential>>,
        env: &serde_json::Value,
        id: &str,
        session: &Session,
    ) {
        for cred in creds.into_iter().filter(|c| c.prefetch) {
            if let CredentialKind::RefreshToken { from, .. } = &cred.kind
                && at_path(session, from).is_none()
            {
                continue;
            }
            let scope = CallScope::new(id, env).with_vars(&session.vars);
            self.prefetch_one(cred, ForSession { id, scope: &scope });
        }
    }

    /// At start: every `client_credentials` credential that says
    /// `prefetch` and whose templates need no session.
    pub fn prefetch_at_start(self: &Arc<Self>, cfg: &Config) {
        let shared = (cfg.credentials.values())
            .filter(|c| c.prefetch && matches!(c.kind, CredentialKind::ClientCredentials(_)));
        for cred in shared {
            let scope = CallScope::new("", &cfg.env);
            self.prefetch_one(
                cred,
                ForSession {
                    id: "",
                    scope: &scope,
                },
            );
        }
    }

    /// Obtains `cred` for `session` in the background, unless it is cached
    /// or the session lacks what its key needs.
    fn prefetch_one(
        self: &Arc<Self>,
        cred: &Arc<Credential>,
        session: ForSession<'_, CallScope<'_>>,
    ) {
        let id = session.id.to_string();
        let Ok(Lookup::Miss(prepared)) = self.lookup(cred, session) else {
            return;
        };
        let (me, cred) = (self.clone(), cred.clone());
        tokio::spawn(async move {
            let started = SystemTime::now();
            // A failure is counted and logged by `obtain`.
            let got = me.obtain(&cred, &id, prepared).await;
            if let Some(t) = &me.telemetry {
                let outcome = got.as_ref().map_or_else(CredentialError::outcome, |_| "ok");
                t.credential_fetch(&cred.name, outcome, (started, SystemTime::now()));
            }
        });
    }

    /// Follows `store` for as long as both live: a session that ends
    /// (deleted anywhere, or expired) has the tokens held for it revoked.
    pub fn follow_ends(self: &Arc<Self>, store: &Arc<Store>) {
        let (me, store) = (Arc::downgrade(self), Arc::downgrade(store));
        let Some(mut changes) = store.upgrade().map(|s| s.changes()) else {
            return;
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP);
            loop {
                let due = tokio::select! {
                    _ = tick.tick() => None,
                    change = changes.recv() => Some(change),
                };
                let (Some(me), Some(store)) = (me.upgrade(), store.upgrade()) else {
                    return;
                };
                let look = match due {
                    None => me.held.due(Instant::now()),
                    Some(Ok(id)) if me.held.holds(&id) => vec![id],
                    Some(Ok(_)) => continue,
                    // Missed changes: look at every held session.
                    Some(Err(RecvError::Lagged(_))) => me.held.all(),
                    Some(Err(RecvError::Closed)) => return,
                };
                for id in look {
                    me.look(&store, &id).await;
                }
            }
        });
    }

    /// Looks at session `id`: gone, its held tokens are revoked; there,
    /// it is looked at again when its TTL should run out.
    async fn look(self: &Arc<Self>, store: &Store, id: &str) {
        match store.get_fresh(id).await {
            Ok(None) => self.ended(id).await,
            Ok(Some(s)) => (self.held).look_again(id, Instant::now() + s.ttl_left()),
            // The store is down: try again on a later sweep.
            Err(_) => self.held.look_again(id, Instant::now() + SWEEP),
        }
    }

    /// Revokes and drops every token held for session `id`.
    pub async fn ended(&self, id: &str) {
        for (cred, token) in self.held.take(id) {
            token.drop_from_slot();
            self.unshare(&token);
            if token.expired() {
                continue;
            }
            let (CredentialKind::RefreshToken { client, .. }
            | CredentialKind::TokenExchange { client, .. }
            | CredentialKind::IdJag { client, .. }) = &cred.kind
            else {
                continue;
            };
            let Some(access) = token.access_token(&cred.name) else {
                continue;
            };
            let result =
                revoke::revoke(&self.http, &self.endpoints, &cred.name, client, access).await;
            let outcome = match &result {
                Ok(()) => "revoked",
                Err(e) => {
                    tracing::warn!(credential = %cred.name, code = "credentials.revocation_failed", "a token obtained for an ended call could not be revoked: {e}");
                    "revocation_failed"
                }
            };
            let label = CredentialOutcome {
                credential: cred.name.clone(),
                outcome,
            };
            self.metrics.credential_requests.get_or_create(&label).inc();
        }
    }
}
