//! The send phase: the request to the upstream within the response-header
//! timeout, and its response relayed frame by frame with the idle timeout.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header;
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;

use super::Exchange;
use super::error::{ProxyError, Side};
use crate::config::Route;
use crate::metrics::RouteLabel;
use crate::net::body::{ClientBodyError, Streamed};
use crate::net::headers::strip_hop_by_hop;
use crate::net::response::Body;
use crate::session::{Session, SessionStore, Source};

impl Exchange<'_> {
    /// Sends `up` (through the direct pool when `direct` is set) and
    /// relays the response. An upstream 401 is counted, and a session the
    /// resolver fetched is dropped so the next call fetches it afresh (its
    /// token may have rotated).
    pub(super) async fn send(
        &mut self,
        direct: Option<&Authority>,
        up: Request<Body>,
        (key, session): &super::Found,
    ) -> Result<Response<Body>, ProxyError> {
        let app = self.app;
        let started = Instant::now();
        let wall = self.timings.map(|_| SystemTime::now());
        let timeouts = &self.cfg.server.timeouts;
        let (limit, idle) = (timeouts.response_headers, timeouts.idle);
        let open_streams = &app.metrics.open_streams;
        let resp = match direct {
            Some(authority) => {
                let send = app.upstreams.send(authority, up);
                response_within(self.route, limit, send, idle, open_streams).await
            }
            None => {
                let send = app.client.request(up);
                response_within(self.route, limit, send, idle, open_streams).await
            }
        }?;
        (self.answered(resp.status(), started, wall, key, session.as_ref())).await;
        Ok(resp)
    }
}

impl Exchange<'_> {
    /// What follows the upstream's response head, whoever read it: its
    /// latency recorded, and an upstream 401 counted, a session the
    /// resolver fetched then dropped so the next call fetches it afresh
    /// (its token may have rotated). When the head was in, by the one
    /// clock read this takes (the core times the upstream connection's
    /// idleness from it).
    pub(crate) async fn answered(
        &mut self,
        status: StatusCode,
        started: Instant,
        wall: Option<SystemTime>,
        key: &str,
        session: Option<&Arc<Session>>,
    ) -> Instant {
        let app = self.app;
        let now = Instant::now();
        let latency = now.saturating_duration_since(started).as_secs_f64();
        self.upstream_ms = Some(latency * 1000.0);
        if let (Some(t), Some(w)) = (self.timings.as_mut(), wall) {
            t.upstream = Some((w, SystemTime::now()));
        }
        (app.metrics).route_upstream_seconds(
            &self.route.compiled.handles,
            self.route.name,
            latency,
        );
        if status == StatusCode::UNAUTHORIZED {
            let route = RouteLabel {
                route: self.route.name.to_string(),
            };
            app.metrics
                .upstream_unauthorized
                .get_or_create(&route)
                .inc();
            if session.is_some_and(|s| s.source == Source::Resolver) {
                let _ = app.store.delete(key).await;
            }
        }
        now
    }
}

/// Waits up to `limit` for the upstream's response head, then relays it.
/// A failure the upstream side caused is logged at warn with its cause
/// (the upstream's host and port and the OS error; never a header).
async fn response_within<B, E>(
    route: &Route,
    limit: Duration,
    send: impl Future<Output = Result<Response<B>, E>>,
    idle: Duration,
    open_streams: &Gauge,
) -> Result<Response<Body>, ProxyError>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: std::error::Error + 'static,
{
    match tokio::time::timeout(limit, send).await {
        Err(_) => Err(ProxyError::UpstreamTimeout),
        Ok(Err(e)) => {
            let err = upstream_error(&e);
            if err.side() == Side::Upstream {
                warn_failed(route, &err, &e);
            }
            Err(err)
        }
        Ok(Ok(r)) => Ok(relay(r, idle, open_streams)),
    }
}

/// Logs at warn an exchange the upstream side failed, with its cause (the
/// upstream's host and port and the OS error; never a header).
pub(crate) fn warn_failed(route: &Route, err: &ProxyError, e: &(dyn std::error::Error + 'static)) {
    let u = &route.upstream;
    let (host, port) = (u.host().unwrap_or_default(), u.port_u16());
    let port = port.unwrap_or(if u.scheme_str() == Some("https") {
        443
    } else {
        80
    });
    tracing::warn!(route = %route.name, upstream = %format_args!("{host}:{port}"), code = err.code(), "upstream failed: {}", chain(e));
}

/// The upstream's response on its way to the client: hop-by-hop headers
/// stripped, the body streamed frame by frame with the idle timeout (and
/// counted in `open_streams` while it is an event stream).
fn relay<B>(resp: Response<B>, idle: Duration, open_streams: &Gauge) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // A 204 carries no Content-Length (RFC 9110 §8.6).
    if parts.status == StatusCode::NO_CONTENT {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let is_stream = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let gauge = is_stream.then(|| open_streams.clone());
    Response::from_parts(parts, Streamed::new(body, idle, gauge).boxed())
}

/// What a failed exchange with the upstream tells the client: our own body
/// limit tripping while the request streamed is 413, the client's own body
/// failing is 400, anything else 502.
fn upstream_error(e: &(dyn std::error::Error + 'static)) -> ProxyError {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return ProxyError::TooLarge;
        }
        if c.is::<ClientBodyError>() {
            return ProxyError::BadBody("the request body was malformed or cut short");
        }
        cause = c.source();
    }
    ProxyError::UpstreamUnreachable
}

/// The error and its causes, `: `-joined (an OS error ends the chain).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}
