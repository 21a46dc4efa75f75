//! One request through a route, phase by phase (as pingora names its
//! phases): [`inbound`] (path, limits, body, caller) → [`session`] (key,
//! then session) with, on MCP routes, [`mcp`] (the call and the tool
//! policy) between the two → [`inject`] (render the route's headers) →
//! [`outbound`] (the upstream request, trace context) → [`send`]
//! (timeouts, relay; a `tools/list` filtered on the way back); [`error`]
//! maps any failure to the response the caller gets. [`Exchange::run`]
//! is their one sequencer; the forwarding core and hyper are
//! [`transport`]s under it, which read the request and carry the
//! upstream exchange but never choose the next phase.

pub mod error;
mod inbound;
mod inject;
mod mcp;
mod outbound;
mod send;
mod session;
mod transport;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::Value;

pub use error::{ProxyError, Side};
pub use inbound::screen;
pub(crate) use inbound::{InBody, RPC_PEEK};
pub use inject::{Rendered, RequestView, put_rules, render_rules};
pub(crate) use outbound::put_path_and_query;
pub use outbound::{Lines, MapLines, Peer, RawLines, put_headers};
pub(crate) use send::warn_failed;
pub use session::{SessionKey, session_key};
pub(crate) use transport::{HyperTransport, Sent, Transport};

use super::App;
use crate::config::{Config, Credential, ErrorStyle, Route};
use crate::credentials::Token;
use crate::mcp::McpView;
use crate::net::head::Head;
use crate::net::response::Body;
use crate::net::tracecontext::{self, Trace};
use crate::session::Session;

/// One request's exchange with its route's upstream.
pub(crate) struct Exchange<'a> {
    app: &'a App,
    cfg: &'a Config,
    route: &'a Route,
    peer: &'a Peer,
    /// When the request began: its session is judged live as of then.
    began: Instant,
    /// The session key, once found (for the access log).
    session_key: Option<SessionKey>,
    /// The session, once found (its timeline entry is found through it).
    session: Option<Arc<Session>>,
    /// The JSON-RPC id, once known (for errors on JSON-RPC routes).
    rpc_id: Option<Value>,
    /// What was read of the body, to find the id in only if an error
    /// needs it.
    rpc_body: Option<Bytes>,
    /// The MCP view, on routes that need it.
    mcp: Option<McpView>,
    /// The upstream session id of a legacy HTTP+SSE POST on a route that
    /// limits tools (see [`Self::answer_on_stream`]).
    legacy_stream: Option<String>,
    /// Time to the upstream's response head, once it answered.
    upstream_ms: Option<f64>,
    /// The trace the upstream request carried (`[tracing]`).
    trace: Option<Trace>,
    /// The credentials' tokens the request carries, to drop on a 401.
    tokens: Vec<(Arc<Credential>, Arc<Token>)>,
    /// When the session lookup and the upstream exchange ran, recorded
    /// only while spans are exported.
    pub(crate) timings: Option<Timings>,
    /// The MCP transport headers, read only while spans are exported.
    pub(crate) mcp_headers: Option<Box<crate::mcp::TraceHeaders>>,
    /// The caller's trace, read only while spans are exported, for a
    /// request refused before it has [`Self::trace`].
    seen_trace: Option<Trace>,
    /// A code the request passed with and is reported by (a changed tool
    /// called under `pin_tools = "warn"`): its audit line carries it.
    pub(crate) warning: Option<&'static str>,
}

/// When the phases a span covers ran.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timings {
    /// The session lookup.
    pub lookup: Option<(SystemTime, SystemTime)>,
    /// Obtaining the route's credentials (cached or fetched).
    pub credentials: Option<(SystemTime, SystemTime)>,
    /// The upstream exchange (to the response head).
    pub upstream: Option<(SystemTime, SystemTime)>,
}

/// The call a request belongs to, as the phases before forwarding found
/// it: its key and its session (none when an unknown one passes).
pub(crate) type Found = (SessionKey, Option<Arc<Session>>);

impl<'a> Exchange<'a> {
    /// A new exchange on `route` under the config the request started
    /// with, for a request that began at `began`.
    pub fn new(
        app: &'a App,
        cfg: &'a Config,
        route: &'a Route,
        peer: &'a Peer,
        began: Instant,
    ) -> Self {
        Self {
            app,
            cfg,
            route,
            peer,
            began,
            session_key: None,
            session: None,
            rpc_id: None,
            rpc_body: None,
            mcp: None,
            legacy_stream: None,
            upstream_ms: None,
            trace: None,
            tokens: Vec::new(),
            timings: app.telemetry.is_some().then(Timings::default),
            mcp_headers: None,
            seen_trace: None,
            warning: None,
        }
    }

    /// The app and route this exchange runs under.
    pub fn app(&self) -> &'a App {
        self.app
    }

    pub fn route(&self) -> &'a Route {
        self.route
    }

    /// The client end of the connection.
    pub fn peer(&self) -> &'a Peer {
        self.peer
    }

    /// The session key the request was matched to, if it got that far.
    pub fn session_key(&self) -> Option<&str> {
        self.session_key.as_deref()
    }

    /// Where the request's call keeps its timeline entry, once its
    /// session was found.
    pub fn timeline_hint(&self) -> Option<&crate::shards::Hint> {
        self.session.as_deref().map(|s| &s.timeline)
    }

    /// The request's MCP view, on a route that needs it.
    pub fn mcp_view(&self) -> Option<&McpView> {
        self.mcp.as_ref()
    }

    /// The trace the upstream request carried, with `[tracing]`.
    pub fn trace(&self) -> Option<Trace> {
        self.trace
    }

    /// The trace the request's spans go in: the upstream request's, else
    /// (refused before forwarding, while spans are exported) the caller's
    /// as it sent it.
    pub fn span_trace(&self) -> Option<Trace> {
        self.trace.or(self.seen_trace)
    }

    /// The credentials whose tokens the request carried (names only).
    pub fn credential_names(&self) -> Vec<String> {
        self.tokens.iter().map(|(c, _)| c.name.clone()).collect()
    }

    /// Time to the upstream's response head, if it was reached.
    pub fn upstream_ms(&self) -> Option<f64> {
        self.upstream_ms
    }

    /// The request's JSON-RPC id, if it had one (parsed only when asked).
    pub fn rpc_id(&self) -> Option<Value> {
        let id = match &self.rpc_id {
            Some(id) => id.clone(),
            None => self.rpc_body.as_deref().map_or(Value::Null, error::rpc_id),
        };
        (!id.is_null()).then_some(id)
    }

    /// The one sequencer of the phases, over either transport: the
    /// request screened and admitted (inbound), its call found (key, MCP
    /// policy, session, credentials), the upstream head written (inject,
    /// outbound), sent and answered (send). An upstream 401 to a request
    /// that carried obtained tokens, whose head and whole body are at
    /// hand, is sent once more with fresh tokens; never a third time.
    pub async fn run<T: Transport>(&mut self, t: &mut T) -> Result<T::Answer, ProxyError> {
        // The head is screened before any body is read; on a route that
        // reads none, one look at the head serves both.
        let early = self.route.takes_body();
        if early {
            let (head, rest) = t.head();
            inbound::screen(self.route, &head, rest)?;
        }
        let body = t.admit(self.route).await?;
        let call = {
            let (head, rest) = t.head();
            if !early {
                inbound::screen(self.route, &head, rest)?;
            }
            self.find_call(&head, rest, &body).await?
        };
        t.compose(self, &call)?;
        let kept = match (self.carries_tokens() && call.1.is_some(), body.whole()) {
            (true, Some(b)) => Some(b.clone()),
            _ => None,
        };
        if kept.is_some() {
            t.keep();
        }
        let b = match (t.send(self, &call, body, kept.is_some()).await?, kept) {
            (Sent::Answered(a), _) => return Ok(a),
            (Sent::Refused, Some(b)) => b,
            // Never asked for without `retry`.
            (Sent::Refused, None) => return Err(ProxyError::UpstreamUnreachable),
        };
        t.rewind()?;
        // Boxed: the retry is rare, and its state would be every request's.
        Box::pin(self.renew(&call)).await?;
        t.compose(self, &call)?;
        match t.send(self, &call, InBody::Read(b), false).await? {
            Sent::Answered(a) => Ok(a),
            // Never asked for without `retry`.
            Sent::Refused => Err(ProxyError::UpstreamUnreachable),
        }
    }

    /// The upstream request's URI (origin-form unless `absolute`) and
    /// headers ([`outbound::put_headers`] into a map, the call's values
    /// rendered), with trace context: for a head hyper's types carry.
    pub(crate) fn upstream_map(
        &mut self,
        parts: &Parts,
        rest: &str,
        (key, session): &Found,
        absolute: bool,
    ) -> Result<(http::Uri, http::HeaderMap), ProxyError> {
        let query = parts.uri.query();
        let Some(uri) = outbound::upstream_uri(&self.route.upstream, rest, query, absolute) else {
            return Err(ProxyError::InvalidPath);
        };
        let mut lines = MapLines::new(parts);
        let render = |l: &mut MapLines<'_>| {
            let Some(s) = session else { return Ok(()) };
            for (n, v) in self.render_headers(parts, rest, key, &s.vars)? {
                l.out.append(n, v);
            }
            Ok(())
        };
        outbound::put_headers(&mut lines, self.route, render, self.peer)?;
        let mut headers = lines.out;
        if self.cfg.server.trace_context {
            let participate = self.app.telemetry.is_some();
            self.trace = Some(tracecontext::ensure(&mut headers, participate));
        }
        Ok((uri, headers))
    }

    /// The phases that decide whether and what to inject: the caller
    /// authenticated, the session key found, the MCP call judged, the
    /// session found, budgets spent and its credentials obtained.
    pub(crate) async fn find_call(
        &mut self,
        head: &dyn Head,
        rest: &str,
        body: &InBody,
    ) -> Result<Found, ProxyError> {
        self.rpc_body = body.read().cloned();
        if self.timings.is_some() {
            let caller = head.header_str(&tracecontext::TRACEPARENT);
            self.seen_trace = Some(tracecontext::observe(caller));
        }
        inbound::authenticate(self.route, head, body)?;
        let parsed = body.parsed(self.route);
        if let Some(v) = &parsed {
            self.rpc_id = v.get("id").cloned();
        }
        let key = session_key(self.route, head, rest, parsed.as_ref())?;
        self.session_key = Some(key.clone());
        // After the key (so a denied call is on its session's timeline),
        // before the session is looked up or anything rendered.
        self.judge_mcp(head, body)?;
        let started = self.timings.map(|_| SystemTime::now());
        let session = self.find_session(&key, parsed.as_ref()).await;
        if let (Some(t), Some(s)) = (self.timings.as_mut(), started) {
            t.lookup = Some((s, SystemTime::now()));
        }
        let session = session?;
        self.session.clone_from(&session);
        if self.route.governance.is_some() {
            self.judge_pins().await?;
            self.spend_budgets(&key, session.as_ref()).await?;
        }
        if let Some(s) = &session
            && !self.route.credentials.is_empty()
        {
            self.obtain_credentials(&key, &s.vars).await?;
        }
        Ok((key, session))
    }

    /// `e` as the route answers errors: JSON, or JSON-RPC with the
    /// request's id (`null` when the body had none, or was larger than
    /// what a JSON-RPC route reads before forwarding).
    pub fn error_response(&self, e: &ProxyError) -> Response<Body> {
        let style = e.style(self.route.error_style);
        let id = match style {
            ErrorStyle::JsonRpc => Some(self.rpc_id().unwrap_or(Value::Null)),
            ErrorStyle::Json => None,
        };
        if let (Some(id), Some(_)) = (&id, &self.legacy_stream) {
            let json = e.to_response_json(id.clone()).to_string();
            if let Some(accepted) = self.answer_on_stream(json.as_bytes()) {
                return accepted;
            }
        }
        e.to_response(style, id)
    }
}

impl Exchange<'_> {
    /// Whether the upstream's answer `status` is held back for the one
    /// retry: a 401 to a request that carried obtained tokens drops them
    /// (a key drops a token at most once per
    /// [`crate::credentials::DROP_INTERVAL`]), and when one was dropped
    /// and the request may be sent again (`retry`), the client never sees
    /// it. Whoever read the answer asks, before relaying anything.
    pub(crate) fn held_back(&self, status: StatusCode, retry: bool) -> bool {
        status == StatusCode::UNAUTHORIZED
            && !self.tokens.is_empty()
            && self.forget_tokens()
            && retry
    }

    /// Whether the request carries tokens headgate obtained.
    fn carries_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Fresh tokens for the retry after a 401 (the refused ones were
    /// dropped by [`Self::held_back`]).
    async fn renew(&mut self, (key, session): &Found) -> Result<(), ProxyError> {
        self.tokens.clear();
        if let Some(s) = session {
            self.obtain_credentials(key, &s.vars).await?;
        }
        Ok(())
    }
}
