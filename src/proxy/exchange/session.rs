//! The session phase: which call is this, and what do we know of it? The
//! key from the route's sources, then the session from the signed body, the
//! store, a short wait for its webhook, or the resolver.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use super::Exchange;
use super::error::ProxyError;
use crate::config::{KeySource, OnUnknown, Route};
use crate::net::head::{Head, visible};
use crate::session::resolver::ResolveError;
use crate::session::scope::{form_decode, query_pairs};
use crate::session::{Session, Source, id_hash};
use crate::template::Vars;

/// Key headers whose values one pass over the head finds; a route that
/// lists more looks the rest up one by one.
const KEY_HEADERS: usize = 8;

/// A request's session key. Call ids are short (a UUID is 36 bytes, the
/// platforms' own ids shorter): up to [`SessionKey::INLINE`] bytes it is held in
/// place, so finding it allocates nothing (an `Arc<str>` per request is a
/// `malloc`, a `free` and a copy). A longer one is shared. The exchange, its records and its retry each
/// hold a copy.
#[derive(Clone)]
pub struct SessionKey(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Inline(arrayvec::ArrayString<{ SessionKey::INLINE }>),
    Shared(Arc<str>),
}

impl SessionKey {
    /// The longest key held in place.
    pub const INLINE: usize = 64;
}

impl From<&str> for SessionKey {
    fn from(k: &str) -> Self {
        SessionKey(match arrayvec::ArrayString::from(k) {
            Ok(inline) => KeyRepr::Inline(inline),
            Err(_) => KeyRepr::Shared(Arc::from(k)),
        })
    }
}

impl std::ops::Deref for SessionKey {
    type Target = str;
    fn deref(&self) -> &str {
        match &self.0 {
            KeyRepr::Inline(k) => k,
            KeyRepr::Shared(k) => k,
        }
    }
}

/// Equal when the keys' text is, however each is held.
impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for SessionKey {}

/// Its length only: logs and records show a key hashed, never as sent.
impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("len", &self.len())
            .finish()
    }
}

/// Finds the request's session key: the first of the route's sources that
/// is present, checked against its pattern before anything else sees it.
pub fn session_key(
    route: &Route,
    head: &dyn Head,
    rest: &str,
    body: Option<&Value>,
) -> Result<SessionKey, ProxyError> {
    // Two values of one key header: the first would pick the credentials
    // and the upstream would see both. Refuse before choosing. The same
    // pass finds the key headers' values (the `n`-th header source is
    // `compiled.key_headers[n]`).
    let mut firsts = [None; KEY_HEADERS];
    (head.firsts(&route.compiled.key_headers, &mut firsts))
        .map_err(|h| ProxyError::KeyAmbiguous(h.to_string()))?;
    let mut headers = 0;
    for src in &route.session_keys {
        let found: Option<Cow<'_, str>> = match src {
            KeySource::Header(h) => {
                headers += 1;
                match firsts.get(headers - 1) {
                    Some(v) => v.and_then(visible),
                    None => head.header_str(h),
                }
                .map(|s| Cow::Borrowed(s.trim()))
            }
            KeySource::Query(q) => query_pairs(head.query())
                .find(|(k, _)| form_decode(k) == *q)
                .map(|(_, v)| Cow::Owned(form_decode(v))),
            KeySource::Path(n) => rest
                .split('/')
                .filter(|s| !s.is_empty())
                .nth(*n)
                .map(|s| Cow::Owned(form_decode(s))),
            KeySource::Body(ptr) => body.and_then(|b| b.pointer(ptr)).and_then(|v| match v {
                Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                Value::Number(n) => Some(Cow::Owned(n.to_string())),
                _ => None,
            }),
        };
        if let Some(k) = found.filter(|k| !k.is_empty()) {
            let dots = crate::session::is_dot_segment(&k);
            return if route.session_key_pattern.is_match(&k) && !dots {
                Ok(SessionKey::from(&*k))
            } else {
                Err(ProxyError::KeyInvalid)
            };
        }
    }
    let names: Vec<String> = route.session_keys.iter().map(ToString::to_string).collect();
    Err(ProxyError::KeyMissing(names.join(", ")))
}

impl Exchange<'_> {
    /// The session for `key`: `None` when the route passes unknown
    /// sessions through without injecting.
    pub(super) async fn find_session(
        &self,
        key: &str,
        body: Option<&Value>,
    ) -> Result<Option<Arc<Session>>, ProxyError> {
        if let Some(ptr) = &self.route.vars_from_body {
            return from_signed_body(ptr, body).map(Some);
        }
        let app = self.app;
        let store_err = |_| ProxyError::StoreUnavailable;
        if let Some(s) = app.store.get_at(key, self.began).await.map_err(store_err)? {
            app.metrics.session_lookup("hit");
            if let Some(r) = &self.cfg.resolver {
                let (env, max) = (self.cfg.env.clone(), self.cfg.server.max_session_bytes);
                let store = app.store.clone();
                app.resolver
                    .maybe_refresh(r.clone(), env, key, &s, store, max);
            }
            return Ok(Some(s));
        }
        // What follows runs only on a miss: its larger futures are boxed,
        // so a request that hits carries none of their state.
        let wait = self.route.wait_for_session;
        if !wait.is_zero()
            && let Some(s) = Box::pin(app.store.wait_for(key, wait))
                .await
                .map_err(store_err)?
        {
            app.metrics.session_lookup("waited");
            return Ok(Some(s));
        }
        app.metrics.session_lookup("miss");
        match self.route.on_unknown_session {
            OnUnknown::Reject => Err(ProxyError::SessionNotFound),
            OnUnknown::Pass => Ok(None),
            OnUnknown::Resolve => Box::pin(self.resolve(key)).await.map(Some),
        }
    }

    /// Fetches an unknown session through `[resolver]`.
    async fn resolve(&self, key: &str) -> Result<Arc<Session>, ProxyError> {
        let (app, cfg) = (self.app, self.cfg);
        let Some(r) = &cfg.resolver else {
            return Err(ProxyError::ResolverUnavailable);
        };
        let max = cfg.server.max_session_bytes;
        match app
            .resolver
            .resolve(r, &cfg.env, key, &app.store, max)
            .await
        {
            Ok(s) => {
                app.metrics.session_lookup("fetch");
                Ok(s)
            }
            Err(ResolveError::NotFound) => {
                app.metrics.session_lookup("fetch_not_found");
                Err(ProxyError::SessionNotFound)
            }
            Err(e) => {
                app.metrics.session_lookup("fetch_error");
                let route = &self.route.name;
                tracing::warn!(route = %route, session = id_hash(key), "resolver: {e}");
                Err(ProxyError::ResolverUnavailable)
            }
        }
    }
}

/// `vars_from_body`: the signed body (checked by the inbound phase) carries
/// the call object itself, bound as `call`; nothing is stored.
fn from_signed_body(ptr: &str, body: Option<&Value>) -> Result<Arc<Session>, ProxyError> {
    let Some(obj) = body.and_then(|b| b.pointer(ptr)).filter(|v| v.is_object()) else {
        return Err(ProxyError::BadBody(
            "the signed body has no object at vars_from_body",
        ));
    };
    let mut m = serde_json::Map::new();
    m.insert("call".into(), obj.clone());
    let vars = Vars::from_map(m);
    Ok(Arc::new(Session::new(
        vars,
        Source::Webhook,
        std::time::Duration::ZERO,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_back_as_found_held_in_place_or_shared() {
        let uuid = "0b6f7d4e-9c1a-4d2b-8e3f-5a6b7c8d9e0f";
        let long = "k".repeat(SessionKey::INLINE + 1);
        let edge = "e".repeat(SessionKey::INLINE);
        for (k, inline) in [
            ("call-1", true),
            (uuid, true),
            (&edge, true),
            (&long, false),
        ] {
            let key = SessionKey::from(k);
            assert_eq!(&*key, k);
            assert_eq!(&*key.clone(), k);
            assert_eq!(key, SessionKey::from(k));
            assert_eq!(matches!(key.0, KeyRepr::Inline(_)), inline, "{}", k.len());
        }
    }

    #[test]
    fn a_key_debugs_as_its_length_only() {
        let key = SessionKey::from("call-secret-7");
        assert_eq!(format!("{key:?}"), "SessionKey { len: 13 }");
    }
}
