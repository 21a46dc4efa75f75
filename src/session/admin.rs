//! The admin API (CONTRACT §4), on its own listener: register, patch,
//! inspect (names only) and delete sessions; health, readiness, metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Session, SessionError, SessionStore, Source, Store, validate};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::response::{self, Body, ReadError, read_limited};

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
}

/// Longest accepted session id on the admin API.
const MAX_ID: usize = 256;
/// Longest TTL a PUT may ask for.
const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

fn session_error(e: &SessionError) -> Response<Body> {
    let status = match e {
        SessionError::Invalid(_) => StatusCode::BAD_REQUEST,
        SessionError::TooLarge(..) => StatusCode::PAYLOAD_TOO_LARGE,
        SessionError::NotFound => StatusCode::NOT_FOUND,
        SessionError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    response::error(status, e.code(), &e.to_string())
}

/// Handles one admin request.
pub async fn handle<B>(req: Request<B>, ctx: &AdminCtx) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => return response::text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            return if ctx.ready.load(Ordering::Relaxed) {
                response::text(StatusCode::OK, "ready\n")
            } else {
                response::text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            };
        }
        _ => {}
    }
    let cfg = ctx.config.borrow().clone();
    if let Some(token) = &cfg.server.admin_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !token.matches(given.as_bytes()) {
            let mut r = response::error(
                StatusCode::UNAUTHORIZED,
                "admin.unauthorized",
                "send `Authorization: Bearer <admin token>` (the value of the admin_token_env variable)",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    if path == "/metrics" && req.method() == Method::GET {
        ctx.metrics.stored_sessions.set(ctx.store.len() as i64);
        let mut r = response::text(StatusCode::OK, ctx.metrics.encode());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return r;
    }
    let Some(id) = path.strip_prefix("/sessions/") else {
        return response::error(
            StatusCode::NOT_FOUND,
            "route.not_found",
            "admin paths: /sessions/{id}, /healthz, /readyz, /metrics",
        );
    };
    if !valid_id(id) {
        return response::error(
            StatusCode::BAD_REQUEST,
            "session.key_invalid",
            "session ids are 1-256 characters of letters, digits, `.`, `_`, `:`, `-`",
        );
    }
    let id = id.to_string();
    let max = cfg.server.max_session_bytes;
    match *req.method() {
        Method::GET => match ctx.store.get(&id).await {
            Ok(Some(s)) => response::json(
                StatusCode::OK,
                &json!({
                    "id": id,
                    "variables": s.vars.keys().collect::<Vec<_>>(),
                    "ttl_seconds": s.ttl_left().as_secs(),
                    "source": s.source.name(),
                }),
            ),
            Ok(None) => session_error(&SessionError::NotFound),
            Err(e) => session_error(&e),
        },
        Method::DELETE => match ctx.store.delete(&id).await {
            Ok(()) => response::status(StatusCode::NO_CONTENT),
            Err(e) => session_error(&e),
        },
        Method::PUT | Method::PATCH => {
            let ttl = match ttl_param(req.uri().query()) {
                Ok(t) => t.unwrap_or(cfg.server.ttl),
                Err(msg) => {
                    return response::error(StatusCode::BAD_REQUEST, "session.invalid_ttl", msg);
                }
            };
            let is_put = req.method() == Method::PUT;
            let body = match read_limited(req.into_body(), max.saturating_mul(2) + 1024).await {
                Ok(b) => b,
                Err(ReadError::TooLarge) => {
                    return session_error(&SessionError::TooLarge(
                        max.saturating_mul(2) + 1024,
                        max,
                    ));
                }
                Err(ReadError::Aborted) => {
                    return response::error(
                        StatusCode::BAD_REQUEST,
                        "request.aborted",
                        "the request body was cut short",
                    );
                }
            };
            let value: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => {
                    return response::error(
                        StatusCode::BAD_REQUEST,
                        "session.invalid",
                        "the body is not JSON; send a JSON object such as {\"call\": {\"metadata\": {\"token\": \"…\"}}}",
                    );
                }
            };
            if is_put {
                match validate(value, max) {
                    Ok(vars) => match ctx
                        .store
                        .put(&id, Session::new(vars, Source::Admin, ttl))
                        .await
                    {
                        Ok(()) => response::status(StatusCode::NO_CONTENT),
                        Err(e) => session_error(&e),
                    },
                    Err(e) => session_error(&e),
                }
            } else {
                let Value::Object(patch) = value else {
                    return session_error(&SessionError::Invalid(
                        "a PATCH body must be a JSON object".into(),
                    ));
                };
                match ctx.store.patch(&id, patch, max).await {
                    Ok(true) => response::status(StatusCode::NO_CONTENT),
                    Ok(false) => session_error(&SessionError::NotFound),
                    Err(e) => session_error(&e),
                }
            }
        }
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

    #[test]
    fn ids() {
        assert!(valid_id("call_8f2a-1:x.y"));
        assert!(!valid_id(""));
        assert!(!valid_id("../etc"));
        assert!(!valid_id(&"a".repeat(300)));
    }
}
