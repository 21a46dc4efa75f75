//! One request through a route, phase by phase (as pingora names its
//! phases): [`inbound`] (path, limits, body, caller) → [`session`] (key,
//! then session) with, on MCP routes, [`mcp`] (the call and the tool
//! policy) between the two → [`inject`] (render the route's headers) →
//! [`outbound`] (the upstream request, trace context) → [`send`]
//! (timeouts, relay; a `tools/list` filtered on the way back); [`error`]
//! maps any failure to the response the caller gets.

pub mod error;
mod inbound;
mod inject;
mod mcp;
mod outbound;
mod send;
mod session;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

pub use error::{ProxyError, Side};
pub use inbound::screen;
pub(crate) use inbound::{InBody, RPC_PEEK};
pub use inject::{Rendered, RequestView, put_rules, render_rules};
pub use outbound::Peer;
pub(crate) use outbound::put_path_and_query;
pub use outbound::put_raw_headers;
pub(crate) use send::warn_failed;
pub use session::{SessionKey, session_key};

use super::App;
use crate::config::{Config, Credential, ErrorStyle, Route};
use crate::credentials::Token;
use crate::mcp::McpView;
use crate::net::h1;
use crate::net::head::Head;
use crate::net::response::{Body, full};
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

/// What the phases before forwarding found: the key, the session (none
/// when an unknown one passes) and the rendered headers.
pub(crate) type CallFound = (SessionKey, Option<Arc<Session>>, Rendered);

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

    pub fn config(&self) -> &'a Config {
        self.cfg
    }

    /// The client end of the connection.
    pub fn peer(&self) -> &'a Peer {
        self.peer
    }

    /// The session key the request was matched to, if it got that far.
    pub fn session_key(&self) -> Option<&str> {
        self.session_key.as_deref()
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

    /// Runs the phases in order; the upstream's response, or the failure.
    pub async fn run(
        &mut self,
        req: Request<Incoming>,
        rest: &str,
    ) -> Result<Response<Body>, ProxyError> {
        let (parts, incoming) = req.into_parts();
        let body = inbound::admit(self.route, &parts, rest, incoming).await?;
        let (key, session, rendered) = self.prepare(&parts, rest, &body).await?;
        // A request that carried an obtained token is sent again once if
        // the upstream refuses the token, when its body was read whole.
        let replay = match (self.tokens.is_empty(), body.whole()) {
            (false, Some(b)) => Some((SavedHead::new(&parts), b.clone())),
            _ => None,
        };
        let up_body = body.into_upstream(self.route.body_limit);
        let mut resp = self
            .forward(parts, rest, rendered, up_body, &key, session.as_ref())
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED && !self.tokens.is_empty() {
            let replay = replay.and_then(|(head, b)| Some((head.parts()?, b)));
            if let Some(((head, b), rendered)) = self.renew(replay, rest, &key, &session).await? {
                resp =
                    (self.forward(head, rest, rendered, full(b), &key, session.as_ref())).await?;
                self.refused_again(resp.status());
            }
        }
        Ok(self.filter_response(resp).await)
    }

    /// Builds the upstream request (path, headers, the rendered values,
    /// X-Forwarded-*, trace context) and sends it.
    async fn forward(
        &mut self,
        mut parts: Parts,
        rest: &str,
        rendered: Rendered,
        up_body: Body,
        key: &str,
        session: Option<&Arc<Session>>,
    ) -> Result<Response<Body>, ProxyError> {
        let direct = outbound::direct_authority(self.route);
        let (uri, headers) = self.outgoing(&mut parts, rest, rendered, direct.is_none())?;
        let up = outbound::request(parts, uri, headers, up_body);
        if self.route.echo {
            return Ok(super::doors::echo::answer(&up));
        }
        self.send(direct, up, key, session).await
    }

    /// The upstream request's URI (origin-form unless `absolute`) and
    /// headers: the client's, rewritten, with the rendered values,
    /// X-Forwarded-* and trace context. Takes `parts`' headers.
    pub(crate) fn outgoing(
        &mut self,
        parts: &mut Parts,
        rest: &str,
        rendered: Rendered,
        absolute: bool,
    ) -> Result<(http::Uri, http::HeaderMap), ProxyError> {
        let query = parts.uri.query();
        let Some(uri) = outbound::upstream_uri(&self.route.upstream, rest, query, absolute) else {
            return Err(ProxyError::InvalidPath);
        };
        let mut headers = std::mem::take(&mut parts.headers);
        let host = outbound::rewrite_headers(&mut headers, &parts.uri, self.route);
        inject::set(&mut headers, self.route, rendered);
        outbound::forwarded_headers(&mut headers, self.peer, host);
        if self.cfg.server.trace_context {
            let participate = self.app.telemetry.is_some();
            self.trace = Some(tracecontext::ensure(&mut headers, participate));
        }
        Ok((uri, headers))
    }

    /// The phases that decide whether and what to inject (authenticate,
    /// find the session, obtain its credentials), then its headers
    /// rendered.
    pub(crate) async fn prepare(
        &mut self,
        head: &dyn Head,
        rest: &str,
        body: &InBody,
    ) -> Result<CallFound, ProxyError> {
        let (key, session) = self.find_call(head, rest, body).await?;
        let rendered = match &session {
            Some(s) => self.render_headers(head, rest, &key, &s.vars)?,
            None => Vec::new(),
        };
        Ok((key, session, rendered))
    }

    /// [`Self::prepare`] without the rendering, for a writer that renders
    /// into the upstream head itself ([`Self::put_rendered`]).
    pub(crate) async fn find_call(
        &mut self,
        head: &dyn Head,
        rest: &str,
        body: &InBody,
    ) -> Result<(SessionKey, Option<Arc<Session>>), ProxyError> {
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
    /// After an upstream 401 to a request that carried obtained tokens:
    /// the tokens are dropped, and when the request can be sent again
    /// (`replay`: its head and whole body) and has a session, fresh ones
    /// are obtained and its headers rendered anew for the one retry. A key
    /// drops a token at most once per [`crate::credentials::DROP_INTERVAL`];
    /// when none was dropped there is no retry and the 401 is the answer.
    pub(crate) async fn renew<B>(
        &mut self,
        replay: Option<(Parts, B)>,
        rest: &str,
        key: &str,
        session: &Option<Arc<Session>>,
    ) -> Result<Option<((Parts, B), Rendered)>, ProxyError> {
        let dropped = self.forget_tokens();
        let (true, Some((head, b)), Some(s)) = (dropped, replay, session) else {
            return Ok(None);
        };
        self.tokens.clear();
        // Only a request that carried obtained tokens is renewed: the
        // route has credentials.
        self.obtain_credentials(key, &s.vars).await?;
        let rendered = self.render_headers(&head, rest, key, &s.vars)?;
        Ok(Some(((head, b), rendered)))
    }

    /// The retry's answer: a second 401 drops the fresh tokens too. Never
    /// a third attempt.
    pub(crate) fn refused_again(&self, status: StatusCode) {
        if status == StatusCode::UNAUTHORIZED {
            let _ = self.forget_tokens();
        }
    }

    /// Whether the request carries tokens headgate obtained.
    pub(crate) fn carries_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }
}

/// hyper's header lines as one buffer, each name and value after its
/// length: one allocation where a cloned `HeaderMap` made one per value.
fn flatten<'l>(lines: impl Iterator<Item = (&'l [u8], &'l [u8])>) -> Vec<u8> {
    let mut headers = Vec::with_capacity(512);
    for (n, v) in lines {
        for part in [n, v] {
            headers.extend_from_slice(&(part.len() as u32).to_le_bytes());
            headers.extend_from_slice(part);
        }
    }
    headers
}

/// A request head kept to be sent again after a 401, rebuilt only on that
/// rare refusal. Cloning the `HeaderMap` instead promoted every value to a
/// shared allocation on every request of a credential route, for a copy
/// almost never used.
pub(crate) enum SavedHead {
    /// hyper's head: its headers flattened into one buffer (each name and
    /// value after its length).
    Parts {
        method: http::Method,
        uri: http::Uri,
        version: http::Version,
        headers: Vec<u8>,
    },
    /// The forwarding core's head, its bytes as they came: one copy, parsed again
    /// only for the retry (not the target's `Uri` and the flattened lines
    /// built up front on every request).
    Raw(Vec<u8>),
}

impl SavedHead {
    pub(crate) fn new(p: &Parts) -> Self {
        let lines = (p.headers.iter()).map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
        Self::Parts {
            method: p.method.clone(),
            uri: p.uri.clone(),
            version: p.version,
            headers: flatten(lines),
        }
    }

    /// The forwarding core's head, `head` being its bytes (request line to the
    /// empty line).
    pub(crate) fn of_raw(head: &[u8]) -> Self {
        Self::Raw(head.to_vec())
    }

    /// The head as it was; `None` only if it no longer parses (it did when
    /// it was saved, so never in practice).
    pub(crate) fn parts(self) -> Option<Parts> {
        let (method, uri, version, headers) = match self {
            Self::Parts {
                method,
                uri,
                version,
                headers,
            } => (method, uri, version, headers),
            Self::Raw(bytes) => {
                let mut storage = h1::storage();
                let head = h1::parse_request(&bytes, &mut storage, usize::MAX).ok()??;
                return h1::to_parts(&bytes, &head);
            }
        };
        let mut r = Request::new(());
        *r.method_mut() = method;
        *r.uri_mut() = uri;
        *r.version_mut() = version;
        let mut rest = headers.as_slice();
        let mut next = || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let (part, tail) = tail.split_at_checked(u32::from_le_bytes(*len) as usize)?;
            rest = tail;
            Some(part)
        };
        while let (Some(n), Some(v)) = (next(), next()) {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n),
                http::HeaderValue::from_bytes(v),
            ) {
                r.headers_mut().append(n, v);
            }
        }
        Some(r.into_parts().0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_head_comes_back_as_it_was() {
        let req = Request::post("http://h/crm/mcp?a=1")
            .header("x-call-id", "call-1")
            .header("accept", "application/json")
            .header("accept", "text/event-stream")
            .header(
                "x-bin",
                http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
            )
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let back = SavedHead::new(&parts).parts().unwrap();
        assert_eq!(back.method, parts.method);
        assert_eq!(back.uri, parts.uri);
        assert_eq!(back.version, parts.version);
        assert_eq!(back.headers, parts.headers);
        assert_eq!(back.headers.get_all("accept").iter().count(), 2);
    }

    #[test]
    fn a_raw_head_comes_back_as_the_core_read_it() {
        let raw = b"POST /crm/mcp?a=1 HTTP/1.1\r\nHost: h\r\nX-Call-Id: call-1\r\n\
                    Accept: application/json\r\nAccept: text/event-stream\r\n\r\n";
        let mut storage = h1::storage();
        let head = h1::parse_request(raw, &mut storage, 1 << 16)
            .unwrap()
            .unwrap();
        let read = h1::to_parts(raw, &head).unwrap();
        let back = SavedHead::of_raw(raw).parts().unwrap();
        assert_eq!(back.method, read.method);
        assert_eq!(back.uri, read.uri);
        assert_eq!(back.version, read.version);
        assert_eq!(back.headers, read.headers);
        assert_eq!(back.headers.get_all("accept").iter().count(), 2);
    }
}
