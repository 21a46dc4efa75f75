//! The route door: `/<route>/<rest>` runs an [`Exchange`], then records
//! the outcome (access log line, request and error metrics).

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

use http::{Request, Response};
use hyper::body::Incoming;

use crate::audit::{Record, clip, clip_id, format_rfc3339};
use crate::config::{AccessLog, Config, ErrorStyle};
use crate::mcp::McpView;
use crate::net::response::Body;
use crate::net::tracecontext::Trace;
use crate::proxy::App;
use crate::proxy::exchange::{Exchange, HyperTransport, Peer, ProxyError};
use crate::session::id_hash;
use crate::telemetry::{Exporter, Finished};

/// Handles one request for a route.
pub(super) async fn handle(
    req: Request<Incoming>,
    app: &App,
    cfg: &Config,
    peer: &Peer,
) -> Response<Body> {
    let (name, rest) = split_route(req.uri().path());
    let Some(route) = cfg.route(name).cloned() else {
        let e = ProxyError::RouteNotFound;
        count(app, "_none", &e);
        return e.to_response(ErrorStyle::Json, None);
    };
    let rest = rest.to_string();
    let begun = Begun::now();
    let mut x = Exchange::new(app, cfg, &route, peer, begun.started());
    match x.run(&mut HyperTransport::new(req, rest)).await {
        Ok(resp) => {
            finish(&x, begun, resp.status());
            resp
        }
        Err(e) => finish_failed(&x, begun, e),
    }
}

/// When a request through a route began.
#[derive(Clone, Copy)]
pub(crate) struct Begun {
    started: Instant,
    arrived: SystemTime,
}

impl Begun {
    pub fn now() -> Self {
        let started = Instant::now();
        Self {
            started,
            arrived: wall_at(started),
        }
    }

    /// The monotonic clock's reading when the request began.
    pub fn started(&self) -> Instant {
        self.started
    }
}

/// How long a thread's anchor between the two clocks serves.
const ANCHOR_FOR: Duration = Duration::from_secs(1);

/// The wall-clock time of `at`, a recent monotonic reading: from an anchor
/// (a monotonic reading and the wall clock's at the same moment) this
/// thread takes again once a second. One clock read per request instead
/// of two. What it gives differs from a
/// fresh read by the two clocks' drift within the second (microseconds;
/// NTP slews the wall clock by at most 0.5 ms a second) and by a step of
/// the wall clock for under a second, as nginx's cached time does.
fn wall_at(at: Instant) -> SystemTime {
    thread_local! {
        static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
    }
    ANCHOR.with(|anchor| {
        if let Some((i, w)) = anchor.get()
            && let Some(since) = at.checked_duration_since(i)
            && since < ANCHOR_FOR
        {
            return w + since;
        }
        let wall = SystemTime::now();
        anchor.set(Some((at, wall)));
        wall
    })
}

/// Records a request through a route that was answered `status`, by
/// whichever core served it: its timeline entry, spans, metrics and
/// access log line.
/// When it was recorded: the one clock read its records took, from which
/// the core times the connection's wait for its next request.
pub(crate) fn finish(x: &Exchange<'_>, begun: Begun, status: http::StatusCode) -> Instant {
    let status = status.as_u16();
    finish_with(x, begun, (status, "", status))
}

/// [`finish`] for a failure: records it and returns the response the
/// route answers it with.
pub(crate) fn finish_failed(x: &Exchange<'_>, begun: Begun, e: ProxyError) -> Response<Body> {
    count(x.app(), x.route().name, &e);
    let resp = x.error_response(&e);
    // The outcome, recorded as it was even when a JSON-RPC route answers
    // an error with HTTP 200 so the agent can speak it.
    finish_with(
        x,
        begun,
        (e.status().as_u16(), e.code(), resp.status().as_u16()),
    );
    resp
}

/// The records of [`finish`]: the outcome's status and code, and the
/// status sent.
fn finish_with(
    x: &Exchange<'_>,
    begun: Begun,
    (status, code, sent): (u16, &'static str, u16),
) -> Instant {
    let (app, route) = (x.app(), x.route());
    let Begun { started, arrived } = begun;
    // One clock read for every record of the request.
    let took = started.elapsed();
    let done = Done {
        status,
        code,
        arrived,
        ended: started + took,
        took,
    };
    record(app, route.name, x, done);
    if let (Some(t), Some(trace)) = (&app.telemetry, x.span_trace()) {
        export(t, app, route.name, x, trace, (status, code), took);
    }
    (app.metrics).route_request(&route.compiled.handles, route.name, status);
    let line = AccessLine {
        route: route.name,
        status,
        code,
        sent,
        ms: took.as_secs_f64() * 1000.0,
        session: x.session_key(),
        trace: x.trace(),
    };
    line.write(route.access_log);
    done.ended
}

/// The access log line of one request (docs/operations.md "Logs").
struct AccessLine<'a> {
    route: &'a str,
    status: u16,
    code: &'static str,
    sent: u16,
    ms: f64,
    /// The session key, hashed only for a line that is written: the hash
    /// is a SHA-256, too dear to make for every request whatever the log
    /// level.
    session: Option<&'a str>,
    trace: Option<Trace>,
}

impl AccessLine<'_> {
    /// Through the log, or in the route's own format on standard output.
    fn write(&self, how: AccessLog) {
        let ts = || format_rfc3339(SystemTime::now());
        let enabled = match how {
            AccessLog::Off => false,
            AccessLog::Default => tracing::enabled!(tracing::Level::INFO),
            AccessLog::Json | AccessLog::Text => true,
        };
        if !enabled {
            return;
        }
        let session = self.session.map(id_hash).unwrap_or_default();
        let trace = self.trace.map(|t| t.hex()).unwrap_or_default();
        let line = match how {
            AccessLog::Off => return,
            AccessLog::Default => {
                let (status, code, sent, ms) = (self.status, self.code, self.sent, self.ms);
                let (session, trace) = (session.as_str(), trace.as_str());
                tracing::info!(route = %self.route, status, code, sent, ms, session, trace, "request");
                return;
            }
            AccessLog::Json => serde_json::json!({
                "ts": ts(), "route": self.route, "status": self.status, "code": self.code,
                "sent": self.sent, "ms": self.ms, "session": session, "trace": trace,
            })
            .to_string(),
            AccessLog::Text => format!(
                "{} route={} status={} code={} sent={} ms={:.3} session={} trace={}",
                ts(),
                self.route,
                self.status,
                self.code,
                self.sent,
                self.ms,
                session,
                trace
            ),
        };
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// How an MCP request ended, for its metrics and records.
#[derive(Clone, Copy)]
struct Done {
    status: u16,
    code: &'static str,
    arrived: SystemTime,
    ended: Instant,
    took: Duration,
}

/// Records a request in its session's timeline (the console's call
/// inspector); an MCP request is also counted and audited.
fn record(app: &App, route: &str, x: &Exchange<'_>, done: Done) {
    let view = x.mcp_view();
    if let Some(view) = view {
        let outcome = match (done.code, done.status) {
            ("mcp.tool_denied", _) => "denied",
            ("", s) if s < 400 => "ok",
            ("", _) => "error",
            _ => "refused",
        };
        let secs = done.took.as_secs_f64();
        (app.metrics).mcp_request(route, view.method(), view.tool(), outcome, secs);
    } else if x.session_key().is_none() {
        // Nothing to audit and no timeline to add to.
        return;
    }
    let record = |session: &str| Record {
        ts: done.arrived,
        route: x.route().name,
        // Only audit lines and `GET /calls/{id}` show it.
        session: view.map_or(String::new(), |_| session.to_string()),
        method: clip(view.and_then(McpView::method).unwrap_or_default()),
        tool: view.and_then(McpView::tool).map(clip),
        rpc_id: view.and_then(|_| x.rpc_id()).and_then(clip_id),
        status: done.status,
        code: (!done.code.is_empty()).then_some(done.code),
        warning: x.warning,
        upstream_ms: x.upstream_ms(),
        credentials: x.credential_names(),
        mcp: view.is_some(),
    };
    let call = (x.session_key(), x.timeline_hint());
    if !app.calls.record(call, done.ended, record) {
        app.metrics.audit_dropped.inc();
    }
}

/// The request's spans, to the exporter.
fn export(
    t: &Exporter,
    app: &App,
    route: &str,
    x: &Exchange<'_>,
    trace: Trace,
    (status, code): (u16, &str),
    took: Duration,
) {
    let end = SystemTime::now();
    let view = x.mcp_view();
    let session = x.session_key().map(|k| app.calls.session_hash(k));
    let timings = x.timings.unwrap_or_default();
    t.finished(&Finished {
        trace,
        route,
        method: view.and_then(McpView::method),
        tool: view.and_then(McpView::tool),
        rpc_id: view
            .and_then(|_| x.rpc_id())
            .and_then(clip_id)
            .map(|id| id.to_string()),
        mcp_headers: x.mcp_headers.as_deref(),
        credential_names: x.credential_names().join(","),
        status,
        code,
        session: session.as_deref().unwrap_or_default(),
        during: (end - took, end),
        lookup: timings.lookup,
        credentials: timings.credentials,
        upstream: timings.upstream,
    });
}

/// Counts a refusal by route and code, and logs it at debug.
fn count(app: &App, route: &str, e: &ProxyError) {
    app.metrics.error(route, e.code());
    tracing::debug!(route, code = e.code(), side = ?e.side(), "refused");
}

/// `/crm/mcp?x` → (`crm`, `/mcp`).
pub(crate) fn split_route(path: &str) -> (&str, &str) {
    let p = path.strip_prefix('/').unwrap_or(path);
    // A byte scan: `find` goes through a char searcher, slower on the
    // few bytes a route name has.
    match p.bytes().position(|b| b == b'/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, ""),
    }
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

    /// On a fresh thread (no anchor yet): the wall time of a reading is
    /// the wall clock's, and readings within a second of the anchor are
    /// apart on the wall by exactly what they are apart on the monotonic
    /// clock; one older than the anchor takes a new one.
    #[test]
    fn the_wall_time_of_a_reading_follows_the_anchor_and_the_clock() {
        std::thread::spawn(|| {
            let near = |a: SystemTime, b: SystemTime| {
                let d = a.duration_since(b).unwrap_or_else(|e| e.duration());
                assert!(d < Duration::from_millis(50), "{d:?} apart");
            };
            let t0 = Instant::now();
            let w0 = wall_at(t0);
            near(w0, SystemTime::now());
            let t1 = t0 + Duration::from_millis(300);
            assert_eq!(wall_at(t1), w0 + Duration::from_millis(300));
            // Past the anchor's second: anchored again, at the wall clock.
            let t2 = Instant::now() + ANCHOR_FOR;
            near(wall_at(t2), SystemTime::now());
            // Before the (new) anchor: anchored again.
            near(wall_at(Instant::now()), SystemTime::now());
        })
        .join()
        .unwrap();
    }
}
