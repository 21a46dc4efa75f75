//! Prometheus metrics (served on the admin listener at `/metrics`).
//!
//! Labels carry only route names, status codes and error codes: never a
//! session id, header value or variable.

mod handles;
mod labels;
mod striped;
mod totals;

pub use labels::*;
pub use striped::{Counter, Histogram, pin};
pub use totals::{RouteTotals, Totals};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;

use handles::Handles;

/// MCP methods kept as label values; anything else is `other`, so a
/// caller cannot grow the label set.
const MCP_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// Distinct tool names labelled per route; later ones are `other`.
const MAX_TOOL_LABELS: usize = 200;

/// What a session lookup can end in (`headgate_session_lookups_total`'s
/// `outcome`). Each series is there from the start, at zero.
pub const LOOKUP_OUTCOMES: [&str; 6] = [
    "hit",
    "waited",
    "miss",
    "fetch",
    "fetch_not_found",
    "fetch_error",
];

/// One header render in this many is timed for `render_latency_seconds`,
/// per worker thread.
pub const TIMED_RENDERS: u32 = 16;

/// Every metric headgate exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by route and outcome status (the error's status on a
    /// JSON-RPC route, though HTTP 200 carried it).
    pub requests: Family<RouteStatus, Counter>,
    /// Errors the proxy returned, by route and code.
    pub errors: Family<RouteCode, Counter>,
    /// Template render failures by code.
    pub render_failures: Family<Code, Counter>,
    /// Session lookups by outcome.
    pub session_lookups: Family<Outcome, Counter>,
    /// `session_lookups`' counters, resolved once: one is counted on every
    /// proxied request, and the family's lookup hashed its label under
    /// SipHash each time.
    lookup_handles: [(&'static str, Counter); 6],
    /// Upstream 401s passed through, by route.
    pub upstream_unauthorized: Family<RouteLabel, Counter>,
    /// Upstream time to response headers (seconds).
    pub upstream_latency: Family<RouteLabel, Histogram>,
    /// Header rendering time per request (seconds).
    pub render_latency: Histogram,
    /// Open `text/event-stream` responses.
    pub open_streams: Gauge,
    /// Webhook deliveries by outcome (`stored`, `purged`, `ignored`, `replayed`, `rejected`).
    pub webhooks: Family<Outcome, Counter>,
    /// Config reloads by outcome (`applied`, `rejected`).
    pub reloads: Family<Outcome, Counter>,
    /// Sessions held by the store.
    pub sessions: Gauge,
    /// MCP requests by route, method, tool and outcome.
    pub mcp_requests: Family<McpLabels, Counter>,
    /// MCP request latency by route and method (seconds).
    pub mcp_latency: Family<RouteMethod, Histogram>,
    /// Audit lines dropped because the writer fell behind.
    pub audit_dropped: Counter,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: Counter,
    /// Open public-listener connections, by the worker serving them.
    pub worker_connections: Family<WorkerLabel, Gauge>,
    /// Token requests and JWT signings, by credential and outcome.
    pub credential_requests: Family<CredentialOutcome, Counter>,
    /// Requests served a cached credential, by credential.
    pub credential_cache_hits: Family<CredentialLabel, Counter>,
    /// `tools/call`s refused over their budget, by route.
    pub mcp_budget_exceeded: Family<RouteLabel, Counter>,
    /// `tools/call` results cut to `max_result_bytes`, by route.
    pub mcp_results_cut: Family<RouteLabel, Counter>,
    /// Tools whose definition differs from the pinned one (or that are new
    /// since the first listing) and are not approved, by route.
    pub mcp_tools_held: Family<RouteLabel, Gauge>,
    /// Tool names labelled so far, per route.
    mcp_tools:
        std::sync::Mutex<std::collections::HashMap<String, std::collections::HashSet<String>>>,
    /// Handles for label sets seen before (see [`Handles`]).
    mcp_handles: Handles<(Counter, Histogram)>,
    /// Every `requests` counter, by route and status: the console's
    /// totals are read from these.
    request_handles: Handles<Counter>,
    /// Every `errors` counter, by route and code (likewise).
    error_handles: Handles<Counter>,
    upstream_handles: Handles<Histogram>,
    /// Which registry this is, for [`RouteHandles`] made from it.
    id: u64,
}

/// One route's handles for what most requests through it count (a 200,
/// the upstream's latency), each resolved on its first use and kept by
/// the route, instead of looked up by the route's name on every request.
/// A series appears only once
/// counted, as before. Each remembers which registry ([`Metrics`]' `id`)
/// made it: routes are shared by whoever holds the config, and a test
/// may run two registries.
#[derive(Debug, Default)]
pub struct RouteHandles {
    ok: std::sync::OnceLock<(u64, Counter)>,
    upstream: std::sync::OnceLock<(u64, Histogram)>,
}

/// A status code's three digits, from a table built at compile time (no
/// digits computed and UTF-8-checked per request); codes past 999 read as
/// 999.
fn status_digits(status: u16) -> &'static str {
    const DIGITS: [u8; 3000] = {
        let mut t = [0u8; 3000];
        let mut i = 0;
        while i < 1000 {
            t[3 * i] = b'0' + (i / 100) as u8;
            t[3 * i + 1] = b'0' + (i / 10 % 10) as u8;
            t[3 * i + 2] = b'0' + (i % 10) as u8;
            i += 1;
        }
        t
    };
    const TEXT: &str = match std::str::from_utf8(&DIGITS) {
        Ok(s) => s,
        Err(_) => panic!("digits are ASCII"),
    };
    let i = 3 * usize::from(status.min(999));
    TEXT.get(i..i + 3).unwrap_or("999")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Each metric's name and help text.
const HELP: &[(&str, &str)] = &[
    (
        "credential_requests",
        "Token requests and JWT signings, by credential and outcome",
    ),
    (
        "credential_cache_hits",
        "Requests served a cached credential",
    ),
    ("requests", "Requests by route and outcome status"),
    ("errors", "Errors returned by the proxy, by route and code"),
    (
        "render_failures",
        "Header template render failures, by code",
    ),
    ("session_lookups", "Session lookups by outcome"),
    (
        "upstream_unauthorized",
        "Upstream 401 responses passed through",
    ),
    (
        "upstream_latency_seconds",
        "Time to upstream response headers",
    ),
    (
        "render_latency_seconds",
        "Time to render a request's headers (one render in 16 per worker thread is timed)",
    ),
    ("open_streams", "Open event-stream responses"),
    ("webhooks", "Webhook deliveries by outcome"),
    ("config_reloads", "Config reloads by outcome"),
    (
        "sessions",
        "Sessions held by this process (with the Redis store: the ones cached locally)",
    ),
    (
        "mcp_requests",
        "MCP requests by route, method, tool and outcome",
    ),
    (
        "mcp_latency_seconds",
        "MCP request latency by route and method",
    ),
    (
        "connections_refused",
        "Connections closed at once because max_connections were open",
    ),
    (
        "worker_connections",
        "Open public-listener connections, by the worker serving them",
    ),
    (
        "mcp_budget_exceeded",
        "tools/call requests refused because the call used up the tool's budget, by route",
    ),
    (
        "mcp_results_cut",
        "tools/call results whose text was cut to max_result_bytes, by route",
    ),
    (
        "mcp_tools_held",
        "Tools changed or new since the route's tools were pinned and not approved yet, by route",
    ),
    (
        "audit_dropped",
        "Audit lines dropped because the writer fell behind",
    ),
];

/// Registers `metric` under `name` with its [`HELP`] text, and returns it.
fn reg<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &'static str,
    metric: M,
) -> M {
    let help = HELP.iter().find(|(n, _)| *n == name).map_or("", |(_, h)| h);
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("headgate");
        let r = &mut registry;
        let credential_requests = reg(r, "credential_requests", Family::default());
        let credential_cache_hits = reg(r, "credential_cache_hits", Family::default());
        let requests = reg(r, "requests", Family::default());
        let errors = reg(r, "errors", Family::default());
        let render_failures = reg(r, "render_failures", Family::default());
        let session_lookups = reg(r, "session_lookups", Family::<Outcome, Counter>::default());
        let upstream_unauthorized = reg(r, "upstream_unauthorized", Family::default());
        let upstream_latency = reg(
            r,
            "upstream_latency_seconds",
            Family::<RouteLabel, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
        );
        let render_latency = reg(
            r,
            "render_latency_seconds",
            Histogram::new(exponential_buckets(0.000_000_5, 2.0, 16)),
        );
        let open_streams = reg(r, "open_streams", Gauge::default());
        let webhooks = reg(r, "webhooks", Family::default());
        let reloads = reg(r, "config_reloads", Family::default());
        let sessions = reg(r, "sessions", Gauge::default());
        let mcp_requests = reg(r, "mcp_requests", Family::default());
        let mcp_latency = reg(
            r,
            "mcp_latency_seconds",
            Family::<RouteMethod, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
        );
        let connections_refused = reg(r, "connections_refused", Counter::default());
        let worker_connections = reg(r, "worker_connections", Family::default());
        let audit_dropped = reg(r, "audit_dropped", Counter::default());
        let mcp_budget_exceeded = reg(r, "mcp_budget_exceeded", Family::default());
        let mcp_results_cut = reg(r, "mcp_results_cut", Family::default());
        let mcp_tools_held = reg(r, "mcp_tools_held", Family::default());
        let lookup_handles = LOOKUP_OUTCOMES.map(|outcome| {
            (
                outcome,
                session_lookups.get_or_create(&Outcome { outcome }).clone(),
            )
        });
        Self {
            registry,
            requests,
            errors,
            render_failures,
            session_lookups,
            lookup_handles,
            upstream_unauthorized,
            upstream_latency,
            render_latency,
            open_streams,
            webhooks,
            reloads,
            sessions,
            mcp_requests,
            mcp_latency,
            audit_dropped,
            connections_refused,
            worker_connections,
            credential_requests,
            credential_cache_hits,
            mcp_budget_exceeded,
            mcp_results_cut,
            mcp_tools_held,
            mcp_tools: Default::default(),
            mcp_handles: Default::default(),
            request_handles: Default::default(),
            error_handles: Default::default(),
            upstream_handles: Default::default(),
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

    /// [`Self::request`] through the route's handles.
    pub fn route_request(&self, handles: &RouteHandles, route: &str, status: u16) {
        let held = (status == 200)
            .then(|| self.held(&handles.ok, || self.request_counter(route, 200)))
            .flatten();
        match held {
            Some(ok) => {
                ok.inc();
            }
            None => self.request(route, status),
        }
    }

    /// [`Self::upstream_seconds`] through the route's handles.
    pub fn route_upstream_seconds(&self, handles: &RouteHandles, route: &str, seconds: f64) {
        let label = || RouteLabel {
            route: route.to_string(),
        };
        let made = || self.upstream_latency.get_or_create(&label()).clone();
        match self.held(&handles.upstream, made) {
            Some(h) => h.observe(seconds),
            None => self.upstream_seconds(route, seconds),
        }
    }

    /// The handle `slot` keeps, made by `make` on first use; `None` when
    /// another registry made it.
    fn held<'s, M>(
        &self,
        slot: &'s std::sync::OnceLock<(u64, M)>,
        make: impl FnOnce() -> M,
    ) -> Option<&'s M> {
        let (of, m) = slot.get_or_init(|| (self.id, make()));
        (*of == self.id).then_some(m)
    }

    /// Counts one session lookup outcome (one of [`LOOKUP_OUTCOMES`]).
    pub fn session_lookup(&self, outcome: &'static str) {
        match self.lookup_handles.iter().find(|(o, _)| *o == outcome) {
            Some((_, c)) => c.inc(),
            None => self
                .session_lookups
                .get_or_create(&Outcome { outcome })
                .inc(),
        };
    }

    /// Counts one MCP request. The tool label is the tool's name for the
    /// first 200 distinct names a route sees, then `other` (as is a name
    /// over [`MAX_LABEL_BYTES`]).
    pub fn mcp_request(
        &self,
        route: &str,
        method: Option<&str>,
        tool: Option<&str>,
        outcome: &'static str,
        seconds: f64,
    ) {
        let method = method
            .and_then(|m| MCP_METHODS.iter().find(|k| **k == m))
            .copied()
            .unwrap_or("other");
        let asked = tool.unwrap_or("");
        let parts = [route, method, asked, outcome];
        let key = Handles::<()>::key(&parts);
        let counted = self.mcp_handles.with(key, &parts, |(count, latency)| {
            count.inc();
            latency.observe(seconds);
        });
        if counted {
            return;
        }
        let tool = ClientText(tool.map_or(String::new(), |t| self.tool_label(route, t)));
        let labels = McpLabels {
            route: route.to_string(),
            method,
            tool,
            outcome,
        };
        let count = self.mcp_requests.get_or_create(&labels).clone();
        count.inc();
        let rm = RouteMethod {
            route: route.to_string(),
            method,
        };
        let latency = self.mcp_latency.get_or_create(&rm).clone();
        latency.observe(seconds);
        if labels.tool.0 == asked {
            self.mcp_handles.insert(key, &parts, (count, latency));
        }
    }

    /// Counts one request of `route` answered with `status`.
    pub fn request(&self, route: &str, status: u16) {
        self.request_counter(route, status).inc();
    }

    /// The `requests` counter of `route` and `status`, made (and kept
    /// among [`Self::request_handles`]) on first use.
    fn request_counter(&self, route: &str, status: u16) -> Counter {
        let parts = [route, status_digits(status)];
        let made = || {
            let route = route.to_string();
            self.requests
                .get_or_create(&RouteStatus { route, status })
                .clone()
        };
        self.request_handles.counter(&parts, made)
    }

    /// Counts one request of `route` the proxy refused with `code`.
    pub fn error(&self, route: &str, code: &str) {
        let made = || {
            let (route, code) = (route.to_string(), code.to_string());
            self.errors
                .get_or_create(&RouteCode { route, code })
                .clone()
        };
        self.error_handles.counter(&[route, code], made).inc();
    }

    /// Observes the time to an upstream's response head on `route`.
    pub fn upstream_seconds(&self, route: &str, seconds: f64) {
        let parts = [route];
        let key = Handles::<()>::key(&parts);
        if !(self.upstream_handles).with(key, &parts, |h| h.observe(seconds)) {
            let label = RouteLabel {
                route: route.to_string(),
            };
            let h = self.upstream_latency.get_or_create(&label).clone();
            h.observe(seconds);
            self.upstream_handles.insert(key, &parts, h);
        }
    }

    fn tool_label(&self, route: &str, tool: &str) -> String {
        if tool.len() > MAX_LABEL_BYTES {
            return "other".to_string();
        }
        let mut seen = self.mcp_tools.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains_key(route) {
            seen.insert(route.to_string(), Default::default());
        }
        let Some(names) = seen.get_mut(route) else {
            return "other".to_string();
        };
        if names.contains(tool) {
            return tool.to_string();
        }
        if names.len() < MAX_TOOL_LABELS {
            names.insert(tool.to_string());
            return tool.to_string();
        }
        "other".to_string()
    }

    /// OpenMetrics text (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text format (0.0.4), for scrapers and tools that do
    /// not ask for OpenMetrics: a counter's `HELP` and `TYPE` name its
    /// samples (`x_total`), and there is no `# EOF` or `# UNIT`.
    pub fn encode_prometheus(&self) -> String {
        let open = self.encode();
        let mut out = String::with_capacity(open.len());
        let mut help: Option<&str> = None;
        for line in open.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            if line.starts_with("# HELP ") {
                if let Some(h) = help.replace(line) {
                    out.push_str(h);
                    out.push('\n');
                }
                continue;
            }
            if let Some(family) = line
                .strip_prefix("# TYPE ")
                .and_then(|t| t.strip_suffix(" counter"))
            {
                if let Some(h) = help.take() {
                    let text = h.strip_prefix(&format!("# HELP {family} ")).unwrap_or("");
                    out.push_str(&format!("# HELP {family}_total {text}\n"));
                }
                out.push_str(&format!("# TYPE {family}_total counter\n"));
                continue;
            }
            if let Some(h) = help.take() {
                out.push_str(h);
                out.push('\n');
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests;
