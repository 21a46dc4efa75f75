//! The inject phase: the credentials the route's templates use obtained
//! (cached, or from their authorization server), the route's header
//! templates rendered for this call, and set on the upstream request.
//! This is the one place headers are injected; `headgate render --route`
//! renders through [`render_rules`] too.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::{HeaderName, HeaderValue};
use serde_json::Value;

use super::Exchange;
use super::error::ProxyError;
use crate::config::{HeaderRule, OnError, Route};
use crate::credentials::{ForSession, Lookup};
use crate::mcp::McpView;
use crate::metrics::{Code, TIMED_RENDERS};
use crate::net::head::Head;
use crate::session::scope::CallScope;
use crate::session::{Renders, Session};
use crate::template::{TemplateError, Vars};

/// Header values rendered for one request, in the route's order.
pub type Rendered = Vec<(HeaderName, HeaderValue)>;

/// The request as templates see it (`request.*`).
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The request head.
    pub head: &'a dyn Head,
    /// The path after the route's name.
    pub rest: &'a str,
    /// `request.mcp` (`method`, `tool`, `uri`), on routes that read it;
    /// turned into JSON only if a template reads `request`.
    pub mcp: Option<&'a McpView>,
    /// `credentials.NAME.*`: the tokens obtained for this request.
    pub credentials: Option<&'a Value>,
}

/// Renders each of the route's header rules to a validated value for one
/// request. A failing rule is reported to `failed`, then omitted or
/// refused by its `on_error`.
pub fn render_rules(
    route: &Route,
    env: &Value,
    req: RequestView<'_>,
    key: &str,
    vars: &Vars,
    failed: impl FnMut(&HeaderRule, &TemplateError),
) -> Result<Rendered, ProxyError> {
    let mut out = Vec::with_capacity(route.headers.len());
    each_rule(route, (env, req, key, vars), failed, |rule, scope| {
        out.push((rule.name.clone(), rule.template.render(scope)?));
        Ok(())
    })?;
    Ok(out)
}

/// [`render_rules`], each value written straight into `out` as a header
/// line (`name: value` and CRLF) of a request head being written: no
/// value is allocated on its own (the forwarding core's upstream head). With the
/// session's `renders`, a rule that renders the same for all its requests
/// ([`HeaderRule::per_session`]) is rendered once and copied after.
pub fn put_rules(
    route: &Route,
    (env, req, key, vars): (&Value, RequestView<'_>, &str, &Vars),
    renders: Option<&Renders>,
    failed: impl FnMut(&HeaderRule, &TemplateError),
    out: &mut Vec<u8>,
) -> Result<(), ProxyError> {
    each_rule(route, (env, req, key, vars), failed, |rule, scope| {
        let mark = out.len();
        out.extend_from_slice(rule.name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        let kept = renders.filter(|_| rule.per_session);
        let id = rule.template.id();
        if kept.is_some_and(|k| k.put(id, out)) {
            out.extend_from_slice(b"\r\n");
            return Ok(());
        }
        let value = out.len();
        let r = rule.template.render_into(scope, out);
        match r {
            Ok(()) => {
                if let Some(k) = kept {
                    k.keep(id, &out[value..], vars);
                }
                out.extend_from_slice(b"\r\n");
            }
            Err(_) => out.truncate(mark),
        }
        r
    })
}

/// Renders each rule through `emit` in one scope; a failing rule is
/// reported to `failed`, then omitted or refused by its `on_error`.
fn each_rule(
    route: &Route,
    (env, req, key, vars): (&Value, RequestView<'_>, &str, &Vars),
    mut failed: impl FnMut(&HeaderRule, &TemplateError),
    mut emit: impl FnMut(&HeaderRule, &CallScope<'_>) -> Result<(), TemplateError>,
) -> Result<(), ProxyError> {
    let scope = CallScope::new(key, env)
        .with_vars(vars)
        .with_request(req.head, req.rest, req.mcp)
        .with_credentials(req.credentials);
    for rule in &route.headers {
        match emit(rule, &scope) {
            Ok(()) => {}
            Err(e) => {
                failed(rule, &e);
                if rule.on_error == OnError::Reject {
                    return Err(ProxyError::RenderFailed {
                        header: rule.name.to_string(),
                        detail: format!("{}: {}", e.code(), e.message()),
                    });
                }
            }
        }
    }
    Ok(())
}

impl Exchange<'_> {
    /// The tokens of every credential the route uses.
    pub(super) async fn obtain_credentials(
        &mut self,
        key: &str,
        vars: &Vars,
    ) -> Result<(), ProxyError> {
        let started = self.timings.map(|_| SystemTime::now());
        for cred in &self.route.credentials {
            let found = {
                let scope = CallScope::new(key, &self.cfg.env).with_vars(vars);
                let session = ForSession {
                    id: key,
                    scope: &scope,
                };
                self.app.credentials.lookup(cred, session)?
            };
            let token = match found {
                Lookup::Hit(t) => t,
                // Boxed: fetching is the rare path (a cached token is a
                // hit), and its state would otherwise be every request's.
                Lookup::Miss(p) => Box::pin(self.app.credentials.obtain(cred, key, p)).await?,
            };
            self.tokens.push((cred.clone(), token));
        }
        if let (Some(t), Some(s)) = (self.timings.as_mut(), started) {
            t.credentials = Some((s, SystemTime::now()));
        }
        Ok(())
    }

    /// Drops the tokens this request carried (the upstream refused them).
    /// Drops the tokens the request carried (an upstream 401); whether a
    /// retry may carry other ones.
    pub(crate) fn forget_tokens(&self) -> bool {
        let mut dropped = false;
        for (cred, token) in &self.tokens {
            dropped |= self.app.credentials.forget(cred, token);
        }
        dropped
    }

    /// The `credentials` root: one token's own object when the route uses
    /// one credential (no copy), else the tokens merged.
    fn credentials_root(&self) -> Option<Cow<'_, Value>> {
        match self.tokens.as_slice() {
            [] => None,
            [(_, t)] => Some(Cow::Borrowed(t.scoped())),
            many => {
                let mut all = serde_json::Map::new();
                for (_, t) in many {
                    if let Value::Object(m) = t.scoped() {
                        all.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                Some(Cow::Owned(Value::Object(all)))
            }
        }
    }

    /// [`render_rules`] with its metrics and logs.
    pub(super) fn render_headers(
        &self,
        head: &dyn Head,
        rest: &str,
        key: &str,
        vars: &Vars,
    ) -> Result<Rendered, ProxyError> {
        let env = &self.cfg.env;
        self.rendering(head, rest, |req, failed| {
            render_rules(self.route, env, req, key, vars, failed)
        })
    }

    /// [`put_rules`] with its metrics and logs: the session's rendered
    /// header lines into the upstream head `out` (none without a session).
    pub(crate) fn put_rendered(
        &self,
        out: &mut Vec<u8>,
        (head, rest): (&dyn Head, &str),
        key: &str,
        session: Option<&Arc<Session>>,
    ) -> Result<(), ProxyError> {
        let Some(s) = session else { return Ok(()) };
        let env = &self.cfg.env;
        // A session only this request holds (built from a signed body)
        // serves no other: what it kept would be dropped unused.
        let renders = (Arc::strong_count(s) > 1).then_some(&s.renders);
        self.rendering(head, rest, |req, failed| {
            put_rules(self.route, (env, req, key, &s.vars), renders, failed, out)
        })
    }

    /// Runs `render` over this request's view, timed for the render
    /// latency metric, its failures counted and logged.
    fn rendering<T>(
        &self,
        head: &dyn Head,
        rest: &str,
        render: impl FnOnce(RequestView<'_>, &mut dyn FnMut(&HeaderRule, &TemplateError)) -> T,
    ) -> T {
        let (route, metrics) = (self.route, &self.app.metrics);
        let started = timed().then(Instant::now);
        let credentials = self.credentials_root();
        let req = RequestView {
            head,
            rest,
            mcp: self.mcp.as_ref(),
            credentials: credentials.as_deref(),
        };
        let out = render(req, &mut |rule, e| {
            let code = e.code().to_string();
            metrics.render_failures.get_or_create(&Code { code }).inc();
            tracing::warn!(route = %route.name, header = %rule.name, code = e.code(), "{}", e.message());
        });
        if let Some(t) = started {
            metrics.render_latency.observe(t.elapsed().as_secs_f64());
        }
        out
    }
}

/// Whether to time this render: the first of every [`TIMED_RENDERS`] in
/// this thread. Its two clock reads and the histogram cost a good share
/// of what a session token's render itself costs; a sample shows the
/// distribution as well.
fn timed() -> bool {
    thread_local! {
        static RENDERS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    RENDERS.with(|n| {
        let i = n.get();
        n.set(i.wrapping_add(1));
        i % TIMED_RENDERS == 0
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_render_in_sixteen_is_timed_per_thread() {
        // A fresh thread: its count starts at zero.
        let timed = std::thread::spawn(|| (0..64).filter(|_| super::timed()).count());
        let n = timed.join().expect("the counting thread ran");
        assert_eq!(n, 64 / super::TIMED_RENDERS as usize);
    }
}
