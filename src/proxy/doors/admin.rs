//! The admin door (docs/operations.md "Admin API"), on its own listener: register,
//! patch, inspect (names only) and delete sessions; health, readiness,
//! metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::audit::Recorder;
use crate::config::Config;
use crate::config::reload::ReloadLog;
use crate::console::{self, Console};
use crate::credentials::CredentialsRuntime;
use crate::metrics::Metrics;
use crate::net::response::{self, Body, ReadError, read_limited};
use crate::net::throttle::{self, Throttle};
use crate::proxy::exchange::error::session_status;
use crate::session::{Session, SessionError, SessionStore, Source, Store, check_id, validate};

/// What the admin handlers need.
pub struct AdminCtx {
    /// Sessions.
    pub store: Arc<Store>,
    /// The live config.
    pub config: watch::Receiver<Arc<Config>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// False until the listeners are up with a valid config.
    pub ready: Arc<AtomicBool>,
    /// MCP request timelines (`GET /calls/{id}`).
    pub calls: Arc<Recorder>,
    /// Config generation and the last reload, for the console.
    pub reloads: Arc<ReloadLog>,
    /// The console at `/ui` (its logins and rate history).
    pub console: Arc<Console>,
    /// Wrong tokens by client address (the API's, the metrics token's and
    /// the console login's together).
    pub guesses: Throttle,
    /// The listener serves HTTPS (`[tls] admin = true`).
    pub tls: bool,
    /// Tokens obtained for sessions: a stored session's prefetched.
    pub credentials: Arc<CredentialsRuntime>,
    /// Every route's pinned tool definitions (`/routes/{route}/tools`).
    pub pins: Arc<crate::mcp::pins::Books>,
}

/// Longest TTL a PUT may ask for.
const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub(super) fn session_error(e: &SessionError) -> Response<Body> {
    response::error(session_status(e), e.code(), &e.to_string())
}

/// Handles one admin request from `peer`.
pub async fn handle<B>(req: Request<B>, ctx: &AdminCtx, peer: std::net::IpAddr) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    if let Some(r) = probe(req.method(), &path, ctx) {
        return r;
    }
    let cfg = ctx.config.borrow().clone();
    if !host_allowed(&req, &cfg) {
        return response::error(
            StatusCode::FORBIDDEN,
            "admin.host_not_allowed",
            "the admin listener answers only a Host that is a loopback name, an IP address or a name in admin_hosts (a guard against DNS rebinding); add the name you reach it by to admin_hosts in headgate.toml",
        );
    }
    if let Err(wait) = ctx.guesses.check(peer) {
        return throttle::too_many(wait);
    }
    if path == "/ui" || path.starts_with("/ui/") {
        let src = console::Sources {
            config: &cfg,
            store: &ctx.store,
            metrics: &ctx.metrics,
            calls: &ctx.calls,
            reloads: &ctx.reloads,
            pins: &ctx.pins,
            guesses: (&ctx.guesses, peer),
            tls: ctx.tls,
        };
        return console::handle(req, &ctx.console, &src).await;
    }
    // `/metrics` also takes the read-only metrics token.
    let scrape = path == "/metrics" && req.method() == Method::GET;
    let metrics_token = cfg.server.metrics_token.as_ref().filter(|_| scrape);
    if metrics_token.is_some_and(|t| t.matches(bearer(&req).as_bytes())) {
        return metrics(&req, ctx);
    }
    if let Some(r) = refuse_unauthorized(&req, &cfg) {
        ctx.guesses.failed(peer);
        return r;
    }
    if scrape {
        return metrics(&req, ctx);
    }
    if let Some(id) = path.strip_prefix("/calls/") {
        return timeline(req.method(), id, ctx);
    }
    if let Some(rest) = path.strip_prefix("/routes/") {
        return super::tools::handle(req.method(), rest, ctx, &cfg).await;
    }
    let Some(id) = path.strip_prefix("/sessions/") else {
        return response::error(
            StatusCode::NOT_FOUND,
            "route.not_found",
            "admin paths: /sessions/{id}, /calls/{id}, /routes/{route}/tools, /healthz, /readyz, /metrics, /ui (the console)",
        );
    };
    if let Err(e) = check_id(id) {
        return session_error(&e);
    }
    let id = id.to_string();
    match *req.method() {
        Method::GET => match ctx.store.get(&id).await {
            Ok(Some(s)) => describe(&id, &s),
            Ok(None) => session_error(&SessionError::NotFound),
            Err(e) => session_error(&e),
        },
        Method::DELETE => match ctx.store.delete(&id).await {
            Ok(()) => response::status(StatusCode::NO_CONTENT),
            Err(e) => session_error(&e),
        },
        Method::PUT | Method::PATCH => write(req, &id, ctx, &cfg).await,
        _ => {
            let mut r = response::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "admin.method_not_allowed",
                "use PUT, PATCH, GET or DELETE on /sessions/{id}",
            );
            r.headers_mut().insert(
                header::ALLOW,
                http::HeaderValue::from_static("GET, PUT, PATCH, DELETE"),
            );
            r
        }
    }
}

/// `/healthz` and `/readyz`: answered without a token, for probes.
fn probe(method: &Method, path: &str, ctx: &AdminCtx) -> Option<Response<Body>> {
    if method != Method::GET {
        return None;
    }
    match path {
        "/healthz" => Some(response::text(StatusCode::OK, "ok\n")),
        "/readyz" if ctx.ready.load(Ordering::Relaxed) => {
            Some(response::text(StatusCode::OK, "ready\n"))
        }
        "/readyz" => Some(response::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready\n",
        )),
        _ => None,
    }
}

/// Whether the request's `Host` (or, on HTTP/2, `:authority`) is one the
/// admin listener answers ([`crate::net::host`]). Probes are answered
/// before this: a kubelet names the pod's IP, and they show nothing.
fn host_allowed<B>(req: &Request<B>, cfg: &Config) -> bool {
    let host = match (req.headers().get(header::HOST), req.uri().authority()) {
        (Some(v), _) => v.to_str().unwrap_or_default(),
        (None, Some(a)) => a.as_str(),
        // No Host at all (HTTP/1.0 by hand): no browser sends that.
        (None, None) => return true,
    };
    cfg.server.admin_hosts.allows(host)
}

/// The bearer token a request carries (`""` when none).
fn bearer<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// The 401 for a request without the admin token, when one is set.
fn refuse_unauthorized<B>(req: &Request<B>, cfg: &Config) -> Option<Response<Body>> {
    let token = cfg.server.admin_token.as_ref()?;
    if token.matches(bearer(req).as_bytes()) {
        return None;
    }
    let mut r = response::error(
        StatusCode::UNAUTHORIZED,
        "admin.unauthorized",
        "send `Authorization: Bearer <admin token>` (the value of the admin_token_env variable)",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    Some(r)
}

/// `GET /metrics`: OpenMetrics text (ending `# EOF`) to a scraper that
/// asks for it (Prometheus does), else the Prometheus text format; each
/// with the content type that says which.
fn metrics<B>(req: &Request<B>, ctx: &AdminCtx) -> Response<Body> {
    ctx.metrics.sessions.set(ctx.store.len() as i64);
    let open = req.headers().get_all(header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|a| a.contains("application/openmetrics-text"))
    });
    let (body, ct) = if open {
        let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        (ctx.metrics.encode(), ct)
    } else {
        let ct = "text/plain; version=0.0.4; charset=utf-8";
        (ctx.metrics.encode_prometheus(), ct)
    };
    let mut r = response::text(StatusCode::OK, body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    r
}

/// `GET /calls/{id}`: the session's last MCP requests, oldest first.
fn timeline(method: &Method, id: &str, ctx: &AdminCtx) -> Response<Body> {
    if method != Method::GET {
        let mut r = response::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "admin.method_not_allowed",
            "use GET on /calls/{id}",
        );
        r.headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET"));
        return r;
    }
    if let Err(e) = check_id(id) {
        return session_error(&e);
    }
    let requests = ctx.calls.timeline.get(id).unwrap_or_default();
    let mcp: Vec<_> = requests.into_iter().filter(|r| r.mcp).collect();
    match mcp.is_empty() {
        false => response::json(StatusCode::OK, &json!({ "id": id, "requests": mcp })),
        true => response::error(
            StatusCode::NOT_FOUND,
            "calls.not_found",
            "no MCP requests recorded for that session (timelines live as long as a session)",
        ),
    }
}

/// `GET /sessions/{id}`: the variable names, never their values.
fn describe(id: &str, s: &Session) -> Response<Body> {
    response::json(
        StatusCode::OK,
        &json!({
            "id": id,
            "variables": s.vars.keys().collect::<Vec<_>>(),
            "ttl_seconds": s.ttl_left().as_secs(),
            "source": s.source.name(),
        }),
    )
}

/// `PUT` (create or replace) and `PATCH` (deep-merge) of a session.
async fn write<B>(req: Request<B>, id: &str, ctx: &AdminCtx, cfg: &Arc<Config>) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = cfg.server.max_session_bytes;
    let ttl = match ttl_param(req.uri().query()) {
        Ok(t) => t.unwrap_or(cfg.server.ttl),
        Err(msg) => return response::error(StatusCode::BAD_REQUEST, "session.invalid_ttl", msg),
    };
    let is_put = req.method() == Method::PUT;
    let value = match read_json(req.into_body(), max).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let written = if is_put {
        match validate(value, max) {
            Ok(vars) => {
                let session = Session::new(vars, Source::Admin, ttl);
                ctx.store.put(id, session).await.map(|()| true)
            }
            Err(e) => Err(e),
        }
    } else {
        let Value::Object(patch) = value else {
            return session_error(&SessionError::Invalid(
                "a PATCH body must be a JSON object".into(),
            ));
        };
        ctx.store.patch(id, patch, max).await
    };
    match written {
        Ok(true) => {
            (ctx.credentials).prefetch_stored(cfg, &ctx.store, id);
            response::status(StatusCode::NO_CONTENT)
        }
        Ok(false) => session_error(&SessionError::NotFound),
        Err(e) => session_error(&e),
    }
}

/// A session body: JSON, at most about twice `max` bytes of text.
async fn read_json<B>(body: B, max: usize) -> Result<Value, Response<Body>>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = max.saturating_mul(2) + 1024;
    let bytes = match read_limited(body, limit).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => return Err(session_error(&SessionError::TooLarge(limit, max))),
        Err(ReadError::Aborted) => {
            return Err(response::error(
                StatusCode::BAD_REQUEST,
                "request.aborted",
                "the request body was cut short",
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|_| {
        response::error(
            StatusCode::BAD_REQUEST,
            "session.invalid",
            "the body is not JSON; send a JSON object such as {\"call\": {\"metadata\": {\"token\": \"…\"}}}",
        )
    })
}

fn ttl_param(query: Option<&str>) -> Result<Option<Duration>, &'static str> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("ttl=") {
            let secs: u64 = v
                .parse()
                .map_err(|_| "ttl must be a whole number of seconds")?;
            let d = Duration::from_secs(secs);
            if secs == 0 || d > MAX_TTL {
                return Err("ttl must be between 1 second and 7 days");
            }
            return Ok(Some(d));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_query() {
        assert_eq!(ttl_param(Some("ttl=60")), Ok(Some(Duration::from_secs(60))));
        assert_eq!(ttl_param(Some("a=1")), Ok(None));
        assert!(ttl_param(Some("ttl=0")).is_err());
        assert!(ttl_param(Some("ttl=abc")).is_err());
        assert!(ttl_param(Some("ttl=99999999")).is_err());
    }
}
