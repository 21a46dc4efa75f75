//! The data path, one phase after another:
//! match route → authenticate → find session → render headers → forward →
//! log. Header injection happens in exactly one place (`render_headers`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};

use super::App;
use super::body::Streamed;
use super::error::ProxyError;
use super::headers::strip_hop_by_hop;
use crate::config::{
    Config, ErrorStyle, HeaderRule, InboundAuth, KeySource, OnError, OnUnknown, Route,
};
use crate::metrics::{Code, RouteLabel, RouteStatus};
use crate::response::{self, Body, ReadError, read_limited};
use crate::session::{Session, SessionStore, Source, id_hash, resolver::ResolveError, webhooks};
use crate::template::{Scope, Vars};

/// Bytes read to find a JSON-RPC id for an error response.
const RPC_ID_PEEK: usize = 64 << 10;

/// The client end of a connection, formatted once per connection rather
/// than per request.
pub struct Peer {
    /// Its IP as an `X-Forwarded-For` element.
    ip: HeaderValue,
}

impl Peer {
    /// For a connection from `remote`.
    pub fn new(remote: SocketAddr) -> Self {
        let ip = HeaderValue::from_str(&remote.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { ip }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_RETELL_SIGNATURE: HeaderName = HeaderName::from_static("x-retell-signature");

/// Handles one request on the public listener.
pub async fn handle(req: Request<Incoming>, app: Arc<App>, peer: Arc<Peer>) -> Response<Body> {
    let cfg = app.config.borrow().clone();
    let path = req.uri().path();
    if let Some(name) = path.strip_prefix("/_hooks/") {
        let name = name.to_string();
        return webhook(req, &app, &cfg, &name).await;
    }
    if cfg.server.builtin_echo && (path == "/_echo" || path.starts_with("/_echo/")) {
        return super::echo::answer(&req);
    }
    let (name, rest) = split_route(path);
    let Some(route) = cfg.route(name).cloned() else {
        let e = ProxyError::RouteNotFound;
        count(&app, "_none", &e);
        return e.to_response(ErrorStyle::Json, None);
    };
    let started = Instant::now();
    let rest = rest.to_string();
    let mut ctx = Exchange {
        app: &app,
        cfg: &cfg,
        route: &route,
        peer: &peer,
        session_key: None,
        rpc_id: None,
    };
    let resp = match ctx.run(req, &rest).await {
        Ok(r) => r,
        Err((e, body)) => {
            count(&app, &route.name, &e);
            let id = match (route.error_style, body) {
                (ErrorStyle::JsonRpc, Some(b)) => Some(rpc_id(&b)),
                (ErrorStyle::JsonRpc, None) => ctx.rpc_id.take().or(Some(Value::Null)),
                _ => None,
            };
            e.to_response(route.error_style, id)
        }
    };
    let status = resp.status().as_u16();
    app.metrics
        .requests
        .get_or_create(&RouteStatus {
            route: route.name.clone(),
            status,
        })
        .inc();
    tracing::info!(
        route = %route.name,
        status,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        session = ctx.session_key.as_deref().map(id_hash).unwrap_or_default(),
        "request"
    );
    resp
}

fn count(app: &App, route: &str, e: &ProxyError) {
    app.metrics
        .errors
        .get_or_create(&Code {
            code: e.code().to_string(),
        })
        .inc();
    tracing::debug!(route, code = e.code(), side = ?e.side(), "refused");
}

/// `/crm/mcp?x` → (`crm`, `/mcp`).
fn split_route(path: &str) -> (&str, &str) {
    let p = path.strip_prefix('/').unwrap_or(path);
    match p.find('/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, ""),
    }
}

fn rpc_id(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null)
}

type Failure = (ProxyError, Option<Bytes>);

struct Exchange<'a> {
    app: &'a Arc<App>,
    cfg: &'a Arc<Config>,
    route: &'a Arc<Route>,
    peer: &'a Peer,
    session_key: Option<String>,
    rpc_id: Option<Value>,
}

/// The request body: still streaming, or read because the route needed it.
enum InBody {
    Stream(Incoming),
    Read(Bytes),
}

impl Exchange<'_> {
    async fn run(&mut self, req: Request<Incoming>, rest: &str) -> Result<Response<Body>, Failure> {
        let route = self.route;
        let (parts, incoming) = req.into_parts();

        if has_dot_segments(rest) {
            return Err((ProxyError::InvalidPath, None));
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > route.body_limit) {
            return Err((ProxyError::TooLarge, None));
        }
        let needs_body = matches!(route.inbound_auth, InboundAuth::Platform { .. })
            || route.vars_from_body.is_some()
            || route
                .session_keys
                .iter()
                .any(|k| matches!(k, KeySource::Body(_)));
        let mut body = if needs_body {
            match read_limited(incoming, route.body_limit as usize).await {
                Ok(b) => InBody::Read(b),
                Err(ReadError::TooLarge) => return Err((ProxyError::TooLarge, None)),
                Err(ReadError::Aborted) => {
                    return Err((ProxyError::BadBody("the request body was cut short"), None));
                }
            }
        } else {
            InBody::Stream(incoming)
        };
        let read = |b: &InBody| match b {
            InBody::Read(b) => Some(b.clone()),
            InBody::Stream(_) => None,
        };

        // Authenticate.
        if let Err(e) = self.authenticate(&parts.headers, &body) {
            return Err(self.fail(e, &mut body).await);
        }

        // Find the session.
        let parsed_body: Option<Value> = match &body {
            InBody::Read(b)
                if route.vars_from_body.is_some()
                    || route
                        .session_keys
                        .iter()
                        .any(|k| matches!(k, KeySource::Body(_))) =>
            {
                serde_json::from_slice(b).ok()
            }
            _ => None,
        };
        if let Some(v) = &parsed_body {
            self.rpc_id = v.get("id").cloned();
        }
        let key = match session_key(self.route, &parts, rest, parsed_body.as_ref()) {
            Ok(k) => k,
            Err(e) => return Err(self.fail(e, &mut body).await),
        };
        self.session_key = Some(key.clone());
        let session = match self.find_session(&key, parsed_body.as_ref()).await {
            Ok(s) => s,
            Err(e) => return Err(self.fail(e, &mut body).await),
        };

        // Render the route's headers.
        let rendered = match &session {
            Some(s) => match self.render_headers(&parts, rest, &key, &s.vars) {
                Ok(r) => r,
                Err(e) => return Err(self.fail(e, &mut body).await),
            },
            None => Vec::new(),
        };

        // Forward.
        // Cleartext upstreams go through the direct pool, which takes the
        // origin form (`/path?query`); the general client wants it absolute.
        let direct = (route.upstream.scheme() == Some(&http::uri::Scheme::HTTP))
            .then(|| route.upstream.authority())
            .flatten();
        let uri = match upstream_uri(&route.upstream, rest, parts.uri.query(), direct.is_none()) {
            Some(u) => u,
            None => return Err((ProxyError::InvalidPath, read(&body))),
        };
        let mut headers = parts.headers;
        let original_host = headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        strip_hop_by_hop(&mut headers);
        headers.remove(header::HOST);
        if let InboundAuth::Header { header, .. } = &route.inbound_auth {
            headers.remove(header);
        }
        if matches!(route.inbound_auth, InboundAuth::Platform { .. }) {
            headers.remove(&X_RETELL_SIGNATURE);
        }
        for h in &route.strip {
            headers.remove(h);
        }
        for rule in &route.headers {
            // Replace, never append: a client can never smuggle its own.
            headers.remove(&rule.name);
        }
        for (name, value) in rendered {
            headers.insert(name, value);
        }
        forwarded_headers(&mut headers, self.peer, original_host);

        let out_body: Body = match body {
            InBody::Read(b) => response::full(b),
            InBody::Stream(inc) => {
                let limited = http_body_util::Limited::new(inc, route.body_limit as usize);
                limited.boxed()
            }
        };
        let mut up = Request::new(out_body);
        *up.method_mut() = parts.method;
        *up.uri_mut() = uri;
        *up.headers_mut() = headers;
        *up.version_mut() = Version::HTTP_11;

        let started = Instant::now();
        let timeouts = &self.cfg.server.timeouts;
        let (limit, idle) = (timeouts.response_headers, timeouts.idle);
        let open_streams = &self.app.metrics.open_streams;
        let sent = match direct {
            Some(authority) => {
                let send = self.app.upstreams.send(authority, up);
                response_within(limit, send, idle, open_streams).await
            }
            None => {
                let send = self.app.client.request(up);
                response_within(limit, send, idle, open_streams).await
            }
        };
        let resp = sent.map_err(|e| (e, None))?;
        self.app
            .metrics
            .upstream_latency
            .get_or_create(&RouteLabel {
                route: route.name.clone(),
            })
            .observe(started.elapsed().as_secs_f64());

        if resp.status() == StatusCode::UNAUTHORIZED {
            self.app
                .metrics
                .upstream_unauthorized
                .get_or_create(&RouteLabel {
                    route: route.name.clone(),
                })
                .inc();
            // A resolver-fetched token may have rotated: fetch afresh next time.
            if session
                .as_ref()
                .is_some_and(|s| s.source == Source::Resolver)
            {
                let _ = self.app.store.delete(&key).await;
            }
        }
        Ok(resp)
    }

    /// Builds the failure, reading a little of the body for a JSON-RPC id
    /// when the route answers errors in JSON-RPC.
    async fn fail(&mut self, e: ProxyError, body: &mut InBody) -> Failure {
        if self.route.error_style != ErrorStyle::JsonRpc {
            return (e, None);
        }
        let bytes = match std::mem::replace(body, InBody::Read(Bytes::new())) {
            InBody::Read(b) => b,
            InBody::Stream(inc) => {
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    read_limited(inc, RPC_ID_PEEK),
                )
                .await;
                read.ok().and_then(Result::ok).unwrap_or_default()
            }
        };
        (e, Some(bytes))
    }

    fn authenticate(&self, headers: &HeaderMap, body: &InBody) -> Result<(), ProxyError> {
        match &self.route.inbound_auth {
            InboundAuth::None => Ok(()),
            InboundAuth::Header { header, secret } => {
                let given = headers
                    .get(header)
                    .map(HeaderValue::as_bytes)
                    .unwrap_or_default();
                if secret.matches(given) {
                    Ok(())
                } else {
                    Err(ProxyError::InboundAuth)
                }
            }
            InboundAuth::Platform { secret, .. } => {
                let InBody::Read(b) = body else {
                    return Err(ProxyError::InboundAuth);
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                webhooks::verify_retell(
                    secret,
                    headers,
                    b,
                    std::time::Duration::from_secs(300),
                    now,
                )
                .map(|_| ())
                .ok_or(ProxyError::InboundAuth)
            }
        }
    }

    async fn find_session(
        &self,
        key: &str,
        body: Option<&Value>,
    ) -> Result<Option<Arc<Session>>, ProxyError> {
        let route = self.route;
        let app = self.app;
        if let Some(ptr) = &route.vars_from_body {
            // Signed body (checked in `authenticate`): render from its own call object.
            let Some(obj) = body.and_then(|b| b.pointer(ptr)).filter(|v| v.is_object()) else {
                return Err(ProxyError::BadBody(
                    "the signed body has no object at vars_from_body",
                ));
            };
            let mut m = serde_json::Map::new();
            m.insert("call".into(), obj.clone());
            return Ok(Some(Arc::new(Session::new(
                Vars::from_map(m),
                Source::Webhook,
                std::time::Duration::ZERO,
            ))));
        }
        let store_err = |_| ProxyError::StoreUnavailable;
        if let Some(s) = app.store.get(key).await.map_err(store_err)? {
            app.metrics.session("hit");
            if let Some(r) = &self.cfg.resolver {
                app.resolver.maybe_refresh(
                    r.clone(),
                    self.cfg.env.clone(),
                    key,
                    &s,
                    app.store.clone(),
                    self.cfg.server.max_session_bytes,
                );
            }
            return Ok(Some(s));
        }
        if !route.wait_for_session.is_zero()
            && let Some(s) = app
                .store
                .wait_for(key, route.wait_for_session)
                .await
                .map_err(store_err)?
        {
            app.metrics.session("waited");
            return Ok(Some(s));
        }
        app.metrics.session("miss");
        match route.on_unknown_session {
            OnUnknown::Reject => Err(ProxyError::SessionNotFound),
            OnUnknown::Pass => Ok(None),
            OnUnknown::Resolve => {
                let Some(r) = &self.cfg.resolver else {
                    return Err(ProxyError::ResolverUnavailable);
                };
                match app
                    .resolver
                    .resolve(
                        r,
                        &self.cfg.env,
                        key,
                        &app.store,
                        self.cfg.server.max_session_bytes,
                    )
                    .await
                {
                    Ok(s) => {
                        app.metrics.session("fetch");
                        Ok(Some(s))
                    }
                    Err(ResolveError::NotFound) => {
                        app.metrics.session("fetch_not_found");
                        Err(ProxyError::SessionNotFound)
                    }
                    Err(e) => {
                        app.metrics.session("fetch_error");
                        tracing::warn!(route = %route.name, session = id_hash(key), "resolver: {e}");
                        Err(ProxyError::ResolverUnavailable)
                    }
                }
            }
        }
    }

    /// The one phase that injects, with its metrics and logs.
    fn render_headers(
        &self,
        parts: &http::request::Parts,
        rest: &str,
        key: &str,
        vars: &Vars,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ProxyError> {
        let route = self.route;
        let started = Instant::now();
        let out = render_rules(route, &self.cfg.env, parts, rest, key, vars, |rule, e| {
            self.app
                .metrics
                .render_failures
                .get_or_create(&Code {
                    code: e.code().to_string(),
                })
                .inc();
            tracing::warn!(route = %route.name, header = %rule.name, code = e.code(), "{}", e.message());
        });
        self.app
            .metrics
            .render_latency
            .observe(started.elapsed().as_secs_f64());
        out
    }
}

/// Finds the request's session key: the first of the route's sources that
/// is present, checked against its pattern before anything else sees it.
pub fn session_key(
    route: &Route,
    parts: &http::request::Parts,
    rest: &str,
    body: Option<&Value>,
) -> Result<String, ProxyError> {
    for src in &route.session_keys {
        let found: Option<String> = match src {
            KeySource::Header(h) => parts
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string()),
            KeySource::Query(q) => parts.uri.query().and_then(|query| {
                query.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(k) == *q).then(|| decode(v))
                })
            }),
            KeySource::Path(n) => rest
                .split('/')
                .filter(|s| !s.is_empty())
                .nth(*n)
                .map(decode),
            KeySource::Body(ptr) => body.and_then(|b| b.pointer(ptr)).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
        };
        if let Some(k) = found.filter(|k| !k.is_empty()) {
            return if route.session_key_pattern.is_match(&k) {
                Ok(k)
            } else {
                Err(ProxyError::KeyInvalid)
            };
        }
    }
    let names: Vec<String> = route.session_keys.iter().map(ToString::to_string).collect();
    Err(ProxyError::KeyMissing(names.join(", ")))
}

/// Renders each of the route's header rules to a validated value for one
/// request: the only place headers are injected. A failing rule is
/// reported to `failed`, then omitted or refused by its `on_error`.
pub fn render_rules(
    route: &Route,
    env: &Value,
    parts: &http::request::Parts,
    rest: &str,
    key: &str,
    vars: &Vars,
    mut failed: impl FnMut(&HeaderRule, &crate::template::TemplateError),
) -> Result<Vec<(HeaderName, HeaderValue)>, ProxyError> {
    let scope = RequestScope {
        vars,
        key,
        parts,
        rest,
        env,
        session: std::cell::OnceCell::new(),
        request: std::cell::OnceCell::new(),
    };
    let mut out = Vec::with_capacity(route.headers.len());
    for rule in &route.headers {
        match rule.template.render(&scope) {
            Ok(v) => out.push((rule.name.clone(), v)),
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
    Ok(out)
}

/// The render-time roots for one request (CONTRACT §1).
/// `session` and `request` are built on first read, so a request whose
/// templates read neither (the usual case) allocates nothing for them.
struct RequestScope<'a> {
    vars: &'a Vars,
    key: &'a str,
    parts: &'a http::request::Parts,
    rest: &'a str,
    env: &'a Value,
    session: std::cell::OnceCell<Value>,
    request: std::cell::OnceCell<Value>,
}

impl Scope for RequestScope<'_> {
    fn root(&self, name: &str) -> Option<&Value> {
        match name {
            "session" => Some(self.session.get_or_init(|| json!({ "id": self.key }))),
            "request" => Some(
                self.request
                    .get_or_init(|| request_object(self.parts, self.rest)),
            ),
            "env" => Some(self.env),
            _ => self.vars.root(name),
        }
    }
}

fn request_object(parts: &http::request::Parts, rest: &str) -> Value {
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        if let Ok(s) = v.to_str() {
            headers
                .entry(k.as_str().to_string())
                .or_insert_with(|| Value::String(s.to_string()));
        }
    }
    let mut query = serde_json::Map::new();
    for pair in parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query
            .entry(decode(k))
            .or_insert_with(|| Value::String(decode(v)));
    }
    json!({ "method": parts.method.as_str(), "path": rest, "query": query, "headers": headers })
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// True if any segment, once percent-decoded, is `.` or `..` (or holds a
/// slash or backslash that would create one upstream).
fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|seg| {
        let d = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        d == "." || d == ".." || (d != seg && (d.contains('/') || d.contains('\\')))
    })
}

/// Upstream base + the rest of the path + the query.
fn upstream_uri(base: &Uri, rest: &str, query: Option<&str>, absolute: bool) -> Option<Uri> {
    let base_path = base.path().trim_end_matches('/');
    let mut pq = String::with_capacity(base_path.len() + rest.len() + 32);
    pq.push_str(base_path);
    pq.push_str(rest);
    if pq.is_empty() {
        pq.push('/');
    }
    match (base.query(), query) {
        (Some(a), Some(b)) => {
            pq.push('?');
            pq.push_str(a);
            pq.push('&');
            pq.push_str(b);
        }
        (Some(q), None) | (None, Some(q)) => {
            pq.push('?');
            pq.push_str(q);
        }
        (None, None) => {}
    }
    if !absolute {
        return Uri::try_from(pq).ok();
    }
    Uri::builder()
        .scheme(base.scheme()?.clone())
        .authority(base.authority()?.clone())
        .path_and_query(pq)
        .build()
        .ok()
}

/// The upstream's response on its way to the client: hop-by-hop headers
/// stripped, the body streamed frame by frame with the idle timeout (and
/// counted in `open_streams` while it is an event stream).
fn relay<B>(resp: Response<B>, idle: std::time::Duration, open_streams: &Gauge) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let is_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let gauge = is_stream.then(|| open_streams.clone());
    Response::from_parts(parts, Streamed::new(body, idle, gauge).boxed())
}

/// Waits up to `limit` for the upstream's response head, then relays it.
async fn response_within<B, E>(
    limit: std::time::Duration,
    send: impl Future<Output = Result<Response<B>, E>>,
    idle: std::time::Duration,
    open_streams: &Gauge,
) -> Result<Response<Body>, ProxyError>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: std::error::Error + 'static,
{
    match tokio::time::timeout(limit, send).await {
        Err(_) => Err(ProxyError::UpstreamTimeout),
        Ok(Err(e)) => Err(upstream_error(&e)),
        Ok(Ok(r)) => Ok(relay(r, idle, open_streams)),
    }
}

/// What a failed exchange with the upstream tells the client: our own body
/// limit tripping while the request streamed is 413, anything else 502.
fn upstream_error(e: &(dyn std::error::Error + 'static)) -> ProxyError {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return ProxyError::TooLarge;
        }
        cause = c.source();
    }
    ProxyError::UpstreamUnreachable
}

fn forwarded_headers(h: &mut HeaderMap, peer: &Peer, host: Option<HeaderValue>) {
    let xff = match h.get(&X_FORWARDED_FOR) {
        None => Some(peer.ip.clone()),
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + peer.ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer.ip.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(host) = host {
        h.insert(X_FORWARDED_HOST.clone(), host);
    }
}

async fn webhook(req: Request<Incoming>, app: &App, cfg: &Config, name: &str) -> Response<Body> {
    let Some(hook) = cfg.webhooks.get(name) else {
        return response::error(
            StatusCode::NOT_FOUND,
            "route.not_found",
            "no webhook with that name; configure [webhooks.<name>] in headgate.toml",
        );
    };
    if req.method() != http::Method::POST {
        return response::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "webhook.method_not_allowed",
            "webhooks are POST",
        );
    }
    let (parts, body) = req.into_parts();
    let body = match read_limited(body, 1 << 20).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => {
            return response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request.too_large",
                "webhook bodies are limited to 1 MiB",
            );
        }
        Err(ReadError::Aborted) => {
            return response::error(
                StatusCode::BAD_REQUEST,
                "request.aborted",
                "the request body was cut short",
            );
        }
    };
    let outcome = webhooks::deliver(
        hook,
        &parts.headers,
        &body,
        &app.store,
        &app.replay,
        cfg.server.max_session_bytes,
    )
    .await;
    let label = match &outcome {
        Ok(o) => o.label(),
        Err(_) => "rejected",
    };
    app.metrics
        .webhooks
        .get_or_create(&crate::metrics::Outcome { outcome: label })
        .inc();
    let resp = match outcome {
        Ok(o) => response::json(StatusCode::OK, &json!({ "ok": true, "outcome": o.label() })),
        Err(e) => {
            let status = match &e {
                webhooks::HookError::Unauthorized => StatusCode::UNAUTHORIZED,
                webhooks::HookError::InvalidPayload(_) => StatusCode::BAD_REQUEST,
                webhooks::HookError::Session(crate::session::SessionError::Unavailable(_)) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                webhooks::HookError::Session(crate::session::SessionError::TooLarge(..)) => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                webhooks::HookError::Session(_) => StatusCode::BAD_REQUEST,
            };
            response::error(status, e.code(), &e.to_string())
        }
    };
    app.metrics
        .requests
        .get_or_create(&RouteStatus {
            route: "_hooks".into(),
            status: resp.status().as_u16(),
        })
        .inc();
    tracing::info!(
        hook = name,
        status = resp.status().as_u16(),
        outcome = label,
        "webhook"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_split() {
        assert_eq!(split_route("/crm/mcp"), ("crm", "/mcp"));
        assert_eq!(split_route("/crm"), ("crm", ""));
        assert_eq!(split_route("/crm/"), ("crm", "/"));
    }

    #[test]
    fn upstream_paths() {
        let base: Uri = "https://crm.example.com/mcp".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, "", None, true).unwrap().to_string(),
            "https://crm.example.com/mcp"
        );
        assert_eq!(
            upstream_uri(&base, "/x/y", Some("a=1"), true)
                .unwrap()
                .to_string(),
            "https://crm.example.com/mcp/x/y?a=1"
        );
        let root: Uri = "http://127.0.0.1:9/".parse().unwrap();
        assert_eq!(
            upstream_uri(&root, "", None, true).unwrap().to_string(),
            "http://127.0.0.1:9/"
        );
        let q: Uri = "http://h/p?k=v".parse().unwrap();
        assert_eq!(
            upstream_uri(&q, "/s", Some("a=1"), true)
                .unwrap()
                .to_string(),
            "http://h/p/s?k=v&a=1"
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        assert!(has_dot_segments("/../admin"));
        assert!(has_dot_segments("/a/%2e%2e/b"));
        assert!(has_dot_segments("/a/%2E/b"));
        assert!(has_dot_segments("/a/..%2fb"));
        assert!(!has_dot_segments("/a/b.c/d..e"));
        assert!(!has_dot_segments(""));
    }
}
